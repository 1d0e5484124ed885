"""Fuzz every parser flamed has (case 2 of issue 9) with atheris, for as long as asked.

    python tests/reliability/fuzz_parsers.py --minutes 60            # all parsers
    python tests/reliability/fuzz_parsers.py --minutes 5 --only perf

Parsers: ``perf`` (perf script), ``dtrace``, ``folded``, ``guess`` (format
guessing, then one of the collapsers), ``recursive``, ``sample``, ``xctrace``,
``vtune``, ``vsprof``, ``ghcprof``, ``bpftrace`` (the collapsers of issue 18),
``native`` (the C speedups against the pure-Python reference: perf, DTrace and
folded input, and the flame graph of the result, must come out the same),
``config`` (the daemon's TOML) and ``query`` (the HTTP query parameters: render
options and time ranges). ``perf``, ``dtrace`` and ``guess`` take the C path too,
where it was built. Each input is fed
in two pieces split where the input says, as a stream arrives. Documented user
errors (``FlamedError``: a 400 or a one-line CLI error) are fine; any other
exception is a crash, which atheris/libFuzzer reports with the input (saved as
``crash-*``) and stops on. Hangs: libFuzzer's ``-timeout`` (10 s per input).
Memory: ``-rss_limit_mb`` (1024); libFuzzer prints ``stat::peak_rss_mb`` (and the
runs, ``stat::slowest_unit_time_sec``) at the end (``-print_final_stats=1``).

The same ``fuzz_one`` runs under hypothesis in CI (tests/reliability/
test_hostile_input.py) for a bounded number of examples.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from flamed.collapse.errors import FlamedError

ROOT = Path(__file__).resolve().parents[2]


def feed_in_two(collapser: object, data: bytes, split: int) -> object:
    cut = split % (len(data) + 1)
    collapser.feed(data[:cut])  # type: ignore[attr-defined]
    collapser.feed(data[cut:])  # type: ignore[attr-defined]
    return collapser.finish()  # type: ignore[attr-defined]


def fuzz_perf(data: bytes, split: int) -> None:
    from flamed.collapse.perf import PerfCollapser, PerfOptions

    folded = feed_in_two(PerfCollapser(), data, split)
    every = PerfOptions(
        include_tid=True,
        annotate_kernel=True,
        annotate_jit=True,
        include_addrs=True,
        skip_after=("main",),
        srcline=bool(split & 1),
        period_weights=bool(split & 2),
    )
    check_folded(feed_in_two(PerfCollapser(every), data, split))
    check_folded(folded)


def fuzz_dtrace(data: bytes, split: int) -> None:
    from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions

    options = DTraceOptions(include_offset=bool(split & 1))
    check_folded(feed_in_two(DTraceCollapser(options), data, split))


def fuzz_folded(data: bytes, split: int) -> None:
    from flamed.collapse.folded import FoldedCollapser, read_folded

    whole = read_folded(data)
    streamed = feed_in_two(FoldedCollapser(), data, split)
    check_folded(whole)
    assert dict(whole.items()) == dict(streamed.items())  # type: ignore[attr-defined]


def fuzz_native(data: bytes, split: int) -> None:
    """The C speedups against the pure-Python reference: the same profile from the perf,
    DTrace and folded collapsers (each side cut elsewhere), the same flame graph."""
    import os

    from flamed.collapse import speedups
    from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions
    from flamed.collapse.folded import FoldedCollapser
    from flamed.collapse.perf import PerfCollapser, PerfOptions
    from flamed.render.nameattr import FrameAttrs
    from flamed.render.options import RenderOptions
    from flamed.render.svg import render_flamegraph

    if speedups.built() is None or speedups.built(speedups.RENDER) is None:
        return
    options = PerfOptions(
        include_pid=bool(split & 1),
        include_tid=bool(split & 2),
        annotate_kernel=bool(split & 4),
        annotate_jit=bool(split & 8),
        include_addrs=bool(split & 16),
        period_weights=bool(split & 32),
    )
    makers: list[Callable[[bool], object]] = [
        lambda native: PerfCollapser(options, native=native),
        lambda native: DTraceCollapser(DTraceOptions(bool(split & 1)), native=native),
        lambda native: FoldedCollapser(native=native),
    ]
    for make in makers:
        python = feed_in_two(make(False), data, split)
        assert feed_in_two(make(True), data, split * 7 + 3) == python
    attrs = FrameAttrs(title="t", group=(("class", "c"),), link=(("href", "x"), ("target", "_top")))
    render = RenderOptions(
        minwidth=0,
        inverted=bool(split & 1),
        truncate="left" if split & 2 else "right",
        name_attrs={"main": attrs, "[unknown]": attrs} if split & 4 else {},
    )
    os.environ[speedups.DISABLE_VARIABLE] = "1"
    try:
        drawn = render_flamegraph(python, render)  # type: ignore[arg-type]
    finally:
        del os.environ[speedups.DISABLE_VARIABLE]
    assert render_flamegraph(python, render) == drawn  # type: ignore[arg-type]


def fuzz_recursive(data: bytes, split: int) -> None:
    from flamed.collapse.recursive import RecursiveCollapser

    check_split(RecursiveCollapser, data, split)


def fuzz_sample(data: bytes, split: int) -> None:
    from flamed.collapse.sample import SampleCollapser, SampleOptions

    check_split(lambda: SampleCollapser(SampleOptions(modules=bool(split & 1))), data, split)


def fuzz_xctrace(data: bytes, split: int) -> None:
    from flamed.collapse.xctrace import XctraceCollapser

    check_split(XctraceCollapser, data, split)


def fuzz_vtune(data: bytes, split: int) -> None:
    from flamed.collapse.vtune import VTuneCollapser, VTuneOptions

    check_split(lambda: VTuneCollapser(VTuneOptions(modules=bool(split & 1))), data, split)


def fuzz_vsprof(data: bytes, split: int) -> None:
    from flamed.collapse.vsprof import VsprofCollapser

    check_split(VsprofCollapser, data, split)


def fuzz_ghcprof(data: bytes, split: int) -> None:
    from flamed.collapse.ghcprof import GhcProfCollapser, GhcProfOptions, Source

    sources: tuple[Source, ...] = ("time", "ticks", "bytes")
    options = GhcProfOptions(source=sources[split % 3])
    check_split(lambda: GhcProfCollapser(options), data, split)


def fuzz_bpftrace(data: bytes, split: int) -> None:
    from flamed.collapse.bpftrace import BpftraceCollapser

    check_split(BpftraceCollapser, data, split)


def check_split(make: Callable[[], object], data: bytes, split: int) -> None:
    """The result re-reads, and feeding in two pieces gives what feeding whole gives."""
    whole = feed_in_two(make(), data, len(data))
    check_folded(whole)
    assert feed_in_two(make(), data, split) == whole


def fuzz_guess(data: bytes, split: int) -> None:
    from flamed.collapse.guess import GuessCollapser

    check_folded(feed_in_two(GuessCollapser(), data, split))


def fuzz_config(data: bytes, split: int) -> None:
    from flamed.daemon.config import parse_config

    text = data.decode("utf-8", "replace")
    parse_config(text, "fuzz.toml", env={}, euid=1000)


def fuzz_query(data: bytes, split: int) -> None:
    from flamed.daemon.timerange import diff_ranges, parse_range
    from flamed.render.options import options_from_query

    text = data.decode("utf-8", "replace")
    params = {}
    for part in text.split("&"):
        key, _, value = part.partition("=")
        params[key] = value
    now = 1_700_000_000.0
    for parse in (
        lambda: options_from_query(params),
        lambda: parse_range(params, now, 300.0),
        lambda: diff_ranges(params, now, 300.0),
    ):
        with contextlib.suppress(FlamedError):  # each on its own: one refusal hides no other
            parse()


def check_folded(folded: object) -> None:
    """What every parser promises: a profile that writes out and reads back the same."""
    from flamed.collapse.folded import Folded, read_folded

    assert isinstance(folded, Folded)
    again = read_folded(folded.to_bytes())
    assert len(again) == len(folded), (len(again), len(folded))


PARSERS: dict[str, Callable[[bytes, int], None]] = {
    "perf": fuzz_perf,
    "dtrace": fuzz_dtrace,
    "folded": fuzz_folded,
    "guess": fuzz_guess,
    "native": fuzz_native,
    "recursive": fuzz_recursive,
    "sample": fuzz_sample,
    "xctrace": fuzz_xctrace,
    "vtune": fuzz_vtune,
    "vsprof": fuzz_vsprof,
    "ghcprof": fuzz_ghcprof,
    "bpftrace": fuzz_bpftrace,
    "config": fuzz_config,
    "query": fuzz_query,
}


def fuzz_one(name: str, data: bytes, split: int = 0) -> None:
    """Run one parser on one input; documented user errors are fine, nothing else is."""
    with contextlib.suppress(FlamedError):
        PARSERS[name](data, split)


# -- seeds ---------------------------------------------------------------------------------

SEEDS: dict[str, list[bytes]] = {
    "perf": [
        b"prog 42 [000] 1.000: 1 cpu-clock:\n"
        b"\t7f0000001000 work+0x1 (/usr/lib/libx.so)\n"
        b"\t7f0000000000 main+0x2 (/usr/bin/prog)\n\n"
        b"prog 42/43 [001] 2.5: 250000 cpu-clock:u: \n"
        b"\tffffffff81000000 [unknown] ([kernel.kallsyms])\n\n",
    ],
    "dtrace": [
        b"CPU     ID                    FUNCTION:NAME\n"
        b"  0  64091                        :tick-60s\n\n"
        b"              libc.so.1`_write+0x15\n              prog`main+0x2\n               12\n\n",
    ],
    "folded": [b"main;work;hot 6\nmain;idle 1.5\nbad line\n"],
    "guess": [],
    "recursive": [b"main;fib;fib;fib;add 3\nmain;a;a\t2.5\nbad\n;;; 1\n"],
    "sample": [
        b"Analysis of sampling demo (pid 1) every 1 millisecond\n\nCall graph:\n"
        b"    10 Thread_1   DispatchQueue_1: main  (serial)\n"
        b"    + 10 start  (in libdyld.dylib) + 1  [0x1]\n"
        b"    +   7 main  (in demo) + 2  [0x2]\n    +   ! 7 -[A b:]  (in demo)\n"
        b"    +   3 mach_msg_trap  (in libsystem_kernel.dylib)\nTotal number in stack\n",
    ],
    "xctrace": [
        b'<?xml version="1.0"?>\n<trace-query-result><node><row><backtrace id="1">'
        b'<frame id="2" name="work" addr="0x1"/><frame id="3" name="main"/></backtrace></row>'
        b'<row><backtrace ref="1"/></row><row><sentinel/></row></node></trace-query-result>\n',
    ],
    "vtune": [
        b"Function Stack,CPU Time:Self,Module\nTotal,0.0,[Unknown]\n main,0.0125,a.out\n"
        b'  "f(int, char)",2.5,a.out\n   g,1e-3,libc.so\n',
    ],
    "vsprof": [
        b'Level,Function Name,Inclusive Samples,Exclusive Samples\n0,"a.exe",9,0\n'
        b'1,"main","8,735",0\n2,"f < g >",8,8\n',
        b"Level,Function Name,Number of Calls,Elapsed Inclusive Time %,Elapsed Exclusive Time %,"
        b"Avg Elapsed Inclusive Time,Avg Elapsed Exclusive Time,Module Name,\n"
        b'0,"a.exe",0,1,1,1,1,"",\n1,"main",1,1,1,1,1,"a",\n2,"f","1,200",1,1,1,1,"a",\n',
    ],
    "ghcprof": [
        b"\tTime and Allocation Profiling Report  (Final)\n\n"
        b"COST CENTRE MODULE SRC no. entries  %time %alloc   %time %alloc  ticks     bytes\n\n"
        b"MAIN        MAIN   x    1         0    1.5    0.0   100.0 100.0      3      1200\n"
        b" main       Main   y    2         1   98.5  100.0    98.5 100.0    197 123456789\n",
    ],
    "bpftrace": [
        b"Attaching 2 probes...\n\n\n@[\n    k1+1\n    k2+2\n, \n    u1+3\n, prog]: 5\n"
        b"@[, \n    u2\n, prog]: 1\n@[, , prog]: 2\n@[]: 3\n",
    ],
    "config": [
        b'[server]\nlisten = "127.0.0.1:9797"\nmax_renders = 2\n'
        b'[storage]\nstate_dir = "/tmp/s"\nbucket = "10s"\nretention = "1h"\n'
        b'[profile]\nfrequency = 99\n[[targets]]\nname = "a"\nprocess = "^a$"\n'
        b'[[targets]]\nname = "b"\npids = [1, 2]\ncall_graph = "dwarf"\n',
    ],
    "query": [b"window=5m&width=1200&minwidth=0.5%&colors=java&reverse=1&a_from=now-1h"],
}
SEEDS["guess"] = [seed for name in ("perf", "dtrace", "folded", "sample") for seed in SEEDS[name]]
SEEDS["guess"] += SEEDS["xctrace"] + SEEDS["vtune"] + SEEDS["ghcprof"] + SEEDS["bpftrace"]
SEEDS["native"] = SEEDS["perf"] + SEEDS["dtrace"] + SEEDS["folded"]


def seed_corpus(folder: Path, names: list[str]) -> None:
    """Seed inputs: selector byte (index in ``names``), split byte, then the text."""
    samples = [p for p in (ROOT / "tests" / "data").rglob("*") if p.is_file()]
    samples = [p for p in samples if p.stat().st_size < 200_000]
    for index, name in enumerate(names):
        seeds = list(SEEDS[name])
        if name in ("perf", "dtrace", "guess", "native"):
            anything = name in ("guess", "native")
            seeds += [p.read_bytes() for p in samples if name in str(p) or anything][:20]
        for number, seed in enumerate(seeds):
            (folder / f"seed-{index}-{number}").write_bytes(bytes([index, 7]) + seed)


PARSER_ORDER = list(PARSERS)


# -- the atheris entry point ---------------------------------------------------------------


def make_target(names: list[str]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        if len(data) < 2:
            return
        name = names[data[0] % len(names)] if len(names) > 1 else names[0]
        fuzz_one(name, data[2:], data[1])

    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--only", choices=PARSER_ORDER, action="append")
    parser.add_argument("--corpus", type=Path, help="keep the corpus here (default: a temp dir)")
    parser.add_argument("--rss-limit-mb", type=int, default=1024)
    args, rest = parser.parse_known_args()
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    names = args.only or PARSER_ORDER
    logging.disable(logging.WARNING)  # skipped-line warnings would be most of the run's time
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix="flamed-fuzz-"))
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        seed_corpus(corpus, names)
    with atheris.instrument_imports(include=["flamed"]):
        import flamed.collapse.bpftrace
        import flamed.collapse.dtrace
        import flamed.collapse.folded
        import flamed.collapse.ghcprof
        import flamed.collapse.guess
        import flamed.collapse.perf
        import flamed.collapse.recursive
        import flamed.collapse.sample
        import flamed.collapse.speedups
        import flamed.collapse.vsprof
        import flamed.collapse.vtune
        import flamed.collapse.xctrace
        import flamed.daemon.config
        import flamed.daemon.timerange
        import flamed.render.options  # noqa: F401
    flags = [
        sys.argv[0],
        f"-max_total_time={int(args.minutes * 60)}",
        "-timeout=10",
        f"-rss_limit_mb={args.rss_limit_mb}",
        "-max_len=65536",
        "-print_final_stats=1",
        *rest,
        str(corpus),
    ]
    print(f"fuzzing {', '.join(names)} for {args.minutes:g} min; corpus {corpus}", flush=True)
    atheris.Setup(flags, make_target(names))
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
