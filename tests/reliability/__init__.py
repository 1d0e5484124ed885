"""Reliability and security cases (issue 9): a real ``flamed run`` daemon under abuse.

The helpers here start the daemon as a subprocess with a config whose only
targets cannot sample (``backend = "dtrace"`` on a machine without DTrace, so
no perf runs and nothing else competes for the two cores); profiles reach it
through the inbox, as an external profiler would deliver them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    """Poll ``check()`` until true (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g}s")
        time.sleep(0.1)


def get(
    url: str, token: str | None = None, timeout: float = 20.0
) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers); status 0 when the connection failed."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)
    except OSError:
        return 0, b"", {}


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    folder: Path
    state: Path
    inbox: Path
    log: Path
    token: str | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str, token: str | None = None, timeout: float = 20.0) -> tuple[int, bytes]:
        status, body, _ = get(self.url + path, token if token is not None else self.token, timeout)
        return status, body

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def deliver(self, target: str, text: bytes) -> None:
        """Drop a profile in the inbox (written aside, then renamed in, as documented)."""
        staged = self.inbox / f".{target}.tmp"
        staged.write_bytes(text)
        staged.rename(self.inbox / f"{target}.folded")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


TARGETS = '[[targets]]\nname = "ghost"\nall = true\nbackend = "dtrace"\n'


def start_daemon(
    folder: Path,
    *,
    token: str | None = None,
    server: str = "",
    targets: str = TARGETS,
    env: dict[str, str] | None = None,
) -> Daemon:
    """``flamed run`` with a state dir and inbox under ``folder``; waits for /healthz."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token_line = ""
    if token is not None:
        (folder / "token").write_text(token + "\n")
        token_line = f'token_file = "{folder / "token"}"\n'
    state, inbox = folder / "state", folder / "inbox"
    inbox.mkdir(exist_ok=True)
    config = folder / "flamed.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n{token_line}{server}\n'
        f'[storage]\nstate_dir = "{state}"\nbucket = "2s"\nretention = "1h"\n'
        f'inbox = "{inbox}"\n{targets}'
    )
    log = folder / "daemon.log"
    command = [sys.executable, "-m", "flamed.daemon.cli", "run", "--config", str(config)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    daemon = Daemon(process, f"http://127.0.0.1:{port}", port, folder, state, inbox, log, token)
    try:
        wait_until("daemon answers /healthz", lambda: daemon.get("/healthz")[0] == 200)
    except AssertionError:
        daemon.stop()
        raise AssertionError(log.read_text(errors="replace")) from None
    return daemon
