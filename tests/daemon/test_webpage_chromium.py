"""The web page in real headless Chromium against a real daemon profiling a real workload.

``flamed run`` samples a small C program (two named functions, frame pointers)
with perf, 2 s buckets, a bearer token and an inbox, through which the tests
add what perf does not give on demand: a 127-frame ``[unknown]`` chain under
the workload (as unwinding failures make), two ranges of a target ``fed``
whose functions grew and shrank, hostile frame names. The browser reaches the
daemon through a reverse proxy that maps ``/flamed/`` onto its root, so every
check also proves the page works under a path prefix. The graphs are canvases:
the checks read what was drawn from the graph's ``frames()`` (the boxes it
painted, in canvas pixels), click and hover at those places, and look at the
painted pixels where it matters (labels). No check asserts a duration.

Screenshots go to ``tests/artifacts/webpage/`` (gitignored).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from flamed.daemon import webpage
from tests.render.test_speedscope import speedscope_release, validate

pytestmark = [pytest.mark.chromium, pytest.mark.perf]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "webpage"
TOKEN = "s3cret-token-for-the-page"
PREFIX = "/flamed/"
WAIT_MS = 60_000

WORKLOAD = r"""
volatile unsigned long sink;
__attribute__((noinline)) void burn_alpha(void) {
    for (unsigned long i = 0; i < 3000000UL; i++) sink += i;
}
__attribute__((noinline)) void burn_beta(void) {
    for (unsigned long i = 0; i < 1000000UL; i++) sink ^= i;
}
int main(void) { for (;;) { burn_alpha(); burn_beta(); } }
"""

HOSTILE = "<img src=x onerror=window.__pwned=1>"
HOSTILE_SCRIPT = "</svg><script>window.__pwned=2</script>"
HOSTILE_STACK = f"main;{HOSTILE};{HOSTILE_SCRIPT} 5\n"


def need(path: str | None, what: str) -> str:
    if not path or not os.access(path, os.X_OK):
        pytest.skip(f"{what} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unused_pid() -> int:
    limit = int(Path("/proc/sys/kernel/pid_max").read_text())
    return next(pid for pid in range(limit - 1, 1, -1) if not Path(f"/proc/{pid}").exists())


def get(url: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def wait_until(what: str, check: Any, timeout: float = 60.0) -> None:
    """Poll ``check()`` (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g}s")
        time.sleep(0.2)


