"""The service under disk and reload faults, with fake sessions and a fake clock (cases 8, 14).

A ``DiskStore`` that fails with ENOSPC on demand stands in for a full disk
(the real tmpfs is in test_faults_state.py); the rest is the real service.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from flamed.daemon.metrics import Metrics
from flamed.daemon.notify import Notifier
from flamed.daemon.persist import DiskStore
from flamed.daemon.service import Service
from flamed.daemon.store import Bucket
from tests.daemon.conftest import T0, FakeClock, FakeFactory, make_config, wait_for


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


ONE = '[[targets]]\nname = "a"\nall = true\n'


class FullDisk(DiskStore):
    """Writes fail with ENOSPC while ``full``."""

    full = False

    def write(self, target: str, bucket: Bucket) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().write(target, bucket)

    def delete(self, target: str, buckets: Sequence[Bucket]) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().delete(target, buckets)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_full_disk_keeps_buckets_in_memory_logs_once_and_recovers(
    tmp_path: Path, factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    metrics = Metrics(CollectorRegistry(), process=False)
    config = make_config(tmp_path / "state", ONE, storage='rollup_after = "1m"\nrollup = "1m"')
    disk = FullDisk(tmp_path / "state")
    service = Service(config, session_factory=factory, metrics=metrics, clock=clock, disk=disk)
    await service.start()
    await wait_for(lambda: factory.running("a"))
    session = factory.latest("a")
    folder = tmp_path / "state" / "a"

    disk.full = True
    caplog.set_level(logging.ERROR, "flamed.daemon")
    for index in range(5):
        session.emit(T0 + 10 * index, T0 + 10 * (index + 1), f"main;f{index} 3\n")
    await wait_for(
        lambda: value(metrics, "flamed_disk_errors_total", op="write", reason="ENOSPC") == 5
    )
    assert service.windows["a"].stacks() == 5, "buckets that cannot be written must stay"
    assert not folder.exists() or not list(folder.glob("*.folded.gz"))
    errors = [r for r in caplog.records if "cannot write bucket files" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in caplog.records]

    clock.advance(600)  # long past roll-up and eviction: unwritten stacks must not be evicted
    service.prune()
    await service.writer.flush()
    window = service.windows["a"]
    assert sum(1 for bucket in window.buckets if bucket.cold) == 0
    assert window.stacks() >= 5

    disk.full = False
    session.emit(T0 + 600, T0 + 610, "main;g 1\n")
    await service.writer.flush()
    await wait_for(lambda: not service.writer.unsaved("a"))
    await service.writer.flush()
    on_disk = DiskStore(tmp_path / "state").load("a", 0, 1000)
    stacks = {stack for bucket in on_disk for stack in bucket.stacks}
    assert {f"main;f{i}" for i in range(5)} <= stacks and "main;g" in stacks
    await service.stop()


async def test_a_removed_targets_history_stays_until_retention(
    tmp_path: Path, factory: FakeFactory
) -> None:
    clock = FakeClock()
    two = ONE + '[[targets]]\nname = "b"\nprocess = "^b$"\n'
    service = Service(make_config(tmp_path / "state", two), session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a", "b"))
    factory.latest("b").emit(T0, T0 + 10, "b;work 7\n")
    await service.apply(make_config(tmp_path / "state", ONE))
    assert sorted(service.targets) == ["a"] and factory.latest("b").stopped.is_set()
    window = service.windows["b"]
    selection = window.select(T0 - 100, T0 + 100)
    assert window.merge(selection).counts == {"b;work": 7}

    clock.advance(3600 + 20)  # past the retention (1h)
    service.prune()
    assert "b" not in service.windows
    await service.stop()


def test_an_unread_notify_socket_never_blocks_the_daemon(tmp_path: Path) -> None:
    """Found by the soak: after ~10 unread STATUS datagrams the daemon hung in sendto()."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)  # never read, like a hung service manager
        notifier = Notifier({"NOTIFY_SOCKET": path})
        results: list[bool] = []
        sender = threading.Thread(
            target=lambda: results.extend(notifier.status(f"{i}") for i in range(100)), daemon=True
        )
        sender.start()
        sender.join(60)  # a bound against the hang, not a timing assertion
        assert not sender.is_alive(), "sd_notify blocked on a full socket"
    assert results[0] and not results[-1], "the messages that did not fit are dropped"
