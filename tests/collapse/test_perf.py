"""The perf collapser against stackcollapse-perf.pl's output, its fixes, and streaming."""

from __future__ import annotations

import gzip
import logging
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse import perf
from flamed.collapse.perf import PerfCollapser, PerfOptions, strip_arguments
from flamed.collapse.symbols import tidy_rust
from tests.conftest import (
    DATA,
    NATIVE_PATHS,
    assert_freed_when_dropped,
    conformance_dir,
    run_flamed,
)

OPTION_SETS = {
    "default": PerfOptions(),
    "pid": PerfOptions(include_pid=True),
    "tid": PerfOptions(include_tid=True),
    "kernel": PerfOptions(annotate_kernel=True),
    "jit": PerfOptions(annotate_jit=True),
    "all": PerfOptions(annotate_kernel=True, annotate_jit=True),
    "addrs": PerfOptions(include_addrs=True),
    "srcline": PerfOptions(srcline=True),
    "python": PerfOptions(python=True),
}


def collapse(
    data: bytes, options: PerfOptions | None = None, chunk: int = 0, native: bool | None = None
) -> bytes:
    collapser = PerfCollapser(options, native=native)
    if chunk:
        for start in range(0, len(data), chunk):
            collapser.feed(data[start : start + chunk])
    else:
        collapser.feed(data)
    return collapser.finish().to_bytes()


def read_input(path: Path) -> bytes:
    gz = path.with_name(path.name + ".gz")
    return gzip.decompress(gz.read_bytes()) if gz.exists() else path.read_bytes()


def expected_cases(folder: Path) -> list[tuple[Path, Path, str]]:
    cases = []
    for expected in sorted(folder.glob("*.folded")):
        name, option = expected.name.removesuffix(".folded").rsplit(".", 1)
        cases.append((folder / f"{name}.txt", expected, option))
    return cases


def corpus_cases() -> list[tuple[Path, Path, str]]:
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "perf"
    return expected_cases(folder) if folder.is_dir() else []


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize(
    ("source", "expected", "option"),
    corpus_cases() or [pytest.param(None, None, None, marks=pytest.mark.skip("no corpus"))],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_matches_stackcollapse_perf(
    source: Path, expected: Path, option: str, native: bool
) -> None:
    """Every corpus case, through the pure-Python path and through the C speedups."""
    conformance_dir("perf")
    data = read_input(source)
    assert collapse(data, OPTION_SETS[option], native=native) == expected.read_bytes()


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize(
    ("source", "expected", "option"),
    expected_cases(DATA / "perf"),
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_recorded_fixtures(source: Path, expected: Path, option: str, native: bool) -> None:
    """Recorded with real perf on this machine; expected outputs from stackcollapse-perf.pl
    where it is right, checked by hand where flamed differs on purpose (no call chain,
    source lines). FLAMED_REGEN=1 rewrites them from this code, for review."""
    got = collapse(source.read_bytes(), OPTION_SETS[option], native=native)
    if os.environ.get("FLAMED_REGEN") == "1":
        expected.write_bytes(got)
    assert got == expected.read_bytes()


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=30000), max_size=12))
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    data = (DATA / "perf" / "system-wide.txt").read_bytes() + (
        DATA / "perf" / "no-callchain.txt"
    ).read_bytes()
    whole = collapse(data, PerfOptions(include_pid=True))
    collapser = PerfCollapser(PerfOptions(include_pid=True))
    assert feed_cut(collapser, data, cuts) == whole


def feed_cut(collapser: PerfCollapser, data: bytes, cuts: list[int]) -> bytes:
    """Feed ``data`` cut at ``cuts`` (any bytes), then give the folded output."""
    previous = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        collapser.feed(data[previous:cut])
        previous = cut
    collapser.feed(data[previous:])
    return collapser.finish().to_bytes()


def collapse_record_by_record(data: bytes, options: PerfOptions | None = None) -> bytes:
    """Collapse without the fast path for uniform input: every record through RECORD."""
    collapser = PerfCollapser(options, native=False)
    collapser.count_records = lambda data: None  # type: ignore[method-assign]
    collapser.feed(data)
    return collapser.finish().to_bytes()


