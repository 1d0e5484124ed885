"""Fixtures of the collector tests that run real perf: perf itself, the burner, processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.helpers import build_burn, require_perf


@pytest.fixture
def perf() -> str:
    return require_perf()


@pytest.fixture
def burn(tmp_path: Path) -> Path:
    return build_burn(tmp_path)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()
