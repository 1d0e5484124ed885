"""How the web page copes with large flame graphs, in headless Chromium.

    python tests/bench/bench_webpage.py [--stacks 200 2000] [--runs 3]

For each size, renders a synthetic profile (distinct stacks 10 to 40 frames
deep through a shared call tree) with flamed.render, serves the page and a
stand-in API on loopback, and prints: the SVG's size and frame count, the time
from navigation until the graph is inline and interactive, and in-page times
for a zoom, a search and the replacement of the graph by a newer one (what
auto-refresh does, keeping zoom and search). Best of --runs. Also prints the
page's own weight (HTML, JS, CSS; raw and gzip). Needs /usr/bin/chromium and
Playwright; run on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import socket
import threading
import time
from importlib import resources
from typing import Any

from aiohttp import web

from flamed.collapse.folded import Count, Folded
from flamed.daemon import webpage
from flamed.render import RenderOptions, render_flamegraph

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


class StandIn:
    """The page's routes and a fake API that hands out ``svgs`` in turn."""

    def __init__(self, svgs: list[str]) -> None:
        self.svgs = svgs
        self.served = 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    async def targets(self, request: web.Request) -> web.Response:
        body = [{"name": "t", "state": "running", "pids": [1], "event": "cpu-clock"}]
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def graph(self, request: web.Request) -> web.Response:
        svg = self.svgs[self.served % len(self.svgs)]
        self.served += 1
        return web.Response(text=svg, content_type="image/svg+xml")

    async def _start(self) -> None:
        app = web.Application()
        webpage.add_page_routes(app)
        app.router.add_get("/api/v1/targets", self.targets)
        app.router.add_get("/api/v1/flamegraph", self.graph)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> StandIn:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


IN_PAGE = """async () => {
    const svg = document.querySelector('#graph svg');
    const frame = [...svg.querySelectorAll('g.fg-f')].find(g => g.flamegraphFrame.depth === 3);
    let t = performance.now();
    svg.flamegraph.zoom(frame.flamegraphFrame.start, 3);
    const zoom = performance.now() - t;
    t = performance.now();
    svg.flamegraph.search('fn_1[0-9]$');
    const search = performance.now() - t;
    return {zoom, search};
}"""

REPLACE = """async (before) => {
    // Turn auto-refresh on; time from the newer SVG's last byte to it being inline,
    // interactive, zoomed on the same stack and searched again.
    const holder = document.getElementById('graph');
    const installed = new Promise(resolve => {
        new MutationObserver((changes, observer) => {
            if (parseInt(holder.dataset.generation, 10) > before) {
                observer.disconnect();
                resolve(performance.now());
            }
        }).observe(holder, {attributes: true});
    });
    const live = document.getElementById('live');
    live.checked = true;
    live.dispatchEvent(new Event('change'));
    const done = await installed;
    const fetched = performance.getEntriesByType('resource')
        .filter(e => e.name.includes('/api/v1/flamegraph')).pop();
    const zoomed = document.querySelector('#graph svg').flamegraph.view().zoomed !== null;
    return zoomed ? done - fetched.responseEnd : NaN;
}"""


def measure(browser: Any, server: StandIn) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    started = time.perf_counter()
    page.goto(f"http://127.0.0.1:{server.port}/?target=t&window=1m&live=0")
    page.wait_for_function("() => (document.querySelector('#graph svg') || {}).flamegraph")
    first = (time.perf_counter() - started) * 1000
    timings: dict[str, float] = page.evaluate(IN_PAGE)
    generation = int(page.get_attribute("#graph", "data-generation") or 0)
    waited = page.evaluate(REPLACE, generation)
    page.close()
    return {"first": first, **timings, "replace": waited}


def page_weight() -> None:
    folder = resources.files("flamed.daemon").joinpath("assets")
    for name in ("index.html", "page.js", "page.css"):
        data = folder.joinpath(name).read_bytes()
        print(f"  {name:10} {len(data):7,d} bytes, {len(gzip.compress(data)):6,d} gzipped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print("page weight:")
    page_weight()
    options = RenderOptions(width=1380)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        for stacks in args.stacks:
            svgs = [render_flamegraph(profile(stacks, seed), options) for seed in (1, 2)]
            frames = svgs[0].count('class="fg-f"')
            with StandIn(svgs) as server:
                runs = [measure(browser, server) for _ in range(args.runs)]
            best = {key: min(run[key] for run in runs) for key in runs[0]}
            print(
                f"{stacks:6,d} stacks: SVG {len(svgs[0]) / 1e6:.1f} MB, {frames:,d} frames; "
                f"first graph {best['first']:.0f} ms; zoom {best['zoom']:.0f} ms; "
                f"search {best['search']:.0f} ms; refresh (replace, re-zoom, re-search) "
                f"{best['replace']:.0f} ms"
            )
        browser.close()


if __name__ == "__main__":
    main()
