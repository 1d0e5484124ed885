"""`flamed run` end to end: real perf sampling a CPU-burning program, checked over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collapse.folded import Folded, read_folded
from tests.collector.helpers import build_burn, heavy_light_ratio, require_perf, weight

pytestmark = [pytest.mark.perf, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, port: int, state: Path, extra: str = "") -> None:
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\nstate_dir = {str(state)!r}\nbucket = "1s"\nretention = "1h"\n'
        f"[profile]\nfrequency = 199\n"
        f'[[targets]]\nname = "burn"\nprocess = "^flamedburn$"\n{extra}'
    )


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def poll(check: object, timeout: float = 90.0) -> None:
    """Wait until ``check()`` is true; a bound on waiting, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.25)


class Daemon:
    def __init__(self, config: Path, port: int, tmp: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.notify_path = str(tmp / f"notify-{time.monotonic_ns()}.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": self.notify_path}
        self.log = (tmp / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flamed.daemon.cli", "run", "--config", str(config)],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )

    def ready(self) -> bytes:
        return self.notify.recv(4096)

    def folded(self, query: str) -> Folded:
        status, body = get(f"{self.base}/api/v1/folded?{query}")
        assert status == 200, body
        return read_folded(body)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.notify.close()
        self.log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        self.log.close()


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_perf()
    binary = build_burn(tmp_path)
    proc = subprocess.Popen([str(binary), "240"])
    yield proc
    proc.kill()
    proc.wait()


def test_flamed_run_with_real_perf(tmp_path: Path, burner: subprocess.Popen[bytes]) -> None:
    port, state, config = free_port(), tmp_path / "state", tmp_path / "flamed.toml"
    write_config(config, port, state)
    daemon = Daemon(config, port, tmp_path)
    try:
        assert daemon.ready().startswith(b"READY=1")
        assert get(f"{daemon.base}/healthz")[0] == 200

        def enough() -> bool:
            folded = daemon.folded("target=burn&window=5m")
            return weight(folded, "light") > 0 and weight(folded, "heavy") > 0 and len(folded) > 0

        poll(enough)
        # light() gets a quarter of the time: with 60 samples in it the heavy/light ratio's
        # spread is about 0.45 around 3, so the bounds below sit over 2 spreads away (with 20
        # it failed now and then on a loaded machine)
        poll(lambda: weight(daemon.folded("target=burn&window=5m"), "light") >= 60)
        folded = daemon.folded("target=burn&window=5m")
        under_burn = sum(c for stack, c in folded.items() if stack.startswith("flamedburn;"))
        assert under_burn >= 0.95 * folded.total(), folded.sorted_items()[:20]
        assert 2.0 <= heavy_light_ratio(folded) <= 4.5, heavy_light_ratio(folded)

        status, svg = get(f"{daemon.base}/api/v1/flamegraph?target=burn&window=5m")
        assert status == 200 and b"heavy" in svg and b"light" in svg and b"burn: last 5m" in svg
        status, body = get(f"{daemon.base}/api/v1/folded?target=burn&window=soon")
        assert status == 400 and body.count(b"\n") == 1
        assert get(f"{daemon.base}/api/v1/flamegraph?target=nope")[0] == 404

        targets = json.loads(get(f"{daemon.base}/api/v1/targets")[1])
        (burn,) = targets
        assert burn["state"] == "running" and burner.pid in burn["pids"]
        write_config(config, port, state, f'[[targets]]\nname = "again"\npids = [{burner.pid}]\n')

        def reloaded() -> bool:
            names = [t["name"] for t in json.loads(get(f"{daemon.base}/api/v1/targets")[1])]
            return names == ["burn", "again"]

        poll(reloaded)
        after = json.loads(get(f"{daemon.base}/api/v1/targets")[1])[0]
        assert after["restarts"] == 0 and after["oldest"] == burn["oldest"]

        before_stop = daemon.folded("target=burn&window=1h")
        assert daemon.stop() == 0
    finally:
        daemon.kill()

    burner.kill()
    burner.wait()
    files = list((state / "burn").glob("*.folded.gz"))
    assert files, "no bucket was written to disk"
    again = Daemon(config, port, tmp_path)
    try:
        assert again.ready().startswith(b"READY=1")
        kept = again.folded("target=burn&window=1h")
        assert weight(kept, "heavy") >= weight(before_stop, "heavy")
        assert 2.0 <= heavy_light_ratio(kept) <= 4.5
        assert again.stop() == 0
    finally:
        again.kill()
