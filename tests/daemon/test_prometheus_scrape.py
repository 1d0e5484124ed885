"""A real Prometheus (Debian's) scrapes the daemon; its API sees the target up and samples."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from flamed.daemon.app import create_app
from tests.daemon.conftest import FakeFactory, make_config, wait_for

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def daemon(tmp_path: Path, factory: FakeFactory) -> AsyncIterator[int]:
    port = free_port()
    app = create_app(
        make_config(tmp_path / "state"), session_factory=factory, registry=CollectorRegistry()
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await wait_for(lambda: factory.running("a"))
    factory.latest("a").emit(0, 1, "main;f 7\n")  # older than the retention: dropped, not counted
    factory.latest("a").emit(10**10 - 10, 10**10, "main;f 5\n")
    yield port
    await runner.cleanup()


@pytest.fixture
def prometheus(tmp_path: Path, daemon: int) -> object:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: flamed\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{daemon}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


async def query(http: aiohttp.ClientSession, port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        async with http.get(url, params={"query": promql}) as response:
            if response.status != 200:
                return []
            body = await response.json()
    except aiohttp.ClientError:
        return []
    result: list[dict[str, object]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_the_daemon(prometheus: int) -> None:
    async with aiohttp.ClientSession() as http:
        found: dict[str, list[dict[str, object]]] = {}

        async def scraped() -> bool:
            found["up"] = await query(http, prometheus, 'up{job="flamed"}')
            found["samples"] = await query(
                http, prometheus, 'flamed_collapse_samples_total{job="flamed",target="a"}'
            )
            return bool(found["up"]) and bool(found["samples"])

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while not await scraped():
            assert loop.time() < deadline, "Prometheus never scraped the daemon"
            await asyncio.sleep(0.5)
        (up,) = found["up"]
        assert up["value"][1] == "1"  # type: ignore[index]
        (samples,) = found["samples"]
        assert float(samples["value"][1]) == 5.0  # type: ignore[index]
