"""The optional C speedups: how to tell which path runs, and a build without a compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from flamed.collapse import speedups
from tests.conftest import NATIVE_PATHS, ROOT, run_flamed


def test_flamed_no_extensions_turns_them_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(speedups.DISABLE_VARIABLE, "1")
    assert speedups.module() is None and speedups.module(speedups.RENDER) is None
    assert speedups.describe() == "pure Python, FLAMED_NO_EXTENSIONS=1 is set"
    monkeypatch.setenv(speedups.DISABLE_VARIABLE, "0")
    assert speedups.module() is speedups.built()


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_version_and_help_say_which_path_runs(native: bool) -> None:
    env = {speedups.DISABLE_VARIABLE: "" if native else "1"}
    expected = "C speedups" if native else "pure Python, FLAMED_NO_EXTENSIONS=1 is set"
    version = run_with(env, "--version")
    assert version.returncode == 0 and version.stdout.decode().strip().endswith(f"({expected})")
    for fmt in ("perf", "dtrace"):
        helped = run_with(env, "collapse", fmt, "--help")
        assert helped.stdout.decode().strip().splitlines()[-1] == f"collapsers: {expected}"


def run_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return run_flamed(*args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.slow
def test_a_machine_without_a_compiler_still_builds_with_one_warning(tmp_path: Path) -> None:
    """CC=false stands for a missing compiler (or missing Python headers): the wheel
    builds, says so once for each C module, and holds the pure-Python code only."""
    source = tmp_path / "src"
    skip = (".*", "build", "tests", "*.so", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
    env = {**os.environ, "CC": "false", "LDSHARED": "false", "PIP_NO_INDEX": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(source)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if "building extension" in line]
    assert len(warnings) == 2, output[-3000:]  # one for each C module
    (wheel,) = tmp_path.glob("flamed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(name.endswith(".so") for name in names)
    assert "flamed/collapse/perf.py" in names


C_CACHE_ENTRIES = 200_000
"""_speedups.c's CACHE_ENTRIES: a C cache is emptied when it holds this many entries."""


@pytest.mark.parametrize("fmt", ["perf", "dtrace"])
def test_c_caches_emptied_at_their_bounds_fold_on_alike(fmt: str) -> None:
    """More distinct records (and frame lines, and stacks) than a C cache holds: the caches
    are emptied at their bound (their keys' blocks freed together, the large ones mapped
    memory) and filled again; what was folded before and after counts alike."""
    module = speedups.built()
    if module is None:
        pytest.skip("the C speedups were not built")
    from flamed.collapse.dtrace import DTraceCollapser
    from flamed.collapse.perf import PerfCollapser

    distinct = C_CACHE_ENTRIES + 30_000
    if fmt == "perf":
        record = b"prog 1/1 [000] 1.0: 1 cycles:\n\t%x f%d (/x)\n\n"
        collapser: PerfCollapser | DTraceCollapser = PerfCollapser(native=True)
        stack = "prog;f%d"
    else:
        record = b"  m`f%x\n  m`g%d\n  1\n\n"
        collapser = DTraceCollapser(native=True)
        stack = "m`g%d;m`f%x"
    again = distinct // 3  # the first third comes again, after the caches were emptied
    records = [record % (index, index) for index in range(distinct)]
    collapser.feed(b"".join(records + records[:again]))
    counts = collapser.finish().counts
    assert len(counts) == distinct
    for index in (0, 1, again - 1, again, distinct - 1):
        key = stack % ((index,) if fmt == "perf" else (index, index))
        assert counts[key] == (2 if index < again else 1), key
