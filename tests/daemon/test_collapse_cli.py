"""`flamed collapse FORMAT` as a user runs it: input that holds nothing it understands."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from flamed.collapse.dtrace import DTraceCollapser
from flamed.collapse.perf import PerfCollapser, PerfOptions
from flamed.daemon.cli import build_parser
from flamed.daemon.commands.collapse import FORMATS, MAP_MAX_BYTES, collapse_path
from flamed.daemon.commands.common import map_file
from tests.conftest import DATA, NATIVE_PATHS, run_flamed

GARBAGE = bytes((i * 151 + 7) % 256 for i in range(3000))  # fixed, binary


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("data", [GARBAGE, b""], ids=["garbage", "empty"])
def test_nothing_recognised_is_one_line_and_exit_1(tmp_path: Path, fmt: str, data: bytes) -> None:
    """`flamed collapse perf garbage.bin` exited 0 with a 730-character warning."""
    source = tmp_path / "garbage.bin"
    source.write_bytes(data)
    done = run_flamed("collapse", fmt, str(source))
    err = done.stderr.decode()
    assert done.returncode == 1 and done.stdout == b"", err
    last = err.splitlines()[-1]
    assert last.startswith("flamed collapse: "), err
    assert "garbage.bin; expected " in last or "cannot tell the input format" in last, err
    assert all(len(line) < 300 and "\\udc" not in line for line in err.splitlines()), err


def test_perf_says_what_it_expected() -> None:
    done = run_flamed("collapse", "perf", stdin=GARBAGE)
    last = done.stderr.decode().splitlines()[-1]
    assert last == "flamed collapse: no perf script records in stdin; expected `perf script` output"


def test_an_event_filter_matching_nothing_names_the_events_present() -> None:
    """`--event-filter nosuch` gave empty output with no message."""
    data = b"ab 1 1.0: 5 cycles:u:\n\t1 f (/x)\n\nab 1 2.0: 7 instructions:\n\t1 g (/x)\n"
    done = run_flamed("collapse", "perf", "--event-filter", "nosuch", stdin=data)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        "flamed collapse: no samples of event 'nosuch' (--event-filter); "
        "the input has cycles:u, instructions"
    ]


def test_a_few_bad_lines_among_good_ones_are_still_warned_and_skipped() -> None:
    data = (
        b"ab 1 1.0: 1 cycles:\n\t1 f (/x)\n\nnot perf \x93\x1b\n\nab 1 2.0: 1 cycles:\n\t1 g (/x)\n"
    )
    done = run_flamed("collapse", "perf", stdin=data)
    assert done.returncode == 0 and done.stdout == b"ab;f 1\nab;g 1\n"
    (warning,) = done.stderr.decode().splitlines()
    assert "unrecognized perf script line: 'not perf \\x93\\x1b'" in warning, warning


def test_only_the_named_format_gets_a_parser() -> None:
    """Start-up time: `flamed collapse perf` builds perf's parser alone (the line names
    no other); `flamed collapse --help` still lists every format."""
    parser = build_parser("collapse", ["perf", "--all", "in.txt"])
    assert parser.parse_args(["collapse", "perf", "--all", "in.txt"]).format == "perf"
    with pytest.raises(SystemExit):
        parser.parse_args(["collapse", "dtrace", "in.txt"])
    assert build_parser("collapse", ["dtrace"]).parse_args(["collapse", "dtrace"]).file == "-"
    done = run_flamed("collapse", "--help")
    assert done.returncode == 0
    listed = done.stdout.decode()
    assert all(f"    {name} " in listed or f"    {name}\n" in listed for name in FORMATS)


PERF_TEXT = (
    b"prog 1/1 [000] 1.0: 3 cycles:\n\t4005d6 main+0x1 (/bin/prog)\n\n"
    b"prog 1/1 [000] 2.0: 4 cycles:\n\t4005d7 work (/bin/prog)\n\t4005d6 main+0x1 (/bin/prog)"
)


@pytest.mark.parametrize(
    "data",
    [PERF_TEXT, PERF_TEXT.replace(b"\n\n", b"\n"), PERF_TEXT + b"\n\n\n"],
    ids=["last-record-unended", "no-blank-line", "blank-lines-after"],
)
def test_a_plain_file_is_folded_mapped_as_read(tmp_path: Path, data: bytes) -> None:
    """perf's C folder is given a plain file mapped (not read: no pages to fill and copy);
    what it keeps after the map is closed (the text after the last blank line) still
    folds, and the output is what stdin and gzip input give."""
    source = tmp_path / "in.txt"
    source.write_bytes(data)
    collapser = PerfCollapser(PerfOptions(), native=None)
    mapped = map_file(str(source), MAP_MAX_BYTES)
    assert mapped is not None and collapser.reads_mapped == collapser.native
    mapped.close()
    (tmp_path / "in.gz").write_bytes(gzip.compress(data))
    assert map_file(str(tmp_path / "in.gz"), MAP_MAX_BYTES) is None
    assert map_file(str(source), len(data) - 1) is None
    outputs = {
        run_flamed("collapse", "perf", str(source)).stdout,
        run_flamed("collapse", "perf", str(tmp_path / "in.gz")).stdout,
        run_flamed("collapse", "perf", stdin=data).stdout,
        collapse_path(collapser, str(source), 0, 1).to_bytes(),
    }
    assert len(outputs) == 1 and outputs.pop().startswith(b"prog;main 3\n")


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("fmt", ["perf", "dtrace"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_large_plain_file_is_folded_on_two_cores(
    tmp_path: Path, fmt: str, threads: int, native: bool
) -> None:
    """A file of split_bytes or more is folded in two parts (the C folders' of the same
    map), as one core folds it; `-n 1` keeps it on one core."""
    data = (DATA / fmt / ("system-wide.txt" if fmt == "perf" else "stack-ustack.txt")).read_bytes()
    data = b"\n".join([data] * 5)
    source = tmp_path / "in.txt"
    source.write_bytes(data)
    make = PerfCollapser if fmt == "perf" else DTraceCollapser
    one = make(native=native)
    one.feed(data)
    expected = one.finish().to_bytes()
    collapser = make(native=native)
    assert collapse_path(collapser, str(source), 1, threads).to_bytes() == expected
    assert (collapser.bytes_fed < len(data) * 2 // 3) == (threads == 2 and os.cpu_count() != 1)
