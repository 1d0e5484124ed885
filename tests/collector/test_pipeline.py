"""The perf pipeline's start: whatever ends it early leaves no child running."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from flamed.collector import pipeline


def living_children(marker: str) -> list[int]:
    """Our children whose command line holds ``marker``, zombies left out."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            argv = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and marker.encode() in argv:
            found.append(int(name))
    return found


async def test_a_start_cancelled_after_both_children_began_leaves_neither(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon stopping while perf script's output is being hooked up (the last step of the
    start) used to leave both groups running: the wrapper's sleep outlived the daemon."""

    async def cancelled(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
        os.close(fd)  # read_pipe owns the descriptor from its first step
        raise asyncio.CancelledError

    monkeypatch.setattr(pipeline, "read_pipe", cancelled)
    argv = ["sleep", "31.5"]
    with pytest.raises(asyncio.CancelledError):
        await pipeline.start_pipeline(argv, argv, lambda data: None, name="t")
    assert living_children("31.5") == []
