"""The daemon's process: ready and status to systemd, SIGHUP reloads, SIGTERM stops."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from flamed.daemon.config import load_config
from flamed.daemon.notify import Notifier
from flamed.daemon.server import run_daemon
from tests.daemon.conftest import TWO_TARGETS, FakeFactory, wait_for
from tests.daemon.test_service import THIRD, write_config


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


async def test_the_log_says_where_state_is_what_is_sampled_and_what_was_saved(
    tmp_path: Path, factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """At start: the state folder, the targets and the listen address; at stop: how many
    buckets were written and how many were left unwritten."""
    caplog.set_level(logging.INFO, logger="flamed")
    path, state = tmp_path / "flamed.toml", tmp_path / "state"
    write_config(path, state, TWO_TARGETS)
    daemon = asyncio.create_task(run_daemon(load_config(str(path)), str(path),
                                            session_factory=factory, watch=False))  # fmt: skip
    try:
        await wait_for(lambda: factory.running("a", "b"))
        now = time.time()
        factory.latest("a").emit(now - 20, now - 10, "main;x 3\n")
        factory.latest("a").emit(now - 10, now, "main;y 1\n")
        factory.latest("b").emit(now - 10, now, "b;z 2\n")
        await wait_for(lambda: len(list((state / "a").glob("*.folded.gz"))) == 2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(daemon, 15) == 0
    finally:
        daemon.cancel()
    logged = [record.getMessage() for record in caplog.records]
    start = next(line for line in logged if "listening on" in line)
    assert "http://127.0.0.1:" in start and f"state in {state}" in start, start
    assert "a (the whole machine)" in start and "b (process name '^b$')" in start, start
    stop = next(line for line in logged if line.startswith("stopped"))
    assert "wrote 3 buckets" in stop and "0 pending" in stop, stop
