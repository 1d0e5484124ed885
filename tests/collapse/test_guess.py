"""Format guessing: each format is recognised and folded as its own collapser folds it."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse.common import Collapser
from flamed.collapse.dtrace import DTraceCollapser
from flamed.collapse.errors import InputError
from flamed.collapse.folded import Folded, FoldedCollapser
from flamed.collapse.guess import FORMATS, GuessCollapser, guess_format
from flamed.collapse.perf import PerfCollapser
from tests.conftest import DATA, conformance_dir, run_flamed


def fold(collapser: Collapser, data: bytes, chunk: int | None = None) -> Folded:
    step = chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        collapser.feed(data[start : start + step])
    return collapser.finish()


def perf_input() -> bytes:
    folder = conformance_dir("perf")
    return gzip.decompress((folder / "example-perf-stacks.txt.gz").read_bytes())


def dtrace_input() -> bytes:
    return (conformance_dir("dtrace") / "example-dtrace-stacks.txt").read_bytes()


def folded_input() -> bytes:
    return (conformance_dir("diff") / "before.folded").read_bytes()


CASES = {
    "perf": (perf_input, PerfCollapser),
    "dtrace": (dtrace_input, DTraceCollapser),
    "folded": (folded_input, FoldedCollapser),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_format_is_recognised_and_folded_alike(name: str) -> None:
    read, make = CASES[name]
    data = read()
    guesser = GuessCollapser()
    assert fold(guesser, data, chunk=4096) == fold(make(), data)
    assert guesser.format is not None and guesser.format.name == name


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_short_head_is_enough(name: str) -> None:
    """The first few KiB (cut at a line end) decide, even when the input ends there."""
    data = CASES[name][0]()
    head = data[: data.index(b"\n", 3000) + 1]
    fmt = guess_format(head, complete=True)
    assert fmt is not None and fmt.name == name


def test_small_fixture_inputs() -> None:
    fmt = guess_format((DATA / "dtrace" / "multi-dump.txt").read_bytes(), complete=True)
    assert fmt is not None and fmt.name == "dtrace"
    fmt = guess_format((conformance_dir("dtrace") / "java.txt").read_bytes(), complete=True)
    assert fmt is not None and fmt.name == "dtrace"  # a header of its own, then stacks
    fmt = guess_format(b"main;f 1", complete=True)  # no newline at the end
    assert fmt is not None and fmt.name == "folded"


def test_undecided_while_the_head_is_short() -> None:
    assert guess_format(b"CPU     ID   FUNCTION:NAME\n", complete=False) is None


@pytest.mark.parametrize(
    "data",
    [b"hello world\n", b"<html><body>\n" * 100, bytes(range(256)) * 300, b"\n\n  just frames\n"],
)
def test_unknown_input_names_the_formats_tried(data: bytes) -> None:
    with pytest.raises(InputError) as caught:
        fold(GuessCollapser(), data)
    message = str(caught.value)
    assert "\n" not in message
    for fmt in FORMATS:
        assert fmt.name in message


def test_empty_input_folds_to_nothing() -> None:
    assert len(fold(GuessCollapser(), b"")) == 0
    assert len(fold(GuessCollapser(), b"\n \n")) == 0


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["dtrace", "folded"]), st.integers(1, 5000))
def test_any_chunking_gives_the_same_result(name: str, chunk: int) -> None:
    read, make = CASES[name]
    data = read()[:200_000]
    assert fold(GuessCollapser(), data, chunk) == fold(make(), data)


def test_cli_guess_matches_cli_dtrace() -> None:
    path = str(conformance_dir("dtrace") / "hex-addresses.txt")
    guessed = run_flamed("collapse", "guess", path)
    direct = run_flamed("collapse", "dtrace", path)
    assert guessed.returncode == 0, guessed.stderr
    assert guessed.stdout == direct.stdout != b""


def test_cli_guess_unknown_input() -> None:
    result = run_flamed("collapse", "guess", "-", stdin=b"this is not a profile\n")
    assert result.returncode != 0
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert all(name in lines[0] for name in ("perf", "dtrace", "folded"))
