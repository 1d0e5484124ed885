"""py-spy's raw output read under the process's name."""

from __future__ import annotations

import logging

import pytest

from flamed.collapse.pyspy import PySpyCollapser

# What py-spy 0.4 writes to stdout with --format raw --nolineno --output /dev/stdout
# (recorded on this machine from tests/data/python/hot.py; counts changed).
OUTPUT = (
    b"py-spy> Sampling process 99 times a second. Press Control-C to exit.\n\n"
    b"<module> (hot.py);main (hot.py);middle_layer (hot.py);leaf_arithmetic (hot.py) 188\n"
    b"<module> (hot.py);main (hot.py) 2\n"
    b"py-spy> Stopped sampling because Control-C pressed\n"
)


@pytest.mark.parametrize("cut", range(0, len(OUTPUT) + 1, 7))
def test_stacks_come_under_the_process_name_however_cut(cut: int) -> None:
    collapser = PySpyCollapser("python3")
    collapser.feed(OUTPUT[:cut])
    collapser.feed(OUTPUT[cut:])
    folded = collapser.finish()
    start = "python3;<module> (hot.py);main (hot.py)"
    assert folded.counts == {
        f"{start};middle_layer (hot.py);leaf_arithmetic (hot.py)": 188,
        start: 2,
    }
    assert collapser.samples == 190 and collapser.bytes_fed == len(OUTPUT)


def test_a_hostile_process_name_cannot_add_frames() -> None:
    collapser = PySpyCollapser("a;b c")
    collapser.feed(b"f (x.py) 1\n")
    assert collapser.finish().counts == {"a:b_c;f (x.py)": 1}


def test_garbage_is_warned_once_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    collapser = PySpyCollapser("python3")
    with caplog.at_level(logging.WARNING):
        collapser.feed(
            b"no count here\n\x00\xff junk\nf (x.py) 1.5\nf (x.py) 3\n" + b"x" * (2 << 20)
        )
        folded = collapser.finish()
    assert folded.counts == {"python3;f (x.py)": 3}
    assert len([r for r in caplog.records if "unrecognized py-spy line" in r.getMessage()]) == 1
    assert any("too long" in r.getMessage() for r in caplog.records)
