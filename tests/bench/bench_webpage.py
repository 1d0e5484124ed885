"""The viewer with big profiles in headless Chromium, its payloads, and the timeline endpoint.

    python tests/bench/bench_webpage.py [page] [sizes] [timeline] [--stacks 5000 50000]
        [--runs 5]

The daemon is the real application (``create_app``) on loopback, in this
process, with fake samplers and buckets put straight into its windows, so
nothing else competes for the two cores.

page: for each --stacks (distinct stacks 10 to 40 frames deep through a shared
    call tree, one bucket), runs alternate between the sizes (A B A B ...) and
    print medians: the time from navigation until the graph is drawn, the first
    run with the daemon building the JSON (cold) and the others from its cache
    (warm); and in the page, the time to build the tree from the JSON, to zoom
    into a frame and out again (layout and drawing included), to search (a
    regular expression over every name, the matched share, a redraw), to fill
    the top table, and to draw a sandwich. Also the page's own weight.
sizes: for the same profiles, the JSON the page reads against the SVG for the
    same range (raw and gzip-compressed, as served) and the time the daemon takes
    to make each.
timeline: 24 hours of 10-second buckets (8,640, cold and hot alike), and the
    latency of /api/v1/timeline?window=24h: the first request (made on the loop)
    and repeated ones (cached), and a revalidation (304).

Needs /usr/bin/chromium and Playwright for "page". Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from flamed.collapse.folded import Count, Folded
from flamed.daemon.app import SERVICE, create_app
from flamed.daemon.config import parse_config
from flamed.daemon.store import make_bucket

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tests.daemon.conftest import FakeFactory

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DAY = 86400
BUCKET = 10


def profile(stacks: int, seed: int) -> Folded:
    rng = random.Random(seed)
    names = [f"fn_{n}" for n in range(400)]
    counts: dict[str, Count] = {}
    while len(counts) < stacks:
        depth = rng.randint(10, 40)
        frames = ["main"] + [names[(i * 7 + rng.randint(0, 3 + i)) % 400] for i in range(depth)]
        counts[";".join(frames)] = rng.randint(1, 500)
    return Folded(counts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Daemon:
    """``create_app`` on loopback in a thread; ``fill`` puts buckets into a target's window."""

    def __init__(self, targets: list[str], max_stacks: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="flamed-bench-"))
        self.port = free_port()
        listed = "".join(f'[[targets]]\nname = "{name}"\npids = [1]\n' for name in targets)
        self.config = parse_config(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n[storage]\n'
            f'state_dir = "{self.folder}"\nbucket = "{BUCKET}s"\nretention = "2d"\n'
            f"max_stacks = {max_stacks}\n{listed}",
            "bench.toml",
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, work: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return work()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(600)

    def __enter__(self) -> Daemon:
        self.thread.start()

        async def start() -> None:
            self.app = create_app(
                self.config,
                session_factory=FakeFactory(),
                registry=CollectorRegistry(),
                persist=False,
                watch=False,
            )
            self.runner = web.AppRunner(self.app, access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def fill(self, target: str, buckets: list[tuple[float, Folded]]) -> None:
        assert self.app is not None
        window = self.app[SERVICE].windows[target]
        made = [
            make_bucket(start, start + BUCKET, folded, window.max_stacks)
            for start, folded in buckets
        ]
        self.call(lambda: window.add_many(made))


def fetch(url: str, gzipped: bool = False, etag: str = "") -> tuple[float, int, bytes, str]:
    """(seconds, status, body as sent, ETag)."""
    request = urllib.request.Request(url)
    request.add_header("Accept-Encoding", "gzip" if gzipped else "identity")
    if etag:
        request.add_header("If-None-Match", etag)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as answer:
            body = answer.read()
            status, tag = answer.status, answer.headers.get("ETag", "")
    except urllib.error.HTTPError as err:
        body, status, tag = err.read(), err.code, err.headers.get("ETag", "")
    return time.perf_counter() - started, status, body, tag


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- page ----------------------------------------------------------------------------------

IN_PAGE = """async () => {
    const FV = window.flamedViewer;
    const graph = document.getElementById('graph').flamedGraph;
    const doc = await (await fetch(performance.getEntriesByType('resource')
        .filter(e => e.name.includes('/api/v1/profile')).pop().name)).json();
    const time = (work) => { const t = performance.now(); work(); return performance.now() - t; };
    let tree;
    const build = time(() => { tree = FV.foldRuns(FV.fromJson(doc)); });
    const nodes = tree.count;
    const deep = [];
    for (let i = 1; i < tree.count && deep.length < 5; i++) {
        if (tree.depth[i] === 3 && tree.total[i] > tree.total[0] / 200) deep.push(i);
    }
    const zooms = deep.map((node) => time(() => graph.zoomTo(node)) + time(() => graph.zoomTo(0)));
    const search = time(() => {
        const marks = FV.matchNames(tree.names, FV.matcher('fn_1[0-9]$', false));
        FV.matchedTotal(tree, marks);
        graph.marks = marks;
        graph.draw();
    });
    const table = time(() => {
        document.querySelector('[data-view=table]').click();
    });
    const sandwich = time(() => {
        const name = tree.names.indexOf('fn_7');
        FV.callers(tree, name);
        FV.callees(tree, name);
    });
    return {build, nodes, zoom: zooms.reduce((a, b) => a + b, 0) / zooms.length / 2, search,
        table, sandwich, drawn: parseInt(graph.canvas.dataset.drawn, 10)};
}"""


def first_graph(browser: Any, url: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function(
        "() => { const g = document.getElementById('graph').flamedGraph;"
        " return g && g.frames().length > 1; }",
        timeout=600_000,
    )
    elapsed = (time.perf_counter() - started) * 1000
    page.close()
    return elapsed


def in_page(browser: Any, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    page.wait_for_function(
        "() => { const g = document.getElementById('graph').flamedGraph;"
        " return g && g.frames().length > 1; }",
        timeout=600_000,
    )
    timings: dict[str, float] = page.evaluate(IN_PAGE)
    page.close()
    return timings


def page_weight(daemon: Daemon) -> None:
    for name in ("", "static/page.js", "static/page.css"):
        _, _, raw, _ = fetch(f"{daemon.url}/{name}")
        _, _, packed, _ = fetch(f"{daemon.url}/{name}", gzipped=True)
        sent = len(packed) if packed[:2] == b"\x1f\x8b" else len(gzip.compress(raw))
        print(f"  {name or 'index.html':16} {len(raw):7,d} bytes, {sent:6,d} gzipped")


def bench_page(sizes: list[int], runs: int) -> None:
    from playwright.sync_api import sync_playwright

    names = [f"s{size}" for size in sizes]
    now = time.time()
    with Daemon(names, max_stacks=max(sizes) + 1) as daemon:
        for name, size in zip(names, sizes, strict=True):
            daemon.fill(name, [(now - 30, profile(size, 1))])
        print("page weight (as served):")
        page_weight(daemon)
        url = {name: f"{daemon.url}/?target={name}&window=5m&live=0" for name in names}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            cold = {name: first_graph(browser, url[name]) for name in names}
            warm: dict[str, list[float]] = {name: [] for name in names}
            inner: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            for _ in range(runs):  # A B A B ...
                for name in names:
                    warm[name].append(first_graph(browser, url[name]))
                    inner[name].append(in_page(browser, url[name]))
            browser.close()
    for name, size in zip(names, sizes, strict=True):
        step = {key: median([run[key] for run in inner[name]]) for key in inner[name][0]}
        print(
            f"{size:6,d} stacks ({step['nodes']:,.0f} nodes): first graph {cold[name]:.0f} ms "
            f"cold, {median(warm[name]):.0f} ms warm; build {step['build']:.0f} ms; "
            f"zoom {step['zoom']:.0f} ms; search {step['search']:.0f} ms; "
            f"top table {step['table']:.0f} ms; sandwich {step['sandwich']:.0f} ms; "
            f"{step['drawn']:,.0f} frames drawn (medians of {runs})"
        )


# -- sizes ---------------------------------------------------------------------------------


def bench_sizes(sizes: list[int]) -> None:
    names = [f"s{size}" for size in sizes]
    now = time.time()
    with Daemon(names, max_stacks=max(sizes) + 1) as daemon:
        for name, size in zip(names, sizes, strict=True):
            daemon.fill(name, [(now - 30, profile(size, 1))])
        for name, size in zip(names, sizes, strict=True):
            for path in ("api/v1/profile", "api/v1/flamegraph"):
                url = f"{daemon.url}/{path}?target={name}&window=5m"
                made, _, packed, _ = fetch(url, gzipped=True)
                _, _, raw, _ = fetch(url)
                again = median([fetch(url, gzipped=True)[0] for _ in range(3)])
                print(
                    f"{size:6,d} stacks {path:18} {len(raw) / 1e6:6.2f} MB, "
                    f"{len(packed) / 1e6:5.2f} MB gzipped; first answer {made * 1000:.0f} ms, "
                    f"cached {again * 1000:.0f} ms"
                )


# -- timeline ------------------------------------------------------------------------------


def bench_timeline(runs: int) -> None:
    now = time.time()
    start = (now // BUCKET) * BUCKET - DAY
    rng = random.Random(3)
    small = [Folded({f"main;fn_{rng.randint(0, 50)}": rng.randint(1, 99)}) for _ in range(64)]
    buckets = [(start + n * BUCKET, small[n % 64]) for n in range(DAY // BUCKET)]
    with Daemon(["day"], max_stacks=100) as daemon:
        daemon.fill("day", buckets)
        assert daemon.app is not None
        window = daemon.app[SERVICE].windows["day"]
        count = daemon.call(lambda: len(window.buckets))
        url = f"{daemon.url}/api/v1/timeline?target=day&window=24h"
        first, _, body, etag = fetch(url, gzipped=True)
        cached = [fetch(url, gzipped=True)[0] for _ in range(runs)]
        revalidated = [fetch(url, gzipped=True, etag=etag)[0] for _ in range(runs)]
        daemon.call(lambda: window.evict(now, keep=()))  # every bucket cold: stacks on disk
        cold = [fetch(url + f"&until=now-{n}s", gzipped=True)[0] for n in range(runs)]
    print(
        f"timeline, 24 h of {BUCKET} s buckets ({count:,d}): first {first * 1000:.1f} ms, "
        f"cached {median(cached) * 1000:.1f} ms, 304 {median(revalidated) * 1000:.1f} ms, "
        f"cold buckets (each request new) {median(cold) * 1000:.1f} ms; "
        f"{len(body):,d} bytes gzipped (medians of {runs})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", default=["page", "sizes", "timeline"])
    parser.add_argument("--stacks", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if "sizes" in args.parts:
        bench_sizes(args.stacks)
    if "timeline" in args.parts:
        bench_timeline(args.runs)
    if "page" in args.parts:
        bench_page(args.stacks, args.runs)


if __name__ == "__main__":
    main()
