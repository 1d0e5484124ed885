"""collapse perf --inline/--context against stackcollapse-perf.pl (tests/data/perf-inline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flamed.collapse.inline import Inliner, parse_nm
from flamed.collapse.perf import PerfCollapser, PerfOptions
from flamed.collector.binutils import Binutils
from tests.collapse.goldens import fold
from tests.conftest import DATA, run_flamed

FOLDER = DATA / "perf-inline"


def recorded() -> bytes:
    return (FOLDER / "inline.txt").read_bytes().replace(b"@DIR@", str(FOLDER).encode())


class CountingTools(Binutils):
    """The real programs, counting the runs."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[str, int]] = []

    def addr2line(self, module: str, addresses: list[str]) -> bytes:
        self.runs.append((module, len(addresses)))
        return super().addr2line(module, addresses)


@pytest.mark.parametrize(("option", "context"), [("inline", False), ("inline-context", True)])
def test_golden(option: str, context: bool) -> None:
    tools = CountingTools()
    collapser = PerfCollapser(PerfOptions(inline=True, context=context), tools)
    got = fold(collapser, recorded(), [4000, 9000])
    assert got.to_bytes() == (FOLDER / f"inline.{option}.folded").read_bytes()
    # One addr2line run per chunk that brought new addresses, not one per address.
    assert len(tools.runs) <= 3 and sum(count for _, count in tools.runs) >= 5


def test_cli(tmp_path: Path) -> None:
    path = tmp_path / "inline.txt"
    path.write_bytes(recorded())
    result = run_flamed("collapse", "perf", "--inline", "--context", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (FOLDER / "inline.inline-context.folded").read_bytes()
    plain = run_flamed("collapse", "perf", "--context", str(path))  # --context alone: no-op
    assert plain.stdout == (FOLDER / "inline.default.folded").read_bytes()


def test_run_time_addresses_go_through_nm() -> None:
    """A position-independent program's frames at run-time addresses: addr2line cannot
    place them, so the symbol's nm address plus perf's offset is asked instead."""
    shifted = re.sub(
        rb"\n(\s+)([0-9a-f]+) (outer\+0x)",
        lambda m: b"\n" + m.group(1) + b"%x " % (int(m.group(2), 16) + 0x55D0C0A00000) + m.group(3),
        recorded(),
    )
    assert shifted != recorded()
    got = fold(PerfCollapser(PerfOptions(inline=True), Binutils()), shifted)
    assert got.to_bytes() == (FOLDER / "inline.inline.folded").read_bytes()


def test_kernel_jit_and_missing_modules_keep_perfs_names() -> None:
    text = (
        b"prog 1 [000] 1.0: 1 cpu-clock:\n"
        b"\tffffffff81000000 do_syscall_64+0x1 ([kernel.kallsyms])\n"
        b"\t7f0000001000 jitted+0x2 (/tmp/perf-99.map)\n"
        b"\t1234 gone+0x3 (/nonexistent/binary)\n\n"
    )
    tools = CountingTools()
    got = fold(PerfCollapser(PerfOptions(inline=True), tools), text)
    assert got.counts == {"prog;gone;jitted;do_syscall_64": 1}
    assert [module for module, _ in tools.runs] == ["/nonexistent/binary"]


def test_answers_are_cached() -> None:
    tools = CountingTools()
    inliner = Inliner(tools)
    line = b"\t1207 outer+0x37 (" + str(FOLDER / "inline").encode() + b")\n"
    inliner.prefetch(line)
    inliner.prefetch(line)
    assert inliner.chain("1207", "outer+0x37", str(FOLDER / "inline")) == "outer;step;mix"
    assert len(tools.runs) == 1


def test_parse_nm() -> None:
    lines = ["0000000000001139 T main", "                 U puts", "0000000000004010 B x", "bad"]
    assert parse_nm(lines) == {"main": 0x1139, "x": 0x4010}


def test_inline_needs_tools() -> None:
    with pytest.raises(ValueError):
        PerfCollapser(PerfOptions(inline=True))
