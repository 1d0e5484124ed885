"""Shared test helpers: where the reference corpus lives, and how to run the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT.parent / "shared" / "conformance"
DATA = Path(__file__).resolve().parent / "data"


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
