"""The perf collapser against stackcollapse-perf.pl's output, its fixes, and streaming."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse.perf import PerfCollapser, PerfOptions, Record, strip_arguments
from flamed.collapse.symbols import tidy_rust
from flamed.daemon.commands.common import fold_on_two_cores
from tests.conftest import DATA, conformance_dir, run_flamed

OPTION_SETS = {
    "default": PerfOptions(),
    "pid": PerfOptions(include_pid=True),
    "tid": PerfOptions(include_tid=True),
    "kernel": PerfOptions(annotate_kernel=True),
    "jit": PerfOptions(annotate_jit=True),
    "all": PerfOptions(annotate_kernel=True, annotate_jit=True),
    "addrs": PerfOptions(include_addrs=True),
    "srcline": PerfOptions(srcline=True),
}


def collapse(data: bytes, options: PerfOptions | None = None, chunk: int = 0) -> bytes:
    collapser = PerfCollapser(options)
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


@pytest.mark.parametrize(
    ("source", "expected", "option"),
    corpus_cases() or [pytest.param(None, None, None, marks=pytest.mark.skip("no corpus"))],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_matches_stackcollapse_perf(source: Path, expected: Path, option: str) -> None:
    conformance_dir("perf")
    assert collapse(read_input(source), OPTION_SETS[option]) == expected.read_bytes()


@pytest.mark.parametrize(
    ("source", "expected", "option"),
    expected_cases(DATA / "perf"),
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_recorded_fixtures(source: Path, expected: Path, option: str) -> None:
    """Recorded with real perf on this machine; expected outputs from stackcollapse-perf.pl
    where it is right, checked by hand where flamed differs on purpose (no call chain,
    source lines). FLAMED_REGEN=1 rewrites them from this code, for review."""
    got = collapse(source.read_bytes(), OPTION_SETS[option])
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
    previous = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        collapser.feed(data[previous:cut])
        previous = cut
    collapser.feed(data[previous:])
    assert collapser.finish().to_bytes() == whole


def collapse_record_by_record(data: bytes, options: PerfOptions | None = None) -> bytes:
    """Collapse without the fast path for uniform input: every record through RECORD."""
    collapser = PerfCollapser(options)
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


def test_uniform_input_takes_the_fast_path() -> None:
    data = (DATA / "perf" / "system-wide.txt").read_bytes()
    counted = PerfCollapser().count_records(data)
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
    assert collapse(data, options) == collapse_record_by_record(data, options)


def test_byte_by_byte_feeding() -> None:
    data = (DATA / "perf" / "c-burn.txt").read_bytes()
    assert collapse(data, chunk=1) == collapse(data)


def test_corpus_in_small_chunks() -> None:
    folder = conformance_dir("perf")
    data = read_input(folder / "example-perf-stacks.txt")
    expected = (folder / "example-perf-stacks.default.folded").read_bytes()
    assert collapse(data, chunk=4093) == expected


# -- fixes of the Perl script's bugs ---------------------------------------------

RECORD = "prog 1234/1234 [000] 100.000001: 1 cycles:\n{frames}\n"


def one(frames: str, options: PerfOptions | None = None, header: str = RECORD) -> str:
    return collapse(header.format(frames=frames).encode(), options).decode()


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


@pytest.mark.parametrize("module", ["/tmp/perf-1234.map", "/tmp/jitted-1234-5.so"])
def test_jit_modules_are_jit_frames(module: str) -> None:
    assert one(f"\t7f1 Interp::run ({module})", PerfOptions(annotate_jit=True)) == (
        "prog;Interp::run_[j] 1\n"
    )


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


def test_cli_large_file_on_two_cores_equals_one(tmp_path: Path) -> None:
    """Inputs over 8 MiB are split between two processes; the result must not change."""
    folder = conformance_dir("perf")
    data = read_input(folder / "example-perf-stacks.txt") * 3
    big = tmp_path / "big.txt"
    big.write_bytes(data)
    result = run_flamed("collapse", "perf", "--tid", str(big))
    assert result.returncode == 0, result.stderr
    assert result.stdout == collapse(data, PerfOptions(include_tid=True))


def two_core_inputs() -> dict[str, bytes]:
    system = (DATA / "perf" / "system-wide.txt").read_bytes()
    return {
        "uniform": b"\n".join([system] * 3),
        "mixed": b"\n".join([system, (DATA / "perf" / "no-callchain.txt").read_bytes(), system]),
    }


@pytest.mark.parametrize("shape", ["uniform", "mixed"])
@pytest.mark.parametrize("option", ["default", "tid"])
def test_two_cores_fold_what_one_does(shape: str, option: str) -> None:
    data = two_core_inputs()[shape]
    collapser = PerfCollapser(OPTION_SETS[option])
    summed = []
    fold_counted = collapser.fold_counted

    def sum_and_fold(first: bytes, records: dict[Record, int]) -> None:
        summed.append(sum(records.values()))
        fold_counted(first, records)

    collapser.fold_counted = sum_and_fold  # type: ignore[method-assign]
    got = fold_on_two_cores(collapser, data).to_bytes()
    assert got == collapse(data, OPTION_SETS[option])
    if shape == "uniform":  # this process folded a part only: the child did the rest
        assert len(summed) == 1 and 0 < summed[0] < data.count(b"\n\n") * 2 // 3


def test_two_cores_keep_the_first_event_of_the_whole_input() -> None:
    """The child, starting in the middle, sees another event first: its stacks must
    not count, as the whole input's first event is the one kept."""
    system = (DATA / "perf" / "system-wide.txt").read_bytes()
    data = system + b"\n\n" + system.replace(b" cpu-clock:", b" instructions:")
    got = fold_on_two_cores(PerfCollapser(), data).to_bytes()
    assert got == collapse(data) == collapse(system)


def test_two_cores_when_the_child_fails() -> None:
    data = two_core_inputs()["uniform"]
    collapser = PerfCollapser()
    parent = os.getpid()
    count_records = collapser.count_records

    def count_or_fail_in_child(part: bytes) -> object:
        if os.getpid() != parent:
            raise MemoryError
        return count_records(part)

    collapser.count_records = count_or_fail_in_child  # type: ignore[assignment,method-assign]
    assert fold_on_two_cores(collapser, data).to_bytes() == collapse(data)


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
def test_records_of_pid_or_tid_minus_one_fold_under_a_readable_name(
    options: PerfOptions, expected: bytes
) -> None:
    folded = collapse(UNKNOWN_PID, options)
    assert folded.startswith(expected), folded
    last = folded.splitlines()[-1]  # a real name is kept
    assert last.startswith(b"java") and last.endswith(b";Interpreter 1"), folded
    by_lines = PerfCollapser(options)
    by_lines._fold_lines(UNKNOWN_PID.decode().split("\n"))  # the record-by-record reader
    assert by_lines.finish().to_bytes() == folded
    repeated = UNKNOWN_PID * 3  # uniform input: the fast path
    assert collapse(repeated, options) == collapse(UNKNOWN_PID * 3, options, chunk=7)


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
