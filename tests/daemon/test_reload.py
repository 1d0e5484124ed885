"""Config reloads (file watch, SIGHUP, direct), the inbox, and the daemon's main task."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from flamed.daemon.config import load_config
from flamed.daemon.http import METRICS, SERVICE, create_app, run_daemon
from flamed.daemon.metrics import Metrics
from flamed.daemon.notify import Notifier
from flamed.daemon.service import RELOAD_SETTLE, Service
from tests.daemon.conftest import TWO_TARGETS, FakeFactory, wait_for

THIRD = '[[targets]]\nname = "c"\ncmdline = "gunicorn"\n'


def write_config(path: Path, state: Path, targets: str, storage: str = "") -> None:
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\n[storage]\nstate_dir = {str(state)!r}\n'
        f'bucket = "10s"\nretention = "1h"\n{storage}\n{targets}'
    )


def reloads(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("flamed_config_reloads_total", {"result": result})
    return value or 0.0


async def test_reload_adds_removes_and_changes_targets_without_touching_others(
    tmp_path: Path, factory: FakeFactory
) -> None:
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS)
    metrics = Metrics(CollectorRegistry(), process=False)
    service = Service(
        load_config(str(path)), session_factory=factory, metrics=metrics, config_path=str(path)
    )
    await service.start()
    await wait_for(lambda: factory.running("a", "b"))
    a_session = factory.latest("a")
    changed_b = TWO_TARGETS.replace('"^b$"', '"^bb$"')
    write_config(path, tmp_path / "state", changed_b + THIRD)
    assert await service.reload()
    await wait_for(lambda: factory.running("a", "b", "c"))
    assert factory.latest("a") is a_session and not a_session.stopped.is_set()
    assert factory.latest("b").spec.process == "^bb$"
    assert sorted(service.targets) == ["a", "b", "c"]
    write_config(path, tmp_path / "state", THIRD)
    assert await service.reload()
    assert sorted(service.targets) == ["c"] and sorted(service.windows) == ["c"]
    assert a_session.stopped.is_set()
    assert reloads(metrics, "success") == 2
    await service.stop()


async def test_a_bad_config_is_refused_and_the_running_one_kept(
    tmp_path: Path, factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS)
    metrics = Metrics(CollectorRegistry(), process=False)
    service = Service(
        load_config(str(path)), session_factory=factory, metrics=metrics, config_path=str(path)
    )
    await service.start()
    before = service.config
    path.write_text(path.read_text().replace('"^b$"', '"(b"'))
    assert not await service.reload()
    assert service.config is before and sorted(service.targets) == ["a", "b"]
    assert reloads(metrics, "error") == 1
    assert f"{path}:" in caplog.text and "targets[1].process" in caplog.text
    await service.stop()


async def test_editing_the_file_reloads(tmp_path: Path, factory: FakeFactory) -> None:
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS)
    app = create_app(
        load_config(str(path)),
        session_factory=factory,
        config_path=str(path),
        registry=CollectorRegistry(),
    )
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    service = app[SERVICE]
    try:
        replacement = tmp_path / "new.toml"
        write_config(replacement, tmp_path / "state", TWO_TARGETS + THIRD)
        os.replace(replacement, path)  # as editors save
        await wait_for(lambda: "c" in service.targets)
        with path.open("a") as out:
            out.write('[[targets]]\nname = "d"\npids = [1]\n')
        await wait_for(lambda: "d" in service.targets)
        # Reading the file for a reload must not itself look like a change.
        settled = reloads(app[METRICS], "success")
        await asyncio.sleep(10 * RELOAD_SETTLE)
        assert reloads(app[METRICS], "success") == settled
    finally:
        await runner.cleanup()


async def test_inbox_folds_files_into_the_named_target(
    tmp_path: Path, factory: FakeFactory
) -> None:
    inbox = tmp_path / "inbox"
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS, storage=f"inbox = {str(inbox)!r}")
    inbox.mkdir()
    (inbox / "b.folded").write_text("early;file 2\n")  # present at start: taken at start
    app = create_app(load_config(str(path)), session_factory=factory, registry=CollectorRegistry())
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    service = app[SERVICE]
    try:
        await wait_for(lambda: service.windows["b"].buckets != [])
        partial = inbox / "a.tmp"
        partial.write_text("main;f 3\nmain;g 1\n")
        await asyncio.sleep(0.3)
        assert service.windows["a"].buckets == [] and partial.exists()
        os.replace(partial, inbox / "a.folded")
        await wait_for(lambda: service.windows["a"].buckets != [])
        await wait_for(lambda: not (inbox / "a.folded").exists())
        window = service.windows["a"]
        merged = window.merge(window.select(0, 2e10))
        assert merged.counts == {"main;f": 3, "main;g": 1}
        (inbox / "nobody.folded").write_text("x 1\n")
        await wait_for(lambda: (inbox / "nobody.folded.rejected").exists())
        perf_text = "prog 1/1 1.0: 1 cpu-clock:\n\tffff f1 (/bin/prog)\n\tffff main (/bin/prog)\n\n"
        (inbox / "b.perf.txt").write_text(perf_text)
        await wait_for(lambda: not (inbox / "b.perf.txt").exists())
        wb = service.windows["b"]
        assert wb.merge(wb.select(0, 2e10)).counts == {"early;file": 2, "prog;main;f1": 1}
    finally:
        await runner.cleanup()


async def test_run_daemon_notifies_serves_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path, factory: FakeFactory
) -> None:
    sock_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS)
    path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    notifier = Notifier(env={"NOTIFY_SOCKET": sock_path})
    daemon = asyncio.create_task(
        run_daemon(
            load_config(str(path)),
            str(path),
            session_factory=factory,
            notifier=notifier,
            watch=False,  # so that only SIGHUP can cause the reload
        )
    )
    try:
        ready = await asyncio.wait_for(loop.sock_recv(listener, 4096), 30)
        assert ready.startswith(b"READY=1\nSTATUS=2 targets")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            write_config(path, tmp_path / "state", TWO_TARGETS + THIRD)
            path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
            os.kill(os.getpid(), signal.SIGHUP)
            await wait_for(lambda: any(s.spec.name == "c" for s in factory.made))
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(daemon, 15) == 0
        stopping = await asyncio.wait_for(loop.sock_recv(listener, 4096), 5)
        assert stopping.startswith(b"STOPPING=1")
        assert all(session.stopped.is_set() for session in factory.made)
    finally:
        daemon.cancel()
        listener.close()
