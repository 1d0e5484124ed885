"""addr2line and nm runs for `collapse perf --inline`: bounded output, a deadline, PATH only."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamed.collapse.errors import UsageError
from flamed.collector.binutils import Binutils, find_program


def test_output_is_bounded_and_runs_have_a_deadline() -> None:
    tools = Binutils(timeout=0.5, limit=1000)
    assert tools.run(["yes"], b"") == b"y\n" * 500
    assert tools.run(["sleep", "30"], b"") == b""  # killed at the deadline
    assert tools.run(["/nonexistent"], b"") == b""


def test_input_larger_than_a_pipe_does_not_block() -> None:
    data = b"x" * (4 << 20)
    assert Binutils(timeout=30).run(["cat"], data) == data


def test_programs_come_from_absolute_path_entries_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "addr2line").write_text("#!/bin/sh\necho planted\n")
    (tmp_path / "addr2line").chmod(0o755)
    monkeypatch.setenv("PATH", ".")
    with pytest.raises(UsageError, match="addr2line"):
        find_program("addr2line")
