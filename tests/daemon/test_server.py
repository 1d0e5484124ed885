"""The daemon's process: ready and status to systemd, SIGHUP reloads, SIGTERM stops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp

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
