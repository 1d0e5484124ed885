"""The one restart policy (``SamplingSession.run``): nothing but cancellation escapes it.

A session subclass that fails on purpose stands in for perf (fault injection):
the loop, counting, backoff and logging under test are the real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import pytest

from flamed.collapse.errors import ProfilerError
from flamed.collapse.folded import Folded
from flamed.collector.base import Chunk, TargetSpec
from flamed.collector.runner import Outcome, SamplingSession, SessionOptions
from flamed.collector.targets import Resolution


class Flaky(SamplingSession):
    """Fails ``failures`` times in ``sample()`` (or ``start()``), then samples until stopped."""

    backend = "flaky"

    def __init__(self, tmp_path: Path, failures: int, error: Exception, where: str) -> None:
        options = SessionOptions(bucket_seconds=1.0, backoff_initial=0.01, backoff_max=0.02)
        super().__init__(TargetSpec("flaky", all=True), options, lambda chunk: None)
        self.failures, self.error, self.where = failures, error, where
        self.calls = {"start": 0, "sample": 0, "finish": 0}

    def fail(self, where: str) -> None:
        self.calls[where] += 1
        if where == self.where and self.calls[where] <= self.failures:
            raise self.error

    async def start(self) -> None:
        self.fail("start")

    async def finish(self) -> None:
        self.fail("finish")

    async def sample(self, resolution: Resolution) -> Outcome:
        self.fail("sample")
        self.status.state = "running"
        await self.sleep(3600)
        return "stop"


async def run_until_running(session: Flaky) -> None:
    task = asyncio.create_task(session.run())
    async with asyncio.timeout(30):  # a bound against hangs, not a timing assertion
        while session.status.state != "running":
            assert not task.done(), task
            await asyncio.sleep(0.01)
    await session.stop()
    await asyncio.wait_for(task, 30)


async def test_a_bug_in_a_cycle_is_a_crash_logged_once_then_sampling_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = Flaky(tmp_path, 3, RuntimeError("boom"), "sample")
    await run_until_running(session)
    assert session.status.restarts == {"crash": 3}
    assert session.status.last_error == "RuntimeError: boom"
    told = [r for r in caplog.records if r.levelno >= logging.WARNING and "boom" in r.message]
    assert len(told) == 1 and told[0].exc_info is not None, "once, with its traceback"


async def test_a_failing_start_is_retried_like_a_failing_sampler(tmp_path: Path) -> None:
    session = Flaky(tmp_path, 2, OSError(28, "No space left on device"), "start")
    await run_until_running(session)
    assert session.calls["start"] == 3 and session.status.restarts == {"crash": 2}


async def test_a_profiler_error_is_logged_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "flamed.collector")
    session = Flaky(tmp_path, 2, ProfilerError("perf exited 1: bad things"), "sample")
    await run_until_running(session)
    told = [r for r in caplog.records if "bad things" in r.message]
    assert session.status.last_error == "perf exited 1: bad things"
    assert [r.levelno for r in told] == [logging.WARNING, logging.DEBUG]
    assert all(r.exc_info is None for r in told)


async def test_a_failing_finish_does_not_escape_run(tmp_path: Path) -> None:
    session = Flaky(tmp_path, 1, RuntimeError("lost the tail"), "finish")
    await run_until_running(session)
    assert session.status.state == "stopped"


async def test_fail_fast_raises_the_first_failure(tmp_path: Path) -> None:
    session = Flaky(tmp_path, 1, RuntimeError("boom"), "sample")
    session.options = SessionOptions(fail_fast=True)
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(session.run(), 30)
    assert session.status.restarts == {}


async def test_the_last_error_keeps_its_time_and_is_past_after_a_whole_bucket(
    tmp_path: Path,
) -> None:
    """`last_error` never cleared: minutes after perf recovered, the page still showed
    "perf script exited 255" for a healthy target."""
    session = Flaky(tmp_path, 1, ProfilerError("perf script exited 255: bad file"), "sample")
    await run_until_running(session)
    status = session.status
    assert status.last_error == "perf script exited 255: bad file"
    assert status.last_error_time is not None and not status.last_error_past
    failed = status.last_error_time
    session.emit(Chunk("flaky", failed - 1.0, failed + 9.0, Folded(), 0, 0, 0.0), 0.0, 0.0)
    assert not status.last_error_past  # that bucket began before the error
    session.emit(Chunk("flaky", failed + 9.0, failed + 19.0, Folded(), 0, 0, 0.0), 0.0, 0.0)
    assert status.last_error_past and status.last_error == "perf script exited 255: bad file"
    status.error("perf script exited 1: again")
    assert status.last_error_time >= failed and not status.last_error_past


class Idle(Flaky):
    """Samples a target that never runs: its sampler ticks, and no chunk ever comes."""

    def __init__(self, tmp_path: Path, failures: int, error: Exception) -> None:
        super().__init__(tmp_path, failures, error, "sample")
        self.ahead = 0.0
        self.options = dataclasses.replace(self.options, clock=lambda: time.time() + self.ahead)
        self.chunks: list[Chunk] = []
        self.on_chunk = self.chunks.append

    async def sample(self, resolution: Resolution) -> Outcome:
        self.fail("sample")
        self.status.state = "running"
        stopping = asyncio.create_task(self._stopping.wait())
        while not stopping.done():
            await self.tick(stopping)
        return "stop"


async def test_the_last_error_is_past_once_an_idle_target_was_sampled_a_whole_bucket(
    tmp_path: Path,
) -> None:
    """A streaming sampler of an idle target hands out no chunk (no sample, no bucket):
    the error must still age once the sampler has run through a whole bucket since."""
    session = Idle(tmp_path, 1, ProfilerError("perf record exited 1: gone"))
    task = asyncio.create_task(session.run())
    status = session.status
    async with asyncio.timeout(30):  # a bound against hangs, not a timing assertion
        while status.state != "running":
            await asyncio.sleep(0.01)
        assert status.last_error == "perf record exited 1: gone" and not status.last_error_past
        session.ahead = 2 * session.options.bucket_seconds  # the clock passes a whole bucket
        while not status.last_error_past:
            await asyncio.sleep(0.01)
    await session.stop()
    await asyncio.wait_for(task, 30)
    assert session.chunks == [] and status.last_error == "perf record exited 1: gone"
