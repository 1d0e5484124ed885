"""Starting a child: a start cancelled half-way leaves nothing of the child's group running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flamed.collector.children import spawn
from tests.collector.live import group_members


async def test_a_start_cancelled_while_asyncio_sets_the_child_up_kills_its_whole_group() -> None:
    """The daemon stopping while asyncio still connects a new child's pipes: asyncio's own
    clean-up SIGKILLs only the child, so what the child had started (a wrapper's sleep)
    outlived the daemon (CI caught it in test_cancelled_session_leaves_nothing_running).
    Here asyncio's set-up is held until the child's sleep runs, and cancelled then."""
    loop = asyncio.get_running_loop()
    real = loop.subprocess_exec
    started = asyncio.Event()
    groups: list[int] = []

    async def slow_setup(*args: Any, **kwargs: Any) -> Any:
        transport, protocol = await real(*args, **kwargs)
        groups.append(transport.get_pid())
        started.set()
        while len(group_members(groups[0])) < 2:  # the shell and its sleep
            await asyncio.sleep(0.01)
        return transport, protocol

    loop.subprocess_exec = slow_setup  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(spawn(["sh", "-c", "sleep 32.5; true"]))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        del loop.subprocess_exec
    assert group_members(groups[0]) == []
