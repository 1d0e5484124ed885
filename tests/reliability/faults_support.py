"""Shared by the fault tests: a real `flamed run` daemon against a C workload, /proc probes.

The daemon runs as a child process (so it can be SIGKILLed or SIGSTOPped), with
real perf, on a free loopback port. ``Daemon(..., session={...})`` starts the
same daemon through ``run_daemon`` with collector knobs the config file does
not expose (a stall timeout, a perf RSS cap, a grace period).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
FIGURES = Path(os.environ.get("FLAMED_FIGURES", "/tmp/flamed-reliability-figures.txt"))

LAUNCH = """
import asyncio, functools, json, logging, sys
from flamed.collector import create_session
from flamed.daemon.config import load_config
from flamed.daemon.server import run_daemon
from flamed.daemon.supervisor import SESSION_STOP
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
knobs = json.loads(sys.argv[2])
factory = functools.partial(create_session, stop_timeout=SESSION_STOP, **knobs)
sys.exit(asyncio.run(run_daemon(load_config(sys.argv[1]), sys.argv[1], session_factory=factory)))
"""


def command_name(proc: subprocess.Popen[bytes]) -> str:
    """The command name (comm) of a process started from a list of arguments."""
    args = proc.args
    assert isinstance(args, list)
    return Path(str(args[0])).name


def burn_name() -> str:
    """A command name no other test's processes have (tests run side by side)."""
    return f"ffault{random.randrange(10**8):08d}"


def figure(case: str, name: str, value: object) -> None:
    """Record a measured figure (appended to $FLAMED_FIGURES, and printed)."""
    line = f"FIGURE case {case}: {name} = {value}"
    print(line)
    with FIGURES.open("a") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def poll(check: Callable[[], object], what: str, timeout: float = 90.0, step: float = 0.1) -> None:
    """Wait until ``check()`` is true; a bound against hangs, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(step)


def write_config(
    path: Path,
    port: int,
    state: Path,
    *,
    bucket: str = "1s",
    frequency: int = 199,
    process: str = "flamedburn",
    targets: str | None = None,
    extra: str = "",
) -> None:
    if targets is None:
        targets = f'[[targets]]\nname = "burn"\nprocess = "^{process}$"\n'
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\nstate_dir = {str(state)!r}\nbucket = "{bucket}"\nretention = "1h"\n{extra}'
        f"[profile]\nfrequency = {frequency}\n{targets}"
    )


class Daemon:
    """``flamed run`` (or the same daemon with collector knobs) as a child process."""

    def __init__(
        self, config: Path, port: int, tmp: Path, session: dict[str, object] | None = None
    ) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.notify_path = str(tmp / f"notify-{time.monotonic_ns()}.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": self.notify_path}
        self.log_path = tmp / "daemon.log"
        self.log = self.log_path.open("ab")
        if session is None:
            argv = [sys.executable, "-m", "flamed.daemon.cli", "run", "--config", str(config)]
        else:
            argv = [sys.executable, "-c", LAUNCH, str(config), json.dumps(session)]
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid

    def ready(self) -> None:
        message = self.notify.recv(4096)
        assert message.startswith(b"READY=1"), message

    def json(self, path: str) -> object:
        status, body = get(self.base + path)
        assert status == 200, body
        return json.loads(body)

    def names(self) -> list[str]:
        targets = self.json("/api/v1/targets")
        assert isinstance(targets, list)
        return [str(entry["name"]) for entry in targets]

    def target(self, name: str = "burn") -> dict[str, object]:
        targets = self.json("/api/v1/targets")
        assert isinstance(targets, list)
        for entry in targets:
            if entry["name"] == name:
                return dict(entry)
        raise AssertionError(f"no target {name}: {targets}")

    def metrics(self) -> str:
        status, body = get(self.base + "/metrics")
        assert status == 200, body
        return body.decode()

    def logged(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.close()

    def close(self) -> None:
        self.notify.close()
        self.log.close()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def series(text: str) -> set[str]:
    """Every series (name and labels) in Prometheus text."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the comm: [state, ppid, pgrp, ...]; None when gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def cmdline(pid: int) -> str:
    try:
        data = (PROC / str(pid) / "cmdline").read_bytes()
        return data.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def perf_children(daemon: int, what: str = "record", target: str | None = None) -> list[int]:
    """Live ``perf record`` (or ``perf script``) processes a daemon started, for one target
    (the ``FLAMED_TARGET`` in their environment) or for all."""
    found = []
    for name in os.listdir(PROC):
        fields = stat_fields(int(name)) if name.isdigit() else None
        if not fields or fields[0] in ("Z", "X") or int(fields[1]) != daemon:
            continue
        if f" {what} " in cmdline(int(name)) and (target is None or target_of(int(name)) == target):
            found.append(int(name))
    return found


def target_of(pid: int) -> str | None:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"FLAMED_TARGET="):
            return entry.split(b"=", 1)[1].decode(errors="replace")
    return None


def perf_records(daemon: int, target: str | None = None) -> list[int]:
    return perf_children(daemon, "record", target)


def zombies_of(parent: int) -> list[int]:
    """Zombie children of ``parent``."""
    found = []
    for name in os.listdir(PROC):
        fields = stat_fields(int(name)) if name.isdigit() else None
        if fields and fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(name))
    return found


def status_value(pid: int, key: str) -> int:
    """A number from /proc/PID/status (VmRSS in kB, Threads), 0 when gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0
