"""Shared test helpers: where the reference corpus lives, and how to run the CLI."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT.parent / "shared" / "conformance"
DATA = Path(__file__).resolve().parent / "data"


def native_paths() -> list[object]:
    """Both ways through a collapser: pure Python, and the C speedups where built.

    In CI the C speedups must be there: a missing compiler would otherwise turn every
    comparison of the two paths into a silent skip."""
    from flamed.collapse import speedups

    built = speedups.built() is not None or bool(os.environ.get("CI"))
    reason = "the C speedups were not built (no C compiler or Python headers at install)"
    return [
        pytest.param(False, id="python"),
        pytest.param(True, id="c", marks=() if built else pytest.mark.skip(reason)),
    ]


NATIVE_PATHS = native_paths()


def conformance_dir(kind: str) -> Path:
    """`../shared/conformance/KIND`, or skip the test saying why."""
    folder = CONFORMANCE / kind
    if not folder.is_dir():
        pytest.skip(f"reference corpus {folder} is absent (it lives beside the project in shared/)")
    return folder


def run_flamed(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the `flamed` command line in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "flamed.daemon.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def assert_freed_when_dropped(holder: list[Any]) -> None:
    """``holder`` has the only reference to an object: dropping it must free the object at
    once, not at the cyclic garbage collector's next full pass."""
    alive = weakref.ref(holder[0])
    gc.disable()
    try:
        holder.clear()
        assert alive() is None
    finally:
        gc.enable()
