"""DTrace collapse: reference corpus, our own fixtures, the fixed Perl bugs, streaming."""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamed.collapse import dtrace
from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions, is_applicable
from flamed.collapse.folded import Folded
from tests.conftest import (
    CONFORMANCE,
    DATA,
    NATIVE_PATHS,
    assert_freed_when_dropped,
    conformance_dir,
    run_flamed,
)

FIXTURES = DATA / "dtrace"
REGEN = os.environ.get("FLAMED_REGEN") == "1"


def collapse(
    data: bytes, options: DTraceOptions | None = None, native: bool | None = None
) -> Folded:
    collapser = DTraceCollapser(options, native=native)
    collapser.feed(data)
    return collapser.finish()


def corpus_cases() -> list[str]:
    folder = CONFORMANCE / "dtrace"
    return sorted(p.name[: -len(".txt")] for p in folder.glob("*.txt")) or ["(absent)"]


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("case", corpus_cases())
def test_conformance(case: str, native: bool) -> None:
    folder = conformance_dir("dtrace")
    expected = (folder / f"{case}.default.folded").read_bytes()
    data = (folder / f"{case}.txt").read_bytes()
    assert collapse(data, native=native).to_bytes() == expected


def test_conformance_cli() -> None:
    folder = conformance_dir("dtrace")
    result = run_flamed("collapse", "dtrace", str(folder / "example-dtrace-stacks.txt"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (folder / "example-dtrace-stacks.default.folded").read_bytes()


FIXTURE_CASES = [
    ("multi-dump", "default"),
    ("offsets", "default"),
    ("offsets", "includeoffset"),
    ("rust", "default"),
    ("truncated", "default"),
]


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize(("case", "option"), FIXTURE_CASES)
def test_fixtures(case: str, option: str, native: bool) -> None:
    """Golden files written by hand; FLAMED_REGEN=1 rewrites them on purpose."""
    options = DTraceOptions(include_offset=option == "includeoffset")
    got = collapse((FIXTURES / f"{case}.txt").read_bytes(), options, native).to_bytes()
    golden = FIXTURES / f"{case}.{option}.folded"
    if REGEN:
        golden.write_bytes(got)
    assert got == golden.read_bytes()


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("case", ["stack-ustack", "rust-hashes"])
def test_matches_inferno(case: str, native: bool) -> None:
    """Expected outputs made by inferno-collapse-dtrace 0.12.8 (see tests/data/dtrace/README.md):
    a stack()+ustack() aggregation is one stack per entry, kernel frames above the user
    ones; Rust hashes go, also after a cut `(.llvm.N)` suffix."""
    got = collapse((FIXTURES / f"{case}.txt").read_bytes(), native=native).to_bytes()
    assert got == (FIXTURES / f"{case}.default.folded").read_bytes()


def test_fixture_cli_includeoffset() -> None:
    result = run_flamed("collapse", "dtrace", "--includeoffset", str(FIXTURES / "offsets.txt"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (FIXTURES / "offsets.includeoffset.folded").read_bytes()


def test_every_dump_of_a_stream_counts_and_no_header_becomes_a_frame() -> None:
    profile = collapse((FIXTURES / "multi-dump.txt").read_bytes())
    assert profile.total() == 40 + 3 + 38 + 5 + 2
    assert not any("tick-10s" in stack or "CPU" in stack for stack in profile)


def test_header_is_skipped_up_to_the_first_blank_line() -> None:
    text = b"one\ntwo\nthree\nfour\n\n  a`f+0x1\n  a`main+0x2\n  7\n"
    assert collapse(text).counts == {"a`main;a`f": 7}


def test_input_without_header_keeps_its_first_stack() -> None:
    text = b"  a`f+0x1\n  a`main+0x2\n  7\n\n  a`g\n  2\n"
    assert collapse(text).counts == {"a`main;a`f": 7, "a`g": 2}


def test_includeoffset_drops_only_the_leaf_offset() -> None:
    """FlameGraph issue 202: a leaf without an offset must not eat its callers."""
    text = b"\n  genunix`segvn_fault\n  unix`pagefault+0x96\n  unix`trap+0x2c7\n  1\n"
    profile = collapse(text, DTraceOptions(include_offset=True))
    assert profile.counts == {"unix`trap+0x2c7;unix`pagefault+0x96;genunix`segvn_fault": 1}
    profile = collapse(text.replace(b"segvn_fault", b"segvn_fault+0x10"), DTraceOptions(True))
    assert profile.counts == {"unix`trap+0x2c7;unix`pagefault+0x96;genunix`segvn_fault": 1}


def test_rust_names_are_tidied_like_perf() -> None:
    from flamed.collapse.symbols import tidy_rust

    name = "_$LT$alloc..vec..Vec$LT$T$GT$$GT$::push::h0123456789abcdef"
    profile = collapse(b"\n  app`" + name.encode() + b"+0x4\n  3\n")
    assert profile.counts == {"app`" + tidy_rust(name): 3}
    assert "$" not in next(iter(profile))


def test_truncated_input_warns_and_keeps_earlier_stacks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flamed.collapse"):
        profile = collapse((FIXTURES / "truncated.txt").read_bytes())
    assert profile.total() == 1641
    assert "input ends inside a stack" in caplog.text


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_malformed_lines_warn_once_per_kind(caplog: pytest.LogCaptureFixture, native: bool) -> None:
    """Frames that no count closes before a blank line go on into the next stack, as
    both reference tools read them; what is left at the end is warned about."""
    text = b"\n  12\n\n  13\n\n  a`f\n  some junk\n\n  b`g\n  1\n\n  c`h\n\n  d`i\n\n"
    collapser = DTraceCollapser(native=native)
    with caplog.at_level(logging.WARNING, logger="flamed.collapse"):
        collapser.feed(text)
        profile = collapser.finish()
    assert profile.counts == {"b`g;some junk;a`f": 1}
    assert collapser.warn.counts == {
        "count without frames": 2,
        "input ends inside a stack (no count after its frames)": 1,
    }
    assert len(caplog.records) == 2


def test_cpp_inline_java_and_semicolons_as_stackcollapse() -> None:
    text = (
        b"\n  libc`f+0x1\n  lib`ns::Cls::m(std::vector<int> const&)+0x10\n"
        b"  test`foo->bar\n  Lcom/x;run\n  +0x5\n  1\n"
    )
    assert collapse(text).counts == {
        "-;com/x:run;test`foo;bar_[i];lib`ns::Cls::m(std::vector;libc`f": 1
    }


def test_is_applicable() -> None:
    folder = FIXTURES
    assert is_applicable((folder / "multi-dump.txt").read_bytes()) is True
    assert is_applicable(b"CPU     ID                    FUNCTION:NAME\n") is None
    assert is_applicable(b"a;b;c 12\n") is None  # may be a header: DTrace needs more
    assert is_applicable(b"a;b;c 12\n" * 11) is False  # too long for a header
    assert is_applicable(b"a;b;c 12\n\nd;e 3\n") is False
    assert is_applicable(b"my header\n\n  a`f\n  1\n") is True
    record = b"perf 123 [000] 1.0: 1 cpu-clock:\n\tffff f (k)\n\n"
    assert is_applicable(record) is None
    assert is_applicable(record * 2) is False
    assert is_applicable(b"\n" + b"  a`f\n" * 20_000) is False  # no count within 64 KiB


# -- streaming: any split gives the same result --------------------------------

SPLIT_INPUTS = [
    (FIXTURES / "multi-dump.txt").read_bytes(),
    (FIXTURES / "offsets.txt").read_bytes(),
    (FIXTURES / "truncated.txt").read_bytes(),
    b"header\n\n  a`f\n  1\n  b`g\n  2\n   \n  c`h\n\t3\n\n\n\n  x`y\n",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SPLIT_INPUTS),
    st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    st.booleans(),
)
def test_any_split_gives_the_same_result(data: bytes, cuts: list[int], offsets: bool) -> None:
    options = DTraceOptions(include_offset=offsets)
    whole = collapse(data, options)
    collapser = DTraceCollapser(options)
    points = sorted({min(cut, len(data)) for cut in cuts})
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        collapser.feed(data[start:end])
    assert collapser.finish() == whole


DTRACE_LINES = st.one_of(
    st.sampled_from(
        [
            "",
            "",
            "   ",
            "CPU     ID                    FUNCTION:NAME",
            "  0  64091                        :tick-10s ",
            "              12",
            "\t3",
            "7 ",
            "  unix`i86_mwait+0xd",
            "  app`main",
            "  app`a::b<T>(int)+0x1",
            "  app`x->y->z",
            "  Lcom/a;.run+0x2",
            "  app`f::h0123456789abcdef (.llvm.1)+0x3",
            "junk",
            "  \xe9`f",
        ]
    ),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(DTRACE_LINES, max_size=40),
    junk=st.binary(max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
    offsets=st.booleans(),
)
def test_c_path_agrees_with_python_on_generated_input(
    lines: list[str], junk: bytes, cuts: list[int], offsets: bool
) -> None:
    """DTrace-like input of every shape, with stray bytes, fed to the C path in chunks cut
    anywhere, gives what the pure-Python reference gives for the whole."""
    if NATIVE_PATHS[1].marks:
        pytest.skip("the C speedups were not built")
    data = "\n".join(lines * 2).encode("utf-8", "surrogatepass") + junk
    options = DTraceOptions(include_offset=offsets)
    expected = collapse(data, options, native=False)
    collapser = DTraceCollapser(options, native=True)
    points = sorted({min(cut, len(data)) for cut in cuts})
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        collapser.feed(data[start:end])
    assert collapser.finish() == expected


def test_long_input_without_blank_lines_is_bounded_and_equal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = b"".join(b"  a`f%d+0x1\n  a`main\n  %d\n" % (i % 7, i) for i in range(400))
    whole = collapse(text)
    monkeypatch.setattr(dtrace, "MAX_PENDING", 100)
    collapser = DTraceCollapser()
    for start in range(0, len(text), 37):
        collapser.feed(text[start : start + 37])
        assert len(collapser._pending) <= 100 + 37
    assert collapser.finish() == whole
    assert whole.total() == sum(range(400))


FRAME = st.from_regex(r"[a-z]{1,6}`[a-z_]{1,8}", fullmatch=True)


@st.composite
def aggregations(draw: st.DrawFn) -> tuple[bytes, dict[str, int]]:
    """Random DTrace dumps, and the profile they must fold to."""
    expected: dict[str, int] = {}
    out = [b"CPU     ID                    FUNCTION:NAME\n"]
    for _ in range(draw(st.integers(1, 3))):
        out.append(b"  0  64091                        :tick-10s \n\n")
        for frames in draw(st.lists(st.lists(FRAME, min_size=1, max_size=5), max_size=6)):
            count = draw(st.integers(1, 10**6))
            offset = draw(st.sampled_from(["", "+0x1f", "+0xdeadbeef"]))
            out.extend(b"              " + (f + offset).encode() + b"\n" for f in frames)
            out.append(b"              %d\n\n" % count)
            stack = ";".join(reversed(frames))
            expected[stack] = expected.get(stack, 0) + count
    return b"".join(out), expected


@given(aggregations(), st.integers(1, 200))
def test_model(case: tuple[bytes, dict[str, int]], chunk: int) -> None:
    data, expected = case
    collapser = DTraceCollapser()
    for start in range(0, len(data), chunk):
        collapser.feed(data[start : start + chunk])
    assert collapser.finish().counts == expected


def test_bounded_caches_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (conformance_dir("dtrace") / "example-dtrace-stacks.txt").read_bytes()
    whole = collapse(data)
    monkeypatch.setattr(dtrace, "RUN_CACHE_LIMIT", 3)
    monkeypatch.setattr(dtrace, "LINE_CACHE_LIMIT", 5)
    collapser = DTraceCollapser()
    for start in range(0, len(data), 5000):
        collapser.feed(data[start : start + 5000])
    assert collapser.finish() == whole
    assert len(collapser._run_cache) <= 3 and len(collapser._line_cache) <= 5


def test_a_live_stream_counts_a_dumps_last_stack_without_waiting() -> None:
    """dtrace prints the last stack of a dump and then nothing until the next tick."""
    collapser = DTraceCollapser()
    collapser.feed(b"\n  a`f+0x1\n  a`main\n  3\n\n  a`g\n  a`main\n")
    assert collapser.counts == {"a`main;a`f": 3}
    collapser.feed(b"                2\n")
    assert collapser.counts == {"a`main;a`f": 3, "a`main;a`g": 2}
    collapser.feed(b"\n  0  64091      :tick-10s \n\n  a`g\n  a`main\n  1\n\n")
    assert collapser.finish().counts == {"a`main;a`f": 3, "a`main;a`g": 3}


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_a_finished_collapser_is_freed_without_the_garbage_collector(native: bool) -> None:
    """Like the perf collapser's: a daemon finishes one per bucket, and its caches must go
    when it is dropped, not at the cyclic garbage collector's next full pass."""
    collapser = DTraceCollapser(native=native)
    collapser.feed(b"\n              libc.so.1`main+0x4\n                3\n")
    assert collapser.finish().counts == {"libc.so.1`main": 3}
    holder = [collapser]
    del collapser
    assert_freed_when_dropped(holder)


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_stacks_are_counted_in_order_of_first_appearance_and_past_64_bits(native: bool) -> None:
    """The C folder adds up a fold's counts before they go to the counts dict, and a run it
    leaves to Python (a count of more than 18 digits) is counted by Python at once: the
    dict still has the stacks in order of first appearance, with exact sums."""
    huge = 10**20
    big = 900_000_000_000_000_000  # 18 digits: the C folder's, summed past 2**63
    runs = [(b"a`f", 7), (b"a`g", huge), (b"a`f", 5), (b"a`h", big)] * 12
    data = b"".join(b"\n  %s\n  a`main\n  %d\n" % (frame, count) for frame, count in runs)
    collapser = DTraceCollapser(native=native)
    collapser.feed(data)
    counts = collapser.finish().counts
    assert list(counts) == ["a`main;a`f", "a`main;a`g", "a`main;a`h"]
    assert counts == {
        "a`main;a`f": 144,
        "a`main;a`g": 12 * huge,
        "a`main;a`h": 12 * big,
    }
    assert 12 * big > 2**63