# -- the workload and the daemon -----------------------------------------------------------


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    gcc = need(shutil.which("gcc"), "gcc")
    folder = tmp_path_factory.mktemp("workload")
    (folder / "burn.c").write_text(WORKLOAD)
    binary = folder / "burn"
    flags = ["-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(folder / "burn.c")]
    subprocess.run([gcc, *flags], check=True)
    process = subprocess.Popen([str(binary)])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def sleeper() -> Iterator[int]:
    """A shell blocked in wait4 most of the time (a `sleep 0.05` at a time): off-CPU time."""
    process = subprocess.Popen(["sh", "-c", "while :; do sleep 0.05; done"])
    yield process.pid
    process.kill()
    process.wait()


def can_trace_off_cpu() -> bool:
    from flamed.collector.offcpu import offcpu_problems

    return not offcpu_problems()


@dataclass(frozen=True)
class Daemon:
    url: str
    inbox: Path
    ghost_pid: int
    burner_pid: int
    fed: tuple[tuple[float, float], tuple[float, float]]
    """The buckets of ``fed``: (baseline, compared), each (start, end)."""


UNKNOWN_CHAIN = ";".join(["[unknown]"] * 127)
DEEP = f"mystery;{UNKNOWN_CHAIN};leaf_a 9\nmystery;{UNKNOWN_CHAIN};leaf_b 4\n"
FED_BEFORE = "main;grow 10\nmain;shrink 50\nmain;same 5\n"
FED_AFTER = "main;grow 60\nmain;shrink 5\nmain;same 5\n"
PY_STACKS = (
    "python3;_start;py::main:app.py;_PyEval_EvalFrameDefault;PyObject_Vectorcall;"
    "py::work:app.py;_PyEval_EvalFrameDefault;list_sort 40\n"
    "python3;_start;py::main:app.py;_PyEval_EvalFrameDefault;_PyFunction_Vectorcall;"
    "py::idle:app.py;_PyEval_EvalFrameDefault 10\n"
)
"""What perf gives for CPython 3.12+ run with -X perf (no such CPython on Debian 12)."""


def deliver(inbox: Path, target: str, text: str) -> None:
    """Drop a profile in the inbox (written aside, then renamed in)."""
    staged = inbox / f"{target}.folded.tmp"
    staged.write_text(text)
    staged.rename(inbox / f"{target}.folded")


def buckets(url: str, target: str) -> list[list[float]]:
    status, body = get(f"{url}/api/v1/timeline?target={target}&window=1h")
    found: list[list[float]] = json.loads(body)["buckets"] if status == 200 else []
    return found


def feed_two_ranges(url: str, inbox: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    """Two buckets of ``fed``: FED_BEFORE, then FED_AFTER in a later one."""
    deliver(inbox, "fed", FED_BEFORE)
    wait_until("fed's first bucket", lambda: len(buckets(url, "fed")) == 1)
    first = buckets(url, "fed")[0]
    wait_until("fed's bucket over", lambda: time.time() > first[1] + 0.2)
    deliver(inbox, "fed", FED_AFTER)
    wait_until("fed's second bucket", lambda: len(buckets(url, "fed")) == 2)
    second = buckets(url, "fed")[1]
    return (first[0], first[1]), (second[0], second[1])


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, workload: int, sleeper: int
) -> Iterator[Daemon]:
    need(shutil.which("perf"), "perf")
    folder = tmp_path_factory.mktemp("daemon")
    (folder / "token").write_text(TOKEN + "\n")
    inbox = folder / "inbox"
    inbox.mkdir()
    port, ghost = free_port(), unused_pid()
    offcpu = str(can_trace_off_cpu()).lower()
    config = folder / "flamed.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\ntoken_file = "{folder / "token"}"\n'
        f'[storage]\nstate_dir = "{folder / "state"}"\nbucket = "2s"\nretention = "1h"\n'
        f'inbox = "{inbox}"\n'
        f'[[targets]]\nname = "burner"\npids = [{workload}]\n'
        f'[[targets]]\nname = "ghost"\npids = [{ghost}]\n'
        f'[[targets]]\nname = "broken"\npids = [{workload}]\nbackend = "dtrace"\n'
        f'[[targets]]\nname = "fed"\npids = [{ghost}]\n'
        f'[[targets]]\nname = "snake"\npids = [{ghost}]\n'
        f'[[targets]]\nname = "sleeper"\npids = [{sleeper}]\noffcpu = {offcpu}\n'
    )
    log = (folder / "daemon.log").open("wb")
    command = [sys.executable, "-m", "flamed.daemon.cli", "run", "--config", str(config)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("daemon answers", lambda: get(url + "/healthz")[0] == 200)
        folded = url + "/api/v1/folded?target=burner&window=5m"
        wait_until("burn_alpha sampled", lambda: b"burn_alpha" in get(folded)[1])
        deliver(inbox, "burner", DEEP)
        wait_until("the chain ingested", lambda: b"leaf_b" in get(folded)[1])
        fed = feed_two_ranges(url, inbox)
        yield Daemon(url, inbox, ghost, workload, fed)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# -- a reverse proxy under a path prefix ---------------------------------------------------


class Proxy:
    """``/flamed/X`` -> the daemon's ``/X``, in a thread with its own event loop."""

    FORWARDED = ("Content-Type", "ETag", "Cache-Control", "Content-Security-Policy")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = free_port()
        self.serve_page = True
        self.runner: web.AppRunner | None = None
        self.session: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        self.session = ClientSession()
        async with self.session.get(self.upstream + "/") as response:
            body = await response.read()
        # Once daemon/app.py routes / to the page, the daemon serves it itself.
        self.serve_page = not (response.status == 200 and b"static/page.js" in body)
        app = web.Application()
        app.router.add_get(PREFIX + "{tail:.*}", self.handle)
        app.router.add_get(PREFIX.rstrip("/"), self.handle)  # a proxy that does not redirect
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info.get("tail", "")
        if self.serve_page and path in webpage.PAGE_PATHS:
            local = request.clone(rel_url=request.rel_url.with_path(path))
            if path == "/":
                return await webpage.index(local)
            return await webpage.static_asset(local)
        return await self.forward(request, path)

    async def forward(self, request: web.Request, path: str) -> web.Response:
        assert self.session is not None
        headers = {
            key: request.headers[key]
            for key in ("Authorization", "If-None-Match")
            if key in request.headers
        }
        url = self.upstream + path
        async with self.session.get(url, params=request.query, headers=headers) as answer:
            body = await answer.read()
            kept = {key: answer.headers[key] for key in self.FORWARDED if key in answer.headers}
            return web.Response(status=answer.status, body=body, headers=kept)


@pytest.fixture(scope="module")
def proxy(daemon: Daemon) -> Iterator[Proxy]:
    server = Proxy(daemon.url)
    server.start()
    yield server
    server.stop()


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(CHROMIUM, "Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    page: Any
    errors: list[str]
    requests: list[str]


def new_tab(browser: Any, **context: Any) -> tuple[Any, Tab]:
    settings = {"viewport": {"width": 1400, "height": 900}, "accept_downloads": True, **context}
    opened = browser.new_context(**settings)
    page = opened.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda msg: errors.append(msg.text) if "Security Policy" in msg.text else 0)
    page.on("request", lambda request: requests.append(request.url))
    return opened, Tab(page, errors, requests)


@pytest.fixture(scope="module")
def speedscope(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """speedscope's release folder (its file-format schema), from npm."""
    return speedscope_release(request, tmp_path_factory)


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    opened, made = new_tab(browser)
    yield made
    opened.close()
    assert made.errors == [], made.errors


def open_page(tab: Tab, proxy: Proxy, query: str = "", token: str | None = TOKEN) -> Any:
    page = tab.page
    if token is not None:
        page.add_init_script(f"sessionStorage.setItem('flamed-token', {json.dumps(token)});")
    page.goto(proxy.url + (f"?{query}" if query else ""))
    return page


def shot(page: Any, name: str, full: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)


# -- reading the canvases ------------------------------------------------------------------

FRAMES_JS = "where => { const h = document.querySelector(where); return h && h.flamedGraph ? h.flamedGraph.frames() : []; }"  # noqa: E501


def frames(page: Any, where: str = "#graph") -> list[dict[str, Any]]:
    """The frames the graph in ``where`` painted, in canvas pixels."""
    drawn: list[dict[str, Any]] = page.evaluate(FRAMES_JS, where)
    return drawn


def find(page: Any, name: str, where: str = "#graph") -> dict[str, Any] | None:
    """The widest painted frame called ``name``."""
    matching = [f for f in frames(page, where) if f["name"] == name]
    return max(matching, key=lambda f: f["width"]) if matching else None


def names(page: Any, where: str = "#graph") -> set[str]:
    return {f["name"] for f in frames(page, where)}


def canvas_box(page: Any, where: str = "#graph") -> dict[str, float]:
    box: dict[str, float] = page.locator(f"{where} canvas").bounding_box()
    return box


def point(page: Any, name: str, where: str = "#graph") -> tuple[float, float]:
    """Where on the screen frame ``name`` is (a little in from its left end)."""
    found = find(page, name, where)
    assert found is not None, (name, sorted(names(page, where))[:20])
    box = canvas_box(page, where)
    left = box["x"] + found["x"] + min(found["width"] / 2, 40)
    return left, box["y"] + found["y"] + found["height"] / 2


def click_frame(page: Any, name: str, where: str = "#graph") -> None:
    page.mouse.click(*point(page, name, where))


INK_JS = """([where, f]) => {
    const canvas = document.querySelector(where + ' canvas');
    const ratio = canvas.width / canvas.clientWidth;
    const data = canvas.getContext('2d').getImageData(
        Math.round(f.x * ratio), Math.round(f.y * ratio),
        Math.max(1, Math.round(Math.min(f.width, 200) * ratio)), Math.round(f.height * ratio)).data;
    let dark = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (data[i] < 90 && data[i + 1] < 90 && data[i + 2] < 90 && data[i + 3] > 200) dark++;
    }
    return dark;
}"""


def ink(page: Any, frame: dict[str, Any], where: str = "#graph") -> int:
    """Dark pixels painted inside a frame: its label (frames themselves are light colours)."""
    count: int = page.evaluate(INK_JS, [where, frame])
    return count


def wait_graph(page: Any, part: str = "") -> None:
    """Until the graph shows a profile whose subtitle contains ``part``."""
    page.wait_for_function(
        """part => {
            const holder = document.getElementById('graph');
            return holder.flamedGraph && holder.flamedGraph.frames().length > 1
                && document.getElementById('subtitle').textContent.includes(part);
        }""",
        arg=part,
    )


def wait_frame(page: Any, name: str, where: str = "#graph") -> None:
    page.wait_for_function(
        "([where, name]) => { const h = document.querySelector(where);"
        " return h.flamedGraph && h.flamedGraph.frames().some(f => f.name === name); }",
        arg=[where, name],
    )


def query_of(page: Any) -> dict[str, str]:
    params: dict[str, str] = page.evaluate(
        "Object.fromEntries(new URLSearchParams(location.search))"
    )
    return params


def wait_query(page: Any, key: str, present: bool = True) -> None:
    page.wait_for_function(
        "([key, present]) => new URLSearchParams(location.search).has(key) === present",
        arg=[key, present],
    )


def wait_new_graph(page: Any) -> None:
    """Until the page installs a newer profile than the one shown now."""
    before = int(page.get_attribute("#graph", "data-generation"))
    page.wait_for_function(
        "n => parseInt(document.getElementById('graph').dataset.generation, 10) > n", arg=before
    )


def table_rows(page: Any) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        "#top tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => c.firstChild ? c.firstChild.textContent"
        " : ''))",
    )
    return rows


def table_row(page: Any, name: str) -> Any:
    """The top table's row of function ``name``."""
    index = [row[0] for row in table_rows(page)].index(name)
    return page.locator("#top tbody tr").nth(index)


def number(text: str) -> float:
    return float(text.replace(",", "").replace("\u2212", "-").split()[0])


def drag(page: Any, selector: str, start: float, end: float) -> None:
    """Drag across ``selector`` from ``start`` to ``end`` (shares of its width)."""
    box = page.locator(selector).bounding_box()
    y = box["y"] + box["height"] / 3
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    for step in range(1, 6):
        page.mouse.move(box["x"] + box["width"] * (start + (end - start) * step / 5), y)
    page.mouse.up()


# -- the checks ----------------------------------------------------------------------------


def test_asks_for_the_token_then_lists_the_targets(tab: Tab, proxy: Proxy, daemon: Daemon) -> None:
    page = open_page(tab, proxy, token=None)
    form = page.locator("#token-form")
    form.wait_for(state="visible")
    assert "needs a bearer token" in page.inner_text("#token-reason")
    shot(page, "01-token-asked")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    burner = page.locator("#targets tr[data-target=burner]")
    burner.wait_for()
    wait_graph(page)
    cells = burner.locator("td").all_inner_texts()
    assert cells[0] == "burner" and cells[1] == "running"
    assert str(daemon.burner_pid) in cells[2]
    assert cells[3] == "cpu-clock" and float(cells[4]) > 0
    ghost = page.locator("#targets tr[data-target=ghost]").locator("td").all_inner_texts()
    assert ghost[1] == "waiting" and "no matching process" in ghost[7]
    assert form.is_hidden() and query_of(page)["target"] == "burner"
    assert page.evaluate("sessionStorage.getItem('flamed-token')") == TOKEN


def test_the_first_screen_shows_the_roots_labelled(tab: Tab, proxy: Proxy) -> None:
    """1400x900, a profile with a 127-frame [unknown] chain: the roots are on the first
    screen with readable labels (the classic graph put them 1,200 px below the fold)."""
    page = open_page(tab, proxy, "target=burner&window=1h")
    wait_graph(page, "burner: ")
    wait_frame(page, "burn_alpha")
    shot(page, "02-first-screen")
    box = canvas_box(page)
    roots = [f for f in frames(page) if f["depth"] <= 4 and f["width"] > 100]
    assert {"all", "main", "burn_alpha"} <= {f["name"] for f in roots}
    for root in roots:
        assert box["y"] + root["y"] + root["height"] <= 900, root
        assert ink(page, root) > 20, root["name"]  # its label is painted
    area = page.locator("#graph .graph-scroll").bounding_box()
    assert area["y"] + area["height"] <= 900
    ours = [url for url in tab.requests if not url.startswith(("data:", "blob:"))]
    assert ours and all(url.startswith(proxy.url) for url in ours), ours
    assert any("/flamed/api/v1/profile?" in url for url in ours)
    assert any("/flamed/api/v1/timeline?" in url for url in ours)


def test_a_deep_unknown_chain_is_one_marked_frame_until_unfolded(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1h&zoom=mystery")
    wait_frame(page, "leaf_a")
    chain = [f for f in frames(page) if f["name"] == "[unknown]"]
    assert [f["label"] for f in chain] == ["[unknown] ×127"]
    assert find(page, "leaf_a")["depth"] == find(page, "mystery")["depth"] + 2
    shot(page, "03-folded-chain")
    page.uncheck("#fold")
    page.wait_for_function("() => document.getElementById('graph').flamedGraph.layout.rows > 100")
    assert query_of(page)["fold"] == "0"
    area = page.locator("#graph .graph-scroll")
    assert page.evaluate("e => e.scrollHeight > e.clientHeight", area.element_handle())
    assert area.bounding_box()["y"] + area.bounding_box()["height"] <= 900
    shot(page, "04-unfolded-chain")


def test_icicle_and_flame_toggle(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_frame(page, "burn_alpha")
    assert find(page, "all")["y"] < find(page, "burn_alpha")["y"]  # icicle: root on top
    page.click("[data-view=flame]")
    page.wait_for_function(
        "() => document.getElementById('graph').flamedGraph.orientation === 'flame'"
    )
    assert query_of(page)["view"] == "flame"
    root, alpha = find(page, "all"), find(page, "burn_alpha")
    assert root is not None and alpha is not None and root["y"] > alpha["y"]
    assert canvas_box(page)["y"] + root["y"] + root["height"] <= 900  # scrolled to the root
    shot(page, "05-flame")
    page.click("[data-view=icicle]")
    wait_query(page, "view", present=False)
    assert find(page, "all")["y"] < find(page, "burn_alpha")["y"]


def test_a_click_zooms_keeping_ancestors_and_escape_resets(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_frame(page, "burn_beta")
    width = canvas_box(page)["width"]
    assert find(page, "burn_alpha")["width"] < width - 20
    click_frame(page, "burn_alpha")
    wait_query(page, "zoom")
    assert query_of(page)["zoom"].endswith("main;burn_alpha")
    assert find(page, "burn_alpha")["width"] >= width - 3
    assert "burn_beta" not in names(page)
    main = find(page, "main")
    assert main is not None and main["above"]  # the ancestors stay, shaded
    shot(page, "06-zoomed")
    page.keyboard.press("Escape")
    wait_query(page, "zoom", present=False)
    wait_frame(page, "burn_beta")
    click_frame(page, "burn_beta")
    wait_query(page, "zoom")
    page.click("#reset-zoom")
    wait_query(page, "zoom", present=False)


def test_hovering_a_frame_tells_its_samples(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_frame(page, "burn_alpha")
    page.mouse.move(*point(page, "burn_alpha"))
    tip = page.locator("#graph .graph-tip")
    tip.wait_for(state="visible")
    lines = tip.locator("div").all_inner_texts()
    assert lines[0] == "burn_alpha"
    samples = r"total [\d,]+ samples \(\d+\.\d%\), self [\d,]+ \(\d+\.\d%\)"
    assert re.fullmatch(samples, lines[1]), lines
    shot(page, "07-hover")


def test_search_with_the_matched_share_and_the_case_toggle(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_frame(page, "burn_beta")
    page.fill("#search", "burn_b")
    page.wait_for_function("() => new URLSearchParams(location.search).get('search') === 'burn_b'")
    assert find(page, "burn_beta")["match"] and not find(page, "burn_alpha")["match"]
    matched = page.text_content("#matched") or ""
    assert re.fullmatch(r"matched \d+(\.\d)?% \([\d,]+ samples?\)", matched), matched
    shot(page, "08-search")
    page.fill("#search", "BURN_A")
    page.wait_for_function("() => document.getElementById('matched').textContent.includes('0%')")
    assert not find(page, "burn_alpha")["match"]
    page.check("#ignore-case")
    page.wait_for_function("() => new URLSearchParams(location.search).get('ignorecase') === '1'")
    assert find(page, "burn_alpha")["match"]
    page.fill("#search", "burn_(")
    page.wait_for_function(
        "() => document.getElementById('matched').textContent.startsWith('not a regular')"
    )


def test_the_keyboard_reaches_search_graph_and_zoom(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_frame(page, "burn_alpha")
    page.locator("body").press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.press("Escape")
    page.locator("#graph canvas").focus()
    details = page.locator("#details-text")
    page.keyboard.press("ArrowDown")
    seen = {details.inner_text().split(" · ")[0]}
    for _ in range(5):
        page.keyboard.press("ArrowDown")
        seen.add(details.inner_text().split(" · ")[0])
    assert "main" in seen and seen & {"burn_alpha", "burn_beta"}, seen
    page.keyboard.press("Enter")
    wait_query(page, "zoom")
    page.keyboard.press("Control+f")
    assert page.evaluate("document.activeElement.id") == "search"


def test_the_top_table_sorts_filters_and_focuses_the_graph(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m&view=table")
    page.locator("#top tbody tr").first.wait_for()
    rows = table_rows(page)
    assert {"burn_alpha", "burn_beta", "main"} <= {row[0] for row in rows}
    selves = [number(row[1]) for row in rows]
    assert selves == sorted(selves, reverse=True)
    shot(page, "09-top-table")
    page.click("#top button[data-sort=total]")
    page.wait_for_function("() => new URLSearchParams(location.search).get('sort') === 'total'")
    assert page.get_attribute("#top th:has(button[data-sort=total])", "aria-sort") == "descending"
    totals = [number(row[3]) for row in table_rows(page)]
    assert totals == sorted(totals, reverse=True)
    page.click("#top button[data-sort=name]")
    names_sorted = [row[0] for row in table_rows(page)]
    assert names_sorted == sorted(names_sorted)
    page.fill("#search", "^burn_")
    page.wait_for_function("() => document.querySelectorAll('#top tbody tr').length === 2")
    page.locator("#top tbody tr").first.focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.cells[0].firstChild.textContent") == "burn_beta"
    page.keyboard.press("Enter")
    wait_query(page, "zoom")
    params = query_of(page)
    assert "view" not in params and params["search"] == "^burn_beta$"
    assert params["zoom"].endswith("main;burn_beta")
    assert find(page, "burn_beta")["match"]
    assert find(page, "burn_beta")["width"] >= canvas_box(page)["width"] - 3


def test_the_sandwich_shows_callers_above_and_callees_below(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1h&view=table")
    page.locator("#top tbody tr").first.wait_for()
    table_row(page, "main").locator("button.sandwich").click()
    wait_query(page, "fn")
    assert query_of(page)["view"] == "sandwich" and query_of(page)["fn"] == "main"
    wait_frame(page, "burn_alpha", "#callees")
    callers, callees = frames(page, "#callers"), frames(page, "#callees")
    top = [f for f in callers if f["name"] == "main"]
    assert len(top) == 1 and all(f["y"] <= top[0]["y"] for f in callers)  # main at the bottom
    assert {"__libc_start_call_main", "burn"} <= {f["name"] for f in callers}
    below = [f for f in callees if f["name"] == "main"]
    assert len(below) == 1 and all(f["y"] >= below[0]["y"] for f in callees)  # main on top
    assert {"burn_alpha", "burn_beta"} <= {f["name"] for f in callees}
    assert page.inner_text("#sandwich-name") == "main"
    shot(page, "10-sandwich")


def test_a_drag_on_the_timeline_sets_the_range_and_the_url(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=5m&live=0")
    wait_graph(page)
    page.wait_for_function("() => parseInt(document.getElementById('timeline').dataset.bars) > 5")
    before = page.inner_text("#subtitle")
    drag(page, "#timeline", 0.55, 0.85)
    wait_query(page, "from")
    params = query_of(page)
    assert params["window"] == "5m"
    span = float(params["until"]) - float(params["from"])
    assert 60 <= span <= 120, span  # 30% of five minutes, give or take a pixel's worth
    page.wait_for_function("text => document.getElementById('subtitle').textContent !== text",
                           arg=before)  # fmt: skip
    assert any("/api/v1/profile?" in u and "from=" + params["from"] in u for u in tab.requests)
    shot(page, "11-timeline-range")
    page.click("#clear-range")
    wait_query(page, "from", present=False)


def test_the_keyboard_selects_a_range_on_the_timeline(tab: Tab, proxy: Proxy) -> None:
    """Arrows move a cursor a bucket (2 s) at a time, Shift stretches, Enter applies."""
    page = open_page(tab, proxy, "target=burner&window=5m&live=0")
    wait_graph(page)
    page.wait_for_function("() => parseInt(document.getElementById('timeline').dataset.bars) > 5")
    page.focus("#timeline")
    page.keyboard.press("ArrowLeft")
    assert page.inner_text("#timeline-keys").startswith("at ")
    for _ in range(5):
        page.keyboard.press("Shift+ArrowLeft")
    assert "selected; Enter shows it" in page.inner_text("#timeline-keys")
    page.keyboard.press("Escape")  # drops the selection, the cursor stays
    assert page.inner_text("#timeline-keys").startswith("at ")
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Shift+ArrowLeft")
    assert "from" not in query_of(page)  # nothing is applied before Enter
    page.keyboard.press("Enter")
    wait_query(page, "from")
    params = query_of(page)
    span = float(params["until"]) - float(params["from"])
    assert 6 <= span <= 8, span  # three buckets, widened to whole seconds
    assert any("/api/v1/profile?" in u and "from=" + params["from"] in u for u in tab.requests)
    wait_graph(page)  # the last seconds of the burner, which ran through them
    shot(page, "11b-timeline-keyboard")
    page.keyboard.press("Delete")
    wait_query(page, "from", present=False)


def test_the_python_view_is_offered_where_there_are_python_frames(
    tab: Tab, proxy: Proxy, daemon: Daemon
) -> None:
    page = open_page(tab, proxy, "target=burner&window=5m&live=0")
    wait_graph(page)
    assert page.locator("#python-label").is_hidden()  # a C program's profile
    deliver(daemon.inbox, "snake", PY_STACKS)
    folded = f"{daemon.url}/api/v1/folded?target=snake&window=1h"
    wait_until("snake's stacks ingested", lambda: b"py::work" in get(folded)[1])
    page = open_page(tab, proxy, "target=snake&window=1h&live=0")
    wait_frame(page, "py::work:app.py")
    assert page.locator("#python-label").is_visible()
    page.check("#python")
    wait_query(page, "python")
    wait_frame(page, "work (app.py)")
    names = {drawn["name"] for drawn in frames(page)}
    assert {"main (app.py)", "idle (app.py)", "list_sort"} <= names
    assert not names & {"PyObject_Vectorcall", "_PyFunction_Vectorcall", "py::work:app.py"}
    assert "_PyEval_EvalFrameDefault" in names  # where idle() spent its time: kept
    assert any("/api/v1/profile?" in u and "python=1" in u for u in tab.requests)
    assert "python=1" in (page.get_attribute("#download-folded", "href") or "")
    shot(page, "20-python-view")
    page.uncheck("#python")
    wait_query(page, "python", present=False)
    wait_frame(page, "py::work:app.py")


def test_compare_draws_both_colours_and_the_table_gains_deltas(
    tab: Tab, proxy: Proxy, daemon: Daemon
) -> None:
    (a_from, a_until), (b_from, b_until) = daemon.fed
    query = (
        f"target=fed&window=1h&from={b_from:.3f}&until={b_until:.3f}&compare=1&baseline=ranges"
        f"&a_from={a_from:.3f}&a_until={a_until:.3f}"
    )
    page = open_page(tab, proxy, query)
    wait_frame(page, "grow")
    assert page.locator("#legend").is_visible()
    assert "red, more (it grew)" in page.inner_text("#legend")
    colours = {f["name"]: f["color"] for f in frames(page)}
    assert colours["grow"] == "rgb(255,0,0)"  # the largest growth: deepest red
    assert re.fullmatch(r"rgb\((\d+),\1,255\)", colours["shrink"]), colours
    assert colours["same"] == "rgb(255,255,255)"
    shot(page, "12-compare")
    page.click("[data-view=table]")
    page.locator("#top tbody tr").first.wait_for()
    heads = page.locator("#top thead th").all_inner_texts()
    assert heads[:4] == ["function", "self before", "self after ▾", "self change"]
    rows = {row[0]: row for row in table_rows(page)}
    assert [rows["grow"][1], rows["grow"][2]] == ["10", "60"]
    assert rows["grow"][3].startswith("+50 (")
    assert rows["shrink"][3].startswith("\u221245 (")
    shot(page, "13-compare-table")


def test_in_compare_mode_a_drag_sets_the_baseline(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=5m&compare=1&live=0")
    wait_graph(page, "against")
    page.click("[data-drag=baseline]")
    wait_query(page, "drag")
    drag(page, "#timeline", 0.2, 0.4)
    wait_query(page, "a_from")
    params = query_of(page)
    assert params["baseline"] == "ranges" and float(params["a_until"]) > float(params["a_from"])
    assert "from" not in params  # the compared range is still the whole window
    wait_graph(page, "against")
    shot(page, "14-compare-baseline-dragged")


def test_every_time_is_in_the_zone_said_on_screen(browser: Any, proxy: Proxy) -> None:
    opened, made = new_tab(browser, timezone_id="Asia/Kolkata")
    page = open_page(made, proxy, "target=burner&window=5m")
    wait_graph(page, "UTC+05:30")
    page.wait_for_function(
        "() => document.getElementById('timeline-caption').textContent.includes('UTC+05:30')"
    )
    assert page.inner_text("#zone") == "times in local time (UTC+05:30)"
    shot(page, "15-local-time")
    page.click("#zone")
    wait_query(page, "tz")
    assert page.inner_text("#zone") == "times in UTC"
    page.wait_for_function(
        "() => !document.getElementById('subtitle').textContent.includes('+05:30')"
        " && document.getElementById('timeline-caption').textContent.includes(' UTC')"
    )
    assert " UTC" in page.inner_text("#subtitle")
    page.click("[data-window=custom]")
    assert page.inner_text("#zone-hint") == "times in UTC"
    assert made.errors == []
    opened.close()


def test_auto_refresh_keeps_zoom_and_search(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_frame(page, "burn_alpha")
    click_frame(page, "burn_alpha")
    page.fill("#search", "alpha")
    page.press("#search", "Enter")
    wait_new_graph(page)
    alpha = find(page, "burn_alpha")
    assert alpha is not None and alpha["match"]
    assert alpha["width"] >= canvas_box(page)["width"] - 3
    assert "burn_beta" not in names(page)
    assert page.input_value("#search") == "alpha"


def test_switching_the_window_and_a_custom_range(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_graph(page)
    page.click("[data-window='5m']")
    page.wait_for_function("() => new URLSearchParams(location.search).get('window') === '5m'")
    assert page.get_attribute("[data-window='5m']", "aria-pressed") == "true"
    page.click("[data-window=custom]")
    page.locator("#custom").wait_for(state="visible")
    wait_query(page, "window", present=False)
    params = query_of(page)
    assert float(params["until"]) > float(params["from"])
    wait_frame(page, "burn_alpha")
    shot(page, "16-custom-range")


def test_downloads_send_the_token_and_speedscope_reads_ours(
    tab: Tab, proxy: Proxy, speedscope: Path
) -> None:
    page = open_page(tab, proxy, "target=burner&window=5m")
    wait_graph(page)
    expected = {
        "#download-svg": b"<?xml",
        "#download-folded": b"main;burn_",
        "#download-pprof": b"\x1f\x8b",
        "#download-speedscope": b'"$schema"',
    }
    for link, start in expected.items():
        href = page.get_attribute(link, "href") or ""
        assert href.startswith(proxy.url + "api/v1/"), href
        with page.expect_download() as info:
            page.click(link)
        body = Path(info.value.path()).read_bytes()
        assert start in body[:200], (link, body[:80])
        if link == "#download-speedscope":
            document = json.loads(body)
            validate(document, speedscope)
            assert "burn_alpha" in {frame["name"] for frame in document["shared"]["frames"]}


def test_daemon_errors_show_as_text(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=nope&window=1m")
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert "404" in message.inner_text() and "unknown target 'nope'" in message.inner_text()
    page.wait_for_function(
        """() => {
            const row = document.querySelector('#targets tr[data-target=broken]');
            return row && row.cells[1].textContent === 'error';
        }"""
    )
    broken = page.locator("#targets tr[data-target=broken] td")
    assert "dtrace not found" in broken.nth(7).inner_text()
    assert "note-error" in (broken.nth(7).get_attribute("class") or "")
    page.goto(proxy.url + "?target=burner&window=banana")
    page.wait_for_function("() => document.getElementById('message').textContent.includes('400')")
    assert "window" in message.inner_text() and "banana" in message.inner_text()
    shot(page, "17-daemon-error")


def test_the_targets_notes_wrap_at_800_pixels(browser: Any, proxy: Proxy) -> None:
    opened, made = new_tab(browser, viewport={"width": 800, "height": 900})
    page = open_page(made, proxy, "target=burner&window=1m")
    page.wait_for_function(
        "() => (document.querySelector('#targets tr[data-target=broken] td.note') || {})"
        ".textContent"
    )
    sizes = page.evaluate(
        """() => {
            const panel = document.getElementById('targets').closest('section');
            const note = document.querySelector('#targets tr[data-target=broken] td.note');
            const line = parseFloat(getComputedStyle(note).lineHeight);
            return {overflow: panel.scrollWidth - panel.clientWidth,
                    lines: note.clientHeight / line,
                    page: document.documentElement.scrollWidth - window.innerWidth};
        }"""
    )
    assert sizes["overflow"] <= 0 and sizes["page"] <= 0, sizes
    assert sizes["lines"] >= 1.8, sizes  # the long note wraps instead of widening the table
    shot(page, "18-narrow-800px", full=True)
    assert made.errors == []
    opened.close()


def test_a_wrong_token_is_reported(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner", token="not-the-token")
    page.locator("#token-form").wait_for(state="visible")
    assert "refused this bearer token" in page.inner_text("#token-reason")
    assert "refused" in page.inner_text("#status")
    assert page.locator("#graph canvas").count() == 0


def test_hostile_frame_names_stay_text_in_every_view(
    tab: Tab, proxy: Proxy, daemon: Daemon
) -> None:
    deliver(daemon.inbox, "ghost", HOSTILE_STACK)
    page = open_page(tab, proxy, "target=ghost&window=1h")
    wait_frame(page, HOSTILE)
    for view in ("icicle", "flame"):
        page.click(f"[data-view={view}]")
        for drawn in frames(page):
            page.mouse.move(*point_of(page, drawn))
        tip = page.locator("#graph .graph-tip")
        assert tip.is_visible() and page.locator("#graph .graph-tip img").count() == 0
    page.click("[data-view=table]")
    page.locator("#top tbody tr").first.wait_for()
    assert {HOSTILE, HOSTILE_SCRIPT} <= {row[0] for row in table_rows(page)}
    table_row(page, HOSTILE_SCRIPT).locator("button.sandwich").click()
    wait_frame(page, HOSTILE_SCRIPT, "#callees")
    assert page.inner_text("#sandwich-name") == HOSTILE_SCRIPT
    page.click("#compare")
    wait_query(page, "compare")
    page.wait_for_function(
        "() => document.getElementById('subtitle').textContent.includes('against')"
    )
    shot(page, "19-hostile-names")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img, iframe, object, embed").count() == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 2


def point_of(page: Any, drawn: dict[str, Any]) -> tuple[float, float]:
    box = canvas_box(page)
    return box["x"] + drawn["x"] + min(drawn["width"] / 2, 20), box["y"] + drawn["y"] + 5


def blue(color: str) -> bool:
    r, g, b = (int(part) for part in re.findall(r"\d+", color))
    return b > r + 40 and b > g + 40


def test_switching_to_off_cpu_and_hot_cold(tab: Tab, proxy: Proxy) -> None:
    """A target recorded off CPU too (real bpftrace) offers CPU, off-CPU and both; off-CPU
    frames are blue and counted in µs, and the choice is in the URL and every request."""
    if not can_trace_off_cpu():
        pytest.skip("bpftrace cannot trace here (see flamed check-config)")
    page = open_page(tab, proxy, "target=sleeper&window=5m")
    page.locator("#type-label").wait_for(state="visible")
    notes = page.locator("#targets tr[data-target=sleeper] td").last
    page.wait_for_function(
        "e => e.textContent.includes('off CPU with bpftrace')", arg=notes.element_handle()
    )
    offered = page.locator("#type option").all_inner_texts()
    assert offered == ["CPU", "off-CPU", "CPU + off-CPU"]
    page.select_option("#type", "offcpu")
    wait_query(page, "type")
    assert query_of(page)["type"] == "offcpu"
    wait_frame(page, "do_wait")
    wait_graph(page, " µs")
    frame = find(page, "do_wait")
    assert frame is not None and blue(frame["color"]), frame
    page.mouse.move(*point(page, "do_wait"))
    tip = page.locator("#graph .graph-tip")
    tip.wait_for(state="visible")
    assert re.match(r"total [\d,]+ µs \(", tip.locator("div").all_inner_texts()[1])
    assert any("api/v1/profile?" in u and "type=offcpu" in u for u in tab.requests)
    assert any("api/v1/timeline?" in u and "type=offcpu" in u for u in tab.requests)
    shot(page, "20-off-cpu")
    page.select_option("#type", "hotcold")
    page.wait_for_function("() => new URLSearchParams(location.search).get('type') === 'hotcold'")
    wait_frame(page, "do_wait_[o]")
    marked = find(page, "do_wait_[o]")
    assert marked is not None and blue(marked["color"]) and marked["label"] == "do_wait"
    hot = [f for f in frames(page) if not f["name"].endswith("_[o]") and f["name"] != "all"]
    assert all(not blue(f["color"]) for f in hot), hot[:3]
    shot(page, "21-hot-cold")
    page.select_option("#target", "burner")
    page.locator("#type-label").wait_for(state="hidden")
    wait_query(page, "type", present=False)
