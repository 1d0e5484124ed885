"""A target's lifecycle: built, run, stopped. A failure is its state; restarts are the
collector's (tests/collector/test_runner.py), never the daemon's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flamed.collapse.errors import ProfilerError, UsageError
from flamed.collector.base import TargetSpec
from flamed.daemon.service import Service
from flamed.daemon.supervisor import default_factory
from tests.collector.helpers import require_perf
from tests.daemon.conftest import FakeFactory, FakeSession, make_config, wait_for


class Failing(FakeFactory):
    """Target ``a``'s sessions fail as they run; with ``build_error``, they cannot be built."""

    def __init__(self, build_error: Exception | None = None) -> None:
        super().__init__()
        self.build_error = build_error
        self.builds = 0

    def __call__(self, spec: TargetSpec, **kwargs: object) -> FakeSession:  # type: ignore[override]
        self.builds += spec.name == "a"
        if spec.name == "a" and self.build_error is not None:
            raise self.build_error
        session = super().__call__(spec, **kwargs)  # type: ignore[arg-type]
        if spec.name == "a":
            session.fail_with = ProfilerError("perf: permission denied")
        return session


def ended(service: Service, name: str) -> bool:
    task = service.targets[name].task
    return task is not None and task.done()


async def test_a_failing_session_is_reported_and_left_to_the_collector(tmp_path: Path) -> None:
    factory = Failing()
    service = Service(make_config(tmp_path), session_factory=factory, persist=False)
    await service.start()
    await wait_for(lambda: factory.running("b"))
    await wait_for(lambda: ended(service, "a"))
    assert service.ready() == (False, "not sampling: a")
    described = service.describe("a")
    assert (described["state"], described["last_error"]) == ("error", "perf: permission denied")
    assert [s.spec.name for s in factory.made].count("a") == 1, "the daemon restarted it"
    await service.stop()


async def test_a_spec_that_cannot_be_built_waits_for_the_config_to_change(
    tmp_path: Path,
) -> None:
    factory = Failing(UsageError("target 'a': the dtrace backend samples pids, ..."))
    config = make_config(tmp_path)
    service = Service(config, session_factory=factory, persist=False)
    await service.start()
    await wait_for(lambda: ended(service, "a"))
    described = service.describe("a")
    assert described["state"] == "error" and "dtrace backend" in described["last_error"]
    await service.apply(config)  # the same spec: still refused, not built again
    assert service.targets["a"].state == "error" and factory.builds == 1
    factory.build_error = None
    await service.apply(make_config(tmp_path, targets='[[targets]]\nname = "a"\npids = [1]\n'))
    await wait_for(lambda: ended(service, "a"))
    assert factory.builds == 2 and factory.latest("a").spec.pids == (1,)
    await service.stop()


async def test_the_configs_perf_settings_reach_the_session_factory(tmp_path: Path) -> None:
    factory = FakeFactory()
    targets = (
        '[profile]\nevent = "cpu-clock"\nmmap_pages = 64\n'
        '[[targets]]\nname = "a"\nall = true\nperf_path = "/opt/perf/bin/perf"\n'
        '[[targets]]\nname = "b"\nall = true\nmmap_pages = 8\n'
    )
    config = make_config(tmp_path, targets=targets)
    service = Service(config, session_factory=factory, persist=False)
    await service.start()
    await wait_for(lambda: factory.running("a", "b"))
    assert factory.sampler == {
        "a": {"perf_path": "/opt/perf/bin/perf", "event": "cpu-clock", "mmap_pages": 64},
        "b": {"event": "cpu-clock", "mmap_pages": 8},
    }
    first = factory.latest("b")
    await service.apply(make_config(tmp_path, targets=targets.replace("= 8", "= 16")))
    await wait_for(lambda: factory.latest("b") is not first)
    assert factory.sampler["b"]["mmap_pages"] == 16 and first.stopped.is_set()
    await service.stop()


def perf_records() -> list[list[str]]:
    """Command lines of our children that are `perf record` (not perf's help, which the
    collector reads to learn what this perf supports)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{name}/stat").read_text() if name.isdigit() else ""
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields and fields[1] == str(os.getpid()) and b"record" in argv and b"-h" not in argv:
            found.append([arg.decode() for arg in argv if arg])
    return found


@pytest.mark.perf
async def test_perf_runs_as_the_config_says(tmp_path: Path) -> None:
    perf = require_perf()
    targets = (
        f'[profile]\nperf_path = "{perf}"\nevent = "cpu-clock"\nmmap_pages = 16\n'
        '[[targets]]\nname = "a"\nall = true\n'
    )
    service = Service(
        make_config(tmp_path, targets=targets), session_factory=default_factory(), persist=False
    )
    await service.start()
    try:
        found: list[list[str]] = []

        def one_perf_record() -> bool:  # a restart under load may come between two looks
            found[:] = perf_records()
            return len(found) == 1

        await wait_for(one_perf_record, timeout=60)
        (argv,) = found
        assert argv[0] == perf, argv
        assert argv[argv.index("-e") + 1] == "cpu-clock" and argv[argv.index("-m") + 1] == "16"
    finally:
        await service.stop()


async def test_a_missing_perf_is_the_targets_error(tmp_path: Path) -> None:
    """The real collector: perf_path from the config, its failure in /api/v1/targets."""
    missing = str(tmp_path / "no-perf")
    targets = f'[[targets]]\nname = "a"\nall = true\nperf_path = "{missing}"\n'
    config = make_config(tmp_path, targets=targets, storage="")
    service = Service(config, session_factory=default_factory(), persist=False)
    await service.start()
    try:
        await wait_for(lambda: service.describe("a")["state"] == "error", timeout=60)
        assert f"perf not found ({missing})" in service.describe("a")["last_error"]
        assert service.describe("a")["restarts"] >= 1, "the collector restarts it"
    finally:
        await service.stop()
