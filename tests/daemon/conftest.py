"""Fakes for the daemon's tests: a session that emits the chunks a test hands it, a clock."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import ModuleType

import pytest

from flamed.collapse.folded import Folded, read_folded
from flamed.collector.base import Chunk, ChunkSink, SessionStatus, TargetSpec
from flamed.daemon.config import Config, parse_config
from tests.render.pprofread import profile_module

T0 = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSession:
    """Runs until stopped; ``emit`` hands a chunk to the daemon as a real session would."""

    def __init__(
        self, spec: TargetSpec, *, bucket_seconds: float, on_chunk: ChunkSink, profile: str = "cpu"
    ) -> None:
        self.spec = spec
        self.profile = profile
        self.bucket_seconds = bucket_seconds
        self.on_chunk = on_chunk
        self.status = SessionStatus(state="starting", backend="fake", event="cpu-clock")
        self.stopped = asyncio.Event()
        self.fail_with: BaseException | None = None

    async def run(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.status.state = "running"
        self.status.pids = (101, 102)
        await self.stopped.wait()
        self.status.state = "stopped"

    async def stop(self) -> None:
        self.stopped.set()

    def emit(self, start: float, end: float, text: str, samples: int | None = None) -> None:
        folded = read_folded(text.encode())
        count = int(folded.total()) if samples is None else samples
        chunk = Chunk(self.spec.name, start, end, folded, count, len(text), 0.01)
        self.on_chunk(dataclasses.replace(chunk, profile=self.profile))


class FakeFactory:
    """A SessionFactory that keeps every session it made, newest last per target, and the
    sampler settings (``perf_path``, ``event``, ``mmap_pages``) each CPU one was given (an
    off-CPU one is made with ``profile="offcpu"``: ``offcpu_sampler``)."""

    def __init__(self) -> None:
        self.made: list[FakeSession] = []
        self.sampler: dict[str, dict[str, object]] = {}
        self.offcpu_sampler: dict[str, dict[str, object]] = {}

    def __call__(
        self,
        spec: TargetSpec,
        *,
        bucket_seconds: float,
        on_chunk: ChunkSink,
        **sampler: object,
    ) -> FakeSession:
        profile = str(sampler.get("profile", "cpu"))
        session = FakeSession(spec, bucket_seconds=bucket_seconds, on_chunk=on_chunk,
                              profile=profile)  # fmt: skip
        self.made.append(session)
        (self.offcpu_sampler if profile == "offcpu" else self.sampler)[spec.name] = sampler
        return session

    def latest(self, name: str, profile: str = "cpu") -> FakeSession:
        return [s for s in self.made if s.spec.name == name and s.profile == profile][-1]

    def running(self, *names: str) -> bool:
        """Whether the newest CPU session of each target runs (for wait_for)."""
        states = {s.spec.name: s.status.state for s in self.made if s.profile == "cpu"}
        return all(states.get(name) == "running" for name in names)


def make_config(state_dir: Path, targets: str = "", server: str = "", storage: str = "") -> Config:
    """A config with two targets (a: all, b: process) unless told otherwise."""
    targets = targets or TWO_TARGETS
    text = (
        f"[server]\n{server}\n[storage]\nstate_dir = {str(state_dir)!r}\n"
        f'bucket = "10s"\nretention = "1h"\n{storage}\n{targets}'
    )
    return parse_config(text, "test.toml")


TWO_TARGETS = '[[targets]]\nname = "a"\nall = true\n\n[[targets]]\nname = "b"\nprocess = "^b$"\n'


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until true (no timing assertion: only a bound on waiting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


def folded_of(text: str) -> Folded:
    return read_folded(text.encode())


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The pprof protobuf module, compiled once per test module."""
    return profile_module(str(tmp_path_factory.mktemp("proto")))