@pytest.mark.parametrize(
    ("source", "expected", "option"),
    [*corpus_cases(), *expected_cases(DATA / "perf")],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_record_by_record_reader_gives_the_same(source: Path, expected: Path, option: str) -> None:
    got = collapse_record_by_record(read_input(source), OPTION_SETS[option])
    assert got == expected.read_bytes()


def test_record_split_stride_is_records_groups_and_one() -> None:
    """RECORD is compiled at first use; the stride its split() gives is a constant."""
    assert perf.P.RECORD.groups + 1 == perf.SPLIT_STRIDE


def test_uniform_input_takes_the_fast_path() -> None:
    data = (DATA / "perf" / "system-wide.txt").read_bytes()
    counted = PerfCollapser(native=False).count_records(data)
    assert counted is not None
    first, records = counted
    assert first.startswith(b"swapper") and first.count(b"\n\n") == 0
    assert sum(records.values()) == data.count(b"\n\n")  # every record but the first


HEADS = st.sampled_from(
    [
        "prog 12/34 [000] 1.5: 7 cycles:",
        "prog 12 [001] 1.5:    3 cycles:u:  ",
        "two words 12/34 [000] 1.5: 7 cycles:",
        "a 1 [000] 1.5: 7 cycles:",
        "kworker/1:0 9/9 [000] 1.5: 2 cpu-clock:",
        "prog 12/34 [000] 1.5: extra: 5 cycles:",
        "prog 12/34 [000] 1.5: cycles:",
        "prog 12//34 1.5: 4 cycles:",
        "prog 56/78 [000] 1.5: 9 instructions:",
        "prog 12/34 [000] 1.5: 1 cycles:  4005d6 main+0x1 (/bin/prog)",
        "# a comment",
    ]
)
FRAMES = st.sampled_from(
    [
        "\t4005d6 main+0x1 (/bin/prog)",
        "    ffffffff81 do_syscall_64 ([kernel.kallsyms])",
        "\t7f00 [unknown] (/memfd:sealed (deleted))",
        "   ",
        "not indented",
    ]
)
SEPARATORS = st.sampled_from(["\n", "\n\n", "\n\n\n", "\n \n"])
RECORDS = st.lists(
    st.tuples(HEADS, st.lists(FRAMES, max_size=4), SEPARATORS), min_size=1, max_size=8
)


@settings(max_examples=500, deadline=None)
@given(records=RECORDS, option=st.sampled_from(["default", "pid", "tid"]))
def test_fast_path_agrees_with_record_by_record(
    records: list[tuple[str, list[str], str]], option: str
) -> None:
    """Whatever the mix of record shapes, the fast path for uniform input gives what
    reading record by record gives (or steps aside)."""
    # Between two plain records, so that the generated ones are not the first or the
    # last of the input, which are always read record by record.
    plain = "prog 1/1 [000] 1.0: 1 cycles:\n\t4005d6 main+0x1 (/bin/prog)\n\n"
    text = plain + "".join("\n".join([head, *frames]) + gap for head, frames, gap in records)
    text += "\n" + plain
    options = OPTION_SETS[option]
    data = text.encode()
    assert collapse(data, options, native=False) == collapse_record_by_record(data, options)


# Pieces of frame lines where the C path and the Python reference could part ways.
NAME_PARTS = st.sampled_from(
    [
        "main",
        "f",
        "L",
        "Lcom/x/Y;.run",
        "::h0123456789abcdef",
        "::handle",
        "$LT$",
        "$u20$",
        "(int)",
        "<int (int)>",
        "->",
        "[unknown]",
        "+0x1f",
        "+0x",
        "0x",
        ";",
        "'",
        '"',
        " ",
        "\t",
        "\r",
        "\xe9",
        "\u0663",
        "_[j]",
        "_[k]",
        ".llvm.12",
        "(anonymous namespace)",
        "(anonymous namespace",
        "<",
        ">",
        ".(",
        ").",
        "$",
        "$C$",
        "$u1f600$",
        "$u1234567$",
        "$u$",
        "h",
        ":",
    ]
)
MODULES = st.sampled_from(
    [
        "/bin/prog",
        "[kernel.kallsyms]",
        "[unknown]",
        "/tmp/perf-12.map",
        "/tmp/jitted-1-2.so",
        "/boot/vmlinux-6.1",
        "/lib/x.ko",
        "/lib/x.ko.xz",
        "/lib/vmlinux",
        "/memfd:x (deleted)",
        "/opt/a (x86)/b.so",
        "",
        "unknown",
        "/tmp/perf-x.map",
        "(",
        ")",
        "\xff",
    ]
)
GENERATED_FRAMES = st.builds(
    lambda indent, pc, parts, module, tail: f"{indent}{pc} {''.join(parts)} ({module}){tail}",
    st.sampled_from(["\t", "    ", " \t", "\t  "]),
    st.sampled_from(["4005d6", "ffffffff81", "x", "_", "0"]),
    st.lists(NAME_PARTS, max_size=4),
    MODULES,
    st.sampled_from(["", "", " ", "\r", " x", ")"]),
)
GENERATED_HEADS = st.one_of(
    HEADS,
    st.builds(
        lambda comm, ids, period, event: f"{comm} {ids} [000] 1.5: {period} {event}:",
        st.sampled_from(
            ["prog", "java", "javac", "a", "two words", "x\xe9", "p;q", "p_q", ":-1", ":-12"]
        ),
        st.sampled_from(["1/2", "3", "4//5", "6/", "0/0", "-1/-1", "16543/-1", "-1", "-12/3"]),
        st.sampled_from(["", "7", "0", "007", "123456789012345678901234"]),
        st.sampled_from(["cycles", "cycles:u", "instructions", "cpu-clock"]),
    ),
)
# `perf script --header` puts comment lines before the first record.
COMMENTS = st.sampled_from(
    ["#", "# ========", "# cmdline : perf record -g", "# event: ", "#prog 1/1 [000] 1.5: 1 cycles:"]
)
GENERATED_LINES = st.one_of(
    GENERATED_HEADS,
    COMMENTS,
    GENERATED_FRAMES,
    FRAMES,
    st.sampled_from(["", "", "", " "]),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(GENERATED_LINES, max_size=30),
    junk=st.binary(max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
    option=st.sampled_from(sorted(OPTION_SETS)),
)
def test_c_path_agrees_with_python_on_generated_input(
    lines: list[str], junk: bytes, cuts: list[int], option: str
) -> None:
    """Perf-like input of every shape, with stray bytes, fed to the C path in chunks cut
    anywhere, gives what the pure-Python reference gives for the whole."""
    if NATIVE_PATHS[1].marks:
        pytest.skip("the C speedups were not built")
    data = "\n".join(lines).encode("utf-8", "surrogatepass") + junk
    expected = collapse(data, OPTION_SETS[option], native=False)
    collapser = PerfCollapser(OPTION_SETS[option], native=True)
    assert feed_cut(collapser, data, cuts) == expected


def test_byte_by_byte_feeding() -> None:
    data = (DATA / "perf" / "c-burn.txt").read_bytes()
    assert collapse(data, chunk=1) == collapse(data)


def test_corpus_in_small_chunks() -> None:
    folder = conformance_dir("perf")
    data = read_input(folder / "example-perf-stacks.txt")
    expected = (folder / "example-perf-stacks.default.folded").read_bytes()
    assert collapse(data, chunk=4093) == expected


def test_c_path_folds_java_and_cpp_names_and_header_comments_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Java names (`$`, `;`), C++ argument lists and `perf script --header` comments are
    folded in C: no frame line or record of the corpus's example goes to the Python
    reference (whose regular expressions then need not be compiled). Same output."""
    if NATIVE_PATHS[1].marks:
        pytest.skip("the C speedups were not built")
    data = read_input(conformance_dir("perf") / "example-perf-stacks.txt")
    options = OPTION_SETS["all"]
    expected = collapse(data, options, native=False)
    asked: list[object] = []
    for name in ("_cache_line", "_fold_mixed"):
        method = getattr(PerfCollapser, name)
        monkeypatch.setattr(
            PerfCollapser,
            name,
            lambda self, *args, _m=method: asked.append(args) or _m(self, *args),
        )
    assert collapse(data, options, native=True) == expected
    assert asked == []


def test_c_path_agrees_where_few_records_repeat_and_its_record_cache_pauses() -> None:
    """Where few records repeat, the C folder stops storing them for a while (storing cost
    more than folding afresh) and then tries again: thousands of records, new ones, repeats
    of records seen before, during and after a pause, and of a second event (dropped), in
    chunks cut anywhere, give what the pure-Python reference gives."""
    if NATIVE_PATHS[1].marks:
        pytest.skip("the C speedups were not built")
    records = []
    for index in range(3000):
        seen = (index * 7919) % (index + 1)  # new records at first, then more repeats
        chosen = index if index < 600 or index % 3 else seen
        event = "instructions" if chosen % 11 == 5 else "cycles"
        frames = "".join(
            f"\t{40 + depth:x} f{chosen % (depth + 2)} (/bin/p)\n" for depth in range(6)
        )
        records.append(f"p{chosen % 5} 1/1 [000] 1.0: {chosen % 3 + 1} {event}:\n{frames}\n")
    data = "".join(records).encode()
    for options in (OPTION_SETS["default"], OPTION_SETS["tid"]):
        expected = collapse(data, options, native=False)
        assert collapse(data, options, native=True) == expected
        assert collapse(data, options, chunk=65521, native=True) == expected


# -- fixes of the Perl script's bugs ---------------------------------------------

RECORD = "prog 1234/1234 [000] 100.000001: 1 cycles:\n{frames}\n"


def one(frames: str, options: PerfOptions | None = None, header: str = RECORD) -> str:
    return collapse(header.format(frames=frames).encode(), options).decode()


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_an_empty_line_ends_a_record_read_line_by_line(native: bool) -> None:
    """Found by the C-against-Python property test: the line-by-line reader let a record
    run on over an empty line, so the result hung on where a feed's chunk ended.
    stackcollapse-perf.pl ends a record at an empty line; now flamed does too."""
    data = b"prog 1/1 [000] 1.5: 7 cycles:\nab 0 \n\n\t4005d6 main+0x1 (/bin/prog)\n\n"
    data += b"prog 1/1 [000] 1.5: 7 cycles:\n"
    assert collapse(data, native=native) == b"ab 1\nprog 14\n"
    assert collapse(data, chunk=47, native=native) == b"ab 1\nprog 14\n"


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_a_first_frame_line_without_frames_folds_to_the_command(native: bool) -> None:
    """Found by UBSan in CI (tests/reliability/asan.sh): when the first frame line the C
    path folds gives no frame (a symbol in parentheses), its empty result was copied from
    a buffer not yet allocated (memcpy from NULL, undefined even for 0 bytes)."""
    data = b"prog 1/1 [000] 1.5: 7 cycles:\n\t4005d6 (x) (/bin/prog)\n\n"
    assert collapse(data, native=native) == b"prog 7\n"


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_java_names_lose_the_l_after_quotes_go(native: bool) -> None:
    """The tidy rules apply in order: quotes go, then a Java name's leading L."""
    data = b'java 1/1 [000] 1.5: 1 cycles:\n\t7f1 "Lcom/x/Y;.run (/tmp/perf-1.map)\n\n'
    assert collapse(data, native=native) == b"java;com/x/Y:.run 1\n"


def test_samples_counted_instead_of_weighted_by_period() -> None:
    data = b"ab 1 1.0: 3 cycles:\n\t1 f (/x)\n\nab 1 2.0: 4 cycles:\n\t1 f (/x)\n\n"
    data += b"            ab 1 3.0: 5 cycles:      7f1 f+0x3 (/x)\n"
    assert collapse(data) == b"ab;f 12\n"
    assert collapse(data, PerfOptions(period_weights=False)) == b"ab;f 3\n"


def test_last_stack_counts_without_a_blank_line() -> None:
    data = b"ab 1 1.0: 3 cycles:\n\t1 f (/x)\n\nab 1 2.0: 4 cycles:\n\t1 g (/x)"
    assert collapse(data) == b"ab;f 3\nab;g 4\n"


@pytest.mark.parametrize(
    "module",
    [
        "/boot/vmlinux-5.4.14-cloudflare-2020.1.11",
        "/lib/modules/5.4/kernel/ext4.ko",
        "[kernel.kallsyms]",
        "/usr/lib/debug/vmlinux",
    ],
)
def test_kernel_images_and_modules_are_kernel_frames(module: str) -> None:
    assert one(f"\tffff1 do_thing ({module})", PerfOptions(annotate_kernel=True)) == (
        "prog;do_thing_[k] 1\n"
    )


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize(
    "module",
    [
        "/tmp/perf-1234.map",
        "/tmp/jitted-1234-5.so",
        # where perf inject --jit writes them: beside the jitdump file, in any folder
        "/srv/app/jitted-1234-5.so",
        "/root/.debug/jit/java-jit-20250101.XXabcd/jitted-1234-5.so",
        "jitted-1234-5.so",
    ],
)
def test_jit_modules_are_jit_frames(module: str, native: bool) -> None:
    data = RECORD.format(frames=f"\t7f1 Interp::run ({module})").encode()
    assert collapse(data, PerfOptions(annotate_jit=True), native=native) == (
        b"prog;Interp::run_[j] 1\n"
    )


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("module", ["/srv/notjitted-1-2.so", "/tmp/jitted-x-2.so", "/tmp/perf.map"])
def test_other_modules_are_not_jit_frames(module: str, native: bool) -> None:
    data = RECORD.format(frames=f"\t7f1 Interp::run ({module})").encode()
    assert collapse(data, PerfOptions(annotate_jit=True), native=native) == b"prog;Interp::run 1\n"


def test_parenthesis_inside_template_is_not_an_argument_list() -> None:
    frame = "\t7f1 std::function<int (int, int)>::operator()(int, int) const (/bin/x)"
    assert one(frame) == "prog;std::function<int (int, int)>::operator 1\n"


@pytest.mark.parametrize(
    ("name", "tidy"),
    [
        ("foo(int)", "foo"),
        ("(anonymous namespace)::bar(char const*)", "(anonymous namespace)::bar"),
        (
            "std::operator<< <std::char_traits<char> >(std::ostream&, char const*)",
            "std::operator<< <std::char_traits<char> >",
        ),
        ("plain", "plain"),
    ],
)
def test_strip_arguments(name: str, tidy: str) -> None:
    assert strip_arguments(name) == tidy


@pytest.mark.parametrize(
    ("mangled", "tidy"),
    [
        (
            "_$LT$core..result..Result$LT$T$C$$u20$E$GT$$GT$::and_then::h47fa4b8545196b9b",
            "<core::result::Result<T, E>>::and_then",
        ),
        (
            "log::set_logger::_$u7b$$u7b$closure$u7d$$u7d$::hcb7821323b596727",
            "log::set_logger::_{{closure}}",
        ),
        ("core::fmt::write::h0123456789abcdef.llvm.1234", "core::fmt::write"),
        ("Lcom/foo/Outer$Inner;.run", "Lcom/foo/Outer$Inner;.run"),
        ("plain_c_function", "plain_c_function"),
    ],
)
def test_rust_legacy_names(mangled: str, tidy: str) -> None:
    assert tidy_rust(mangled) == tidy


def test_records_without_call_chain_are_one_frame_stacks() -> None:
    data = (
        b"            burn 14905   468.863472:    2004008 cpu-clock:      55dc1e5581a6 "
        b"heavy+0x33 (/tmp/burn)\n"
        b"            burn 14905   468.865481:    2004008 cpu-clock:      55dc1e5581b0 "
        b"light+0x3d (/tmp/burn)\n"
    )
    assert collapse(data) == b"burn;heavy 2004008\nburn;light 2004008\n"


def test_event_filter_ignores_modifiers() -> None:
    data = (
        b"ab 1 1.0: 5 cycles:u:\n\t1 f (/x)\n\n"
        b"ab 1 2.0: 7 instructions:u:\n\t1 g (/x)\n\n"
        b"ab 1 3.0: 11 cycles:ppp:\n\t1 h (/x)\n"
    )
    assert collapse(data, PerfOptions(event_filter="cycles")) == b"ab;f 5\nab;h 11\n"
    assert collapse(data, PerfOptions(event_filter="instructions")) == b"ab;g 7\n"


def test_default_event_is_the_first_and_others_are_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = b"".join(
        b"ab 1 %d.0: 1 %s:\n\t1 f (/x)\n\n" % (i, b"cycles" if i % 2 else b"instructions")
        for i in range(10)
    )
    with caplog.at_level(logging.WARNING):
        assert collapse(data) == b"ab;f 5\n"
    assert len([r for r in caplog.records if "more than one event" in r.message]) == 1


def test_module_paths_with_spaces_and_parentheses() -> None:
    frames = (
        "\t7f1 [unknown] (/opt/My App (x86)/lib/libfoo.so)\n\t7f2 main (/opt/My App (x86)/bin/app)"
    )
    assert one(frames) == "prog;main;[libfoo.so] 1\n"


def test_deleted_module_names_an_unknown_frame() -> None:
    assert one("\t27d1a [unknown] (/memfd:sealed-91 (deleted))") == "prog;[memfd:sealed-91] 1\n"


def test_swapper_pid_zero_is_kept() -> None:
    data = b"swapper     0/0     [001] 1.0: 1 cycles:\n\tffff1 cpu_idle ([kernel.kallsyms])\n"
    assert collapse(data, PerfOptions(include_tid=True)) == b"swapper-0/0;cpu_idle 1\n"
    assert collapse(data, PerfOptions(include_pid=True)) == b"swapper-0;cpu_idle 1\n"
    no_pid = b"swapper     0 [001] 1.0: 1 cycles:\n\tffff1 cpu_idle ([kernel.kallsyms])\n"
    assert collapse(no_pid, PerfOptions(include_pid=True)) == b"swapper-?;cpu_idle 1\n"


def test_skip_after_keeps_the_leafmost_match_and_drops_its_callers() -> None:
    frames = "\t1 leaf (/x)\n\t2 handler (/x)\n\t3 dispatch (/x)\n\t4 handler (/x)\n\t5 main (/x)"
    options = PerfOptions(skip_after=("handler",))
    assert one(frames, options) == "handler;leaf 1\n"
    assert one("\t1 leaf (/x)\n\t2 main (/x)", options) == "prog;main;leaf 1\n"


def test_inlined_frames_are_marked() -> None:
    assert one("\t1 outer->inner (/x)") == "prog;outer;inner_[i] 1\n"


# -- bad input -------------------------------------------------------------------


def test_malformed_lines_warn_once_per_kind_and_keep_other_samples(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = (
        b"ab 1 1.0: 1 cycles:\n\t1 f (/x)\n\tgarbage\n\n"
        b"ab 1 2.0: 1 cycles:\n\t1 f (/x)\n\tmore garbage\n\n"
        b"not a perf line at all\n\n"
        b"ab 1 3.0: 1 cycles:\n\t1 g (/x)\n"
    )
    collapser = PerfCollapser()
    with caplog.at_level(logging.WARNING):
        collapser.feed(data)
        folded = collapser.finish()
    assert folded.counts == {"ab;f": 2, "ab;g": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert collapser.warn.counts["unrecognized perf script line"] == 3


def test_invalid_utf8_round_trips() -> None:
    data = b"ab 1 1.0: 1 cycles:\n\t1 caf\xe9_\xff (/x)\n"
    assert collapse(data) == b"ab;caf\xe9_\xff 1\n"


def test_empty_input() -> None:
    assert collapse(b"") == b""
    assert collapse(b"# only a comment\n\n\n") == b""


# -- the command line --------------------------------------------------------------


def test_cli_reads_gzip_and_matches_the_reference() -> None:
    folder = conformance_dir("perf")
    result = run_flamed("collapse", "perf", "--pid", str(folder / "example-perf-stacks.txt.gz"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (folder / "example-perf-stacks.pid.folded").read_bytes()


def test_cli_reads_stdin() -> None:
    data = (DATA / "perf" / "c-burn.txt").read_bytes()
    result = run_flamed("collapse", "perf", "-", stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == collapse(data)


@pytest.mark.parametrize("threads", [[], ["-n", "1"], ["--nthreads", "2"]])
@pytest.mark.parametrize("no_extensions", ["1", ""])
def test_cli_large_file_on_several_cores_equals_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: list[str], no_extensions: str
) -> None:
    """Inputs over 8 MiB are split between processes on the pure-Python path (-n caps
    them, as inferno's option); the result must not change, whatever the path."""
    folder = conformance_dir("perf")
    data = read_input(folder / "example-perf-stacks.txt") * 3
    big = tmp_path / "big.txt"
    big.write_bytes(data)
    monkeypatch.setenv("FLAMED_NO_EXTENSIONS", no_extensions)
    result = run_flamed("collapse", "perf", "--tid", *threads, str(big))
    assert result.returncode == 0, result.stderr
    assert result.stdout == collapse(data, PerfOptions(include_tid=True))


@pytest.mark.parametrize("fmt", ["perf", "dtrace"])
def test_cli_nthreads_must_be_a_positive_number(fmt: str) -> None:
    result = run_flamed("collapse", fmt, "-n", "0", "-")
    assert result.returncode == 2
    assert b"at least 1" in result.stderr and b"Traceback" not in result.stderr


def test_cli_missing_file_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = run_flamed("collapse", "perf", str(tmp_path / "nope.txt"))
    assert result.returncode == 1
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "nope.txt" in lines[0] and "Traceback" not in lines[0]


def test_cli_help_explains_every_option() -> None:
    result = run_flamed("collapse", "perf", "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for option in (
        "--pid",
        "--tid",
        "--kernel",
        "--jit",
        "--all",
        "--addrs",
        "--event-filter",
        "--skip-after",
        "--srcline",
        "--python",
    ):
        assert option in text


# -- records perf prints with pid or tid -1 (issue 16) ---------------------------------------

# The shape of the records the issue reported from a daemon's bucket: perf names a thread it
# knows nothing of ":TID" (here ":-1") and prints pid/tid as "%5d/%-5d". Written by hand from
# that report; the Perl script folds them as ":-1_16543/-1______390.832478:".
UNKNOWN_PID = (
    b":-1 16543/-1    390.832478:   10101010 cpu-clock:\n"
    b"\tffffffff8100 do_idle ([kernel.kallsyms])\n"
    b"\tffffffff8200 cpu_startup_entry ([kernel.kallsyms])\n\n"
    b":-1    -1/-1    390.842478:   10101010 cpu-clock:\n"
    b"\tffffffff8100 do_idle ([kernel.kallsyms])\n"
    b"\tffffffff8200 cpu_startup_entry ([kernel.kallsyms])\n\n"
    b"java 4242/-1    390.852478:   10101010 cpu-clock:\n"
    b"\t7f0001 Interpreter (/tmp/perf-4242.map)\n\n"
)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (PerfOptions(period_weights=False), b"[unknown pid];cpu_startup_entry;do_idle 2\n"),
        (PerfOptions(include_pid=True, period_weights=False),
         b"[unknown pid]--1;cpu_startup_entry;do_idle 1\n"
         b"[unknown pid]-16543;cpu_startup_entry;do_idle 1\n"),
    ],
    ids=["default", "pid"],
)  # fmt: skip
@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_records_of_pid_or_tid_minus_one_fold_under_a_readable_name(
    options: PerfOptions, expected: bytes, native: bool
) -> None:
    folded = collapse(UNKNOWN_PID, options, native=native)
    assert folded.startswith(expected), folded
    last = folded.splitlines()[-1]  # a real name is kept
    assert last.startswith(b"java") and last.endswith(b";Interpreter 1"), folded
    by_lines = PerfCollapser(options)
    by_lines._fold_lines(UNKNOWN_PID.decode().split("\n"))  # the record-by-record reader
    assert by_lines.finish().to_bytes() == folded
    repeated = UNKNOWN_PID * 3  # uniform input: the fast path
    assert collapse(repeated, options, native=native) == collapse(repeated, options, chunk=7)


# A thread without a name whose pid and tid perf knows: the command alone says it.
UNKNOWN_COMM = b":-1  4242/4243  390.862478:   10101010 cpu-clock:\n\t7f0001 spin (/bin/x)\n\n"


@pytest.mark.parametrize("option", sorted(OPTION_SETS))
def test_c_path_folds_unknown_pids_as_python_does(option: str) -> None:
    """Issue 16's records of pid or tid -1 (and of command ":-1"), alone, between common
    records and cut anywhere: the C path gives what the Python reference gives."""
    if NATIVE_PATHS[1].marks:
        pytest.skip("the C speedups were not built")
    common = b"prog 1/1 [000] 1.0: 3 cpu-clock:\n\t4005d6 main+0x1 (/bin/prog)\n\n"
    options = OPTION_SETS[option]
    for data in (UNKNOWN_PID, UNKNOWN_COMM, common + UNKNOWN_PID + common + UNKNOWN_COMM):
        expected = collapse(data, options, native=False)
        assert b"[unknown pid]" in expected
        assert collapse(data, options, native=True) == expected
        for chunk in (1, 7, 64):
            assert collapse(data, options, chunk=chunk, native=True) == expected


def test_an_event_filter_that_keeps_nothing_names_the_events_present() -> None:
    data = b"ab 1 1.0: 5 cycles:u:\n\t1 f (/x)\n\nab 1 2.0: 7 instructions:\n\t1 g (/x)\n"
    collapser = PerfCollapser(PerfOptions(event_filter="nosuch"))
    collapser.feed(data)
    assert not collapser.finish()
    reason = collapser.empty_reason()
    assert (
        reason
        == "no samples of event 'nosuch' (--event-filter); the input has cycles:u, instructions"
    )
    kept = PerfCollapser(PerfOptions(event_filter="cycles"))
    kept.feed(data)
    assert kept.finish() and kept.empty_reason() is None
    nothing = PerfCollapser()
    nothing.feed(b"\x93garbage\n")
    assert not nothing.finish() and nothing.empty_reason() is None  # the command says why


# -- perf-map frames named by the caller's resolver --------------------------------

JIT_RECORD = (
    "node 77/77 [000] 1.5: 1 cpu-clock:\n"
    "\t7f10 [unknown] (/tmp/perf-77.map)\n"
    "\t7f00 JS:*stale /x.js:1 (/tmp/perf-77.map)\n"
    "\t7e00 JS:*kept /x.js:2 (/tmp/perf-77.map)\n"
    "\t7f10 [unknown] (/tmp/perf-77.map (deleted))\n"
    "\t14cfd1c Builtins_JSEntry (/usr/bin/node)\n\n"
)


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_a_map_resolver_names_perf_map_frames(native: bool) -> None:
    """``[unknown]`` and stale names of perf-map frames are replaced by the resolver's;
    where it has none, perf's name stays; frames of other modules are never asked."""
    names = {0x7F10: "JS:*hot /x.js:3", 0x7F00: "JS:*fresh /x.js:9"}
    asked: list[tuple[int, int]] = []

    def resolve(pid: int, address: int) -> str | None:
        asked.append((pid, address))
        return names.get(address)

    collapser = PerfCollapser(PerfOptions(annotate_jit=True), native=native, maps=resolve)
    collapser.feed(JIT_RECORD.encode() * 3)
    assert collapser.finish().to_bytes() == (
        b"node;Builtins_JSEntry;JS:*hot /x.js:3_[j];JS:*kept /x.js:2_[j];"
        b"JS:*fresh /x.js:9_[j];JS:*hot /x.js:3_[j] 3\n"
    )
    assert sorted(set(asked)) == [(77, 0x7E00), (77, 0x7F00), (77, 0x7F10)]
    without = PerfCollapser(PerfOptions(annotate_jit=True), native=native)
    without.feed(JIT_RECORD.encode())
    assert without.finish().to_bytes() == (
        b"node;Builtins_JSEntry;[perf-77.map]_[j];JS:*kept /x.js:2_[j];"
        b"JS:*stale /x.js:1_[j];[perf-77.map]_[j] 1\n"
    )


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(GENERATED_LINES, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
    option=st.sampled_from(sorted(OPTION_SETS)),
    names=st.dictionaries(
        st.integers(min_value=0, max_value=0x7F), st.sampled_from(["JS:*f x", "a;b", "[unknown]"])
    ),
)
def test_c_path_agrees_with_python_with_a_map_resolver(
    lines: list[str], cuts: list[int], option: str, names: dict[int, str]
) -> None:
    """With a resolver, the C path leaves perf-map frames to Python: the same output."""
    if NATIVE_PATHS[1].marks:
        pytest.skip("the C speedups were not built")
    frames = [f"\t{address:x} [unknown] (/tmp/perf-12.map)" for address in names]
    data = "\n".join([*lines, "prog 1/1 [000] 1.5: 1 cycles:", *frames]).encode(
        "utf-8", "surrogatepass"
    )

    def resolve(pid: int, address: int) -> str | None:
        return names.get(address) if pid == 12 else None

    expected = PerfCollapser(OPTION_SETS[option], native=False, maps=resolve)
    expected.feed(data)
    collapser = PerfCollapser(OPTION_SETS[option], native=True, maps=resolve)
    assert feed_cut(collapser, data, cuts) == expected.finish().to_bytes()


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_python_view_with_jit_annotations_drops_the_jit_mark(native: bool) -> None:
    source = (DATA / "perf" / "python-trampoline.txt").read_bytes()
    plain = collapse(source, PerfOptions(python=True), native=native)
    marked = collapse(source, PerfOptions(python=True, annotate_jit=True), native=native)
    assert marked == plain and b"foo (/src/script.py)" in plain


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_a_finished_collapser_is_freed_without_the_garbage_collector(native: bool) -> None:
    """The daemon finishes a collapser per bucket: its caches (every stack of the bucket)
    must go when it is dropped, not wait for a full pass of the cyclic garbage collector."""
    collapser = PerfCollapser(native=native)
    collapser.feed(b"perf 1 [000] 1.0: 1 cpu-clock:\n\tffff main (/bin/x)\n\n")
    assert collapser.finish().counts == {"perf;main": 1}
    holder = [collapser]
    del collapser
    assert_freed_when_dropped(holder)


@given(
    st.text(alphabet=st.sampled_from("ukhpPGHISDWe:xyc-\n "), max_size=12)
    | st.sampled_from(["cycles:ppp", "cpu-clock:u", "a:u:k", "cycles:", "x:u\n", ":u"])
)
def test_event_base_drops_modifiers_as_the_regular_expression_did(event: str) -> None:
    """event_base() lost its regular expression (the C path calls it, and importing re cost
    ~8 ms of every start); it still drops what `:[ukhpPGHISDWe]+$` matched."""
    assert perf.event_base(event) == re.sub(r":[ukhpPGHISDWe]+$", "", event)


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_stacks_are_counted_in_order_of_first_appearance_and_past_64_bits(native: bool) -> None:
    """The C folder adds up each fold's weights before they go to the counts dict: the
    dict still has the stacks in order of first appearance, and sums past 2**63 (periods
    of 18 digits) are exact, as Python's ints make them."""
    big = 900_000_000_000_000_000
    records = [
        (b"bee", b"g", big),
        (b"ant", b"f", 3),
        (b"bee", b"g", big),
        (b"cat", b"h", 5),
        (b"ant", b"f", 4),
    ] * 6
    data = b"".join(
        b"%s 1/1 [000] 1.0: %d cycles:\n\t1 %s (/x)\n\n" % (comm, period, frame)
        for comm, frame, period in records
    )
    collapser = PerfCollapser(native=native)
    collapser.feed(data)
    counts = collapser.finish().counts
    assert list(counts) == ["bee;g", "ant;f", "cat;h"]
    assert counts == {"bee;g": 12 * big, "ant;f": 42, "cat;h": 30}
    assert 12 * big > 2**63
