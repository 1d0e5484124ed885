"""The web page in real headless Chromium against a real daemon profiling a real workload.

``flamed run`` samples a small C program (two named functions, frame pointers)
with perf, 2 s buckets, a bearer token and an inbox. The browser reaches it
through a reverse proxy that maps ``/flamed/`` onto the daemon's root, so every
check also proves the page works under a path prefix. Until ``daemon/app.py``
routes ``/`` to :mod:`flamed.daemon.webpage`, the proxy serves the page's three
paths itself (from the same handlers) and forwards everything else.

Screenshots go to ``tests/artifacts/webpage/``.
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
HOSTILE_STACK = f"main;{HOSTILE};</svg><script>window.__pwned=2</script> 5\n"


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


@dataclass(frozen=True)
class Daemon:
    url: str
    inbox: Path
    ghost_pid: int
    burner_pid: int


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, workload: int) -> Iterator[Daemon]:
    need(shutil.which("perf"), "perf")
    folder = tmp_path_factory.mktemp("daemon")
    (folder / "token").write_text(TOKEN + "\n")
    inbox = folder / "inbox"
    inbox.mkdir()
    port, ghost = free_port(), unused_pid()
    config = folder / "flamed.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\ntoken_file = "{folder / "token"}"\n'
        f'[storage]\nstate_dir = "{folder / "state"}"\nbucket = "2s"\nretention = "1h"\n'
        f'inbox = "{inbox}"\n'
        f'[[targets]]\nname = "burner"\npids = [{workload}]\n'
        f'[[targets]]\nname = "ghost"\npids = [{ghost}]\n'
        f'[[targets]]\nname = "broken"\npids = [{workload}]\nbackend = "dtrace"\n'
    )
    log = (folder / "daemon.log").open("wb")
    command = [sys.executable, "-m", "flamed.daemon.cli", "run", "--config", str(config)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("daemon answers", lambda: get(url + "/healthz")[0] == 200)
        folded = url + "/api/v1/folded?target=burner&window=5m"
        wait_until("burn_alpha sampled", lambda: b"burn_alpha" in get(folded)[1])
        yield Daemon(url, inbox, ghost, workload)
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


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda msg: errors.append(msg.text) if "Security Policy" in msg.text else 0)
    page.on("request", lambda request: requests.append(request.url))
    yield Tab(page, errors, requests)
    context.close()
    assert errors == [], errors


def open_page(tab: Tab, proxy: Proxy, query: str = "", token: str | None = TOKEN) -> Any:
    page = tab.page
    if token is not None:
        page.add_init_script(f"sessionStorage.setItem('flamed-token', {json.dumps(token)});")
    page.goto(proxy.url + (f"?{query}" if query else ""))
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_graph(page: Any, title_part: str = "") -> None:
    """Until an interactive graph (its script ran) whose title contains ``title_part``."""
    page.wait_for_function(
        """part => {
            const svg = document.querySelector('#graph svg.flamegraph');
            const title = svg && svg.querySelector('.fg-title');
            return svg && svg.flamegraph && title && title.textContent.includes(part);
        }""",
        arg=title_part,
    )


def frame_titles(page: Any) -> list[str]:
    titles: list[str] = page.eval_on_selector_all(
        "#graph g.fg-f > title", "nodes => nodes.map(n => n.textContent)"
    )
    return titles


def frame(page: Any, name: str) -> Any:
    """The first frame group whose name is ``name``."""
    return (
        page.locator("#graph g.fg-f")
        .filter(has=page.locator(f"xpath=./*[local-name()='title'][starts-with(., '{name} (')]"))
        .first
    )


def classes(locator: Any) -> list[str]:
    return str(locator.get_attribute("class") or "").split()


def drawable_width(page: Any) -> float:
    """The graph's width in pixels less its two margins (a zoomed frame fills it)."""
    width = page.get_attribute("#graph svg", "width")
    xpad = page.get_attribute("#graph svg", "data-xpad")
    return float(width or 0) - 2 * float(xpad or 0)


def query_of(page: Any) -> dict[str, str]:
    params: dict[str, str] = page.evaluate(
        "Object.fromEntries(new URLSearchParams(location.search))"
    )
    return params


def wait_new_graph(page: Any) -> None:
    """Until the page installs a newer SVG than the one shown now."""
    before = int(page.get_attribute("#graph", "data-generation"))
    page.wait_for_function(
        "n => parseInt(document.getElementById('graph').dataset.generation, 10) > n", arg=before
    )


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
    page.wait_for_function("() => document.querySelector('#graph svg.flamegraph') !== null")
    cells = burner.locator("td").all_inner_texts()
    assert cells[0] == "burner" and cells[1] == "running"
    assert str(daemon.burner_pid) in cells[2]
    assert cells[3] == "cpu-clock" and float(cells[4]) > 0
    ghost = page.locator("#targets tr[data-target=ghost]").locator("td").all_inner_texts()
    assert ghost[1] == "waiting" and "no matching process" in ghost[7]
    assert form.is_hidden() and query_of(page)["target"] == "burner"
    assert page.evaluate("sessionStorage.getItem('flamed-token')") == TOKEN
    shot(page, "02-targets")


def test_flame_graph_of_the_workload_under_the_prefix(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_graph(page, "burner: last 1m")
    names = {title.rsplit(" (", 1)[0] for title in frame_titles(page)}
    assert {"all", "main", "burn_alpha", "burn_beta"} <= names
    assert page.locator("#targets tr.chosen").get_attribute("data-target") == "burner"
    shot(page, "03-flamegraph")
    ours = [url for url in tab.requests if not url.startswith(("data:", "blob:"))]
    assert ours and all(url.startswith(proxy.url) for url in ours), ours
    assert any("/flamed/api/v1/flamegraph?" in url for url in ours)


def test_the_prefix_without_its_slash_is_fixed_up(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy)
    page.goto(proxy.url.rstrip("/") + "?target=burner&window=1m")
    wait_graph(page, "burner: last 1m")
    assert page.url.startswith(proxy.url + "?target=burner")


def test_a_click_zooms_and_reset_unzooms(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_graph(page)
    alpha, beta = frame(page, "burn_alpha"), frame(page, "burn_beta")
    full = drawable_width(page)
    assert float(alpha.locator("rect").get_attribute("width")) < full - 1
    alpha.click()
    assert "fg-hide" in classes(beta)
    assert float(alpha.locator("rect").get_attribute("width")) >= full - 1
    assert "fg-parent" in classes(frame(page, "main"))
    assert {"x", "y"} <= set(query_of(page))
    shot(page, "04-zoomed")
    page.click("#reset-zoom")
    assert "fg-hide" not in classes(beta)
    assert not {"x", "y"} & set(query_of(page))


def test_search_highlights_from_the_page_and_from_the_graph(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_graph(page)
    page.fill("#search", "burn_b")
    page.press("#search", "Enter")
    assert "fg-match" in classes(frame(page, "burn_beta"))
    assert "fg-match" not in classes(frame(page, "burn_alpha"))
    matched = page.text_content("#graph .fg-matched") or ""
    assert re.fullmatch(r"Matched: \d+(\.\d)?%", matched), matched
    assert query_of(page)["s"] == "burn_b"
    shot(page, "05-search")
    page.click("#graph .fg-search")  # the graph's own button: "Reset Search"
    assert "fg-match" not in classes(frame(page, "burn_beta"))
    page.once("dialog", lambda dialog: dialog.accept("ALPHA"))
    page.check("#ignore-case")
    page.click("#graph .fg-search")
    assert "fg-match" in classes(frame(page, "burn_alpha"))
    assert page.input_value("#search") == "ALPHA" and query_of(page)["i"] == "1"


def test_auto_refresh_keeps_zoom_and_search(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_graph(page)
    frame(page, "burn_alpha").click()
    page.fill("#search", "alpha")
    page.press("#search", "Enter")
    old = page.evaluate_handle("document.querySelector('#graph svg')")
    wait_new_graph(page)
    assert page.evaluate("old => !old.isConnected", old)
    alpha = frame(page, "burn_alpha")
    full = drawable_width(page)
    assert float(alpha.locator("rect").get_attribute("width")) >= full - 1
    assert "fg-hide" in classes(frame(page, "burn_beta"))
    assert "fg-match" in classes(alpha)
    assert page.input_value("#search") == "alpha"
    prompts: list[str] = []

    def answer(dialog: Any) -> None:
        prompts.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", answer)
    page.keyboard.press("Control+f")
    page.evaluate("0")  # runs only after every keydown listener has returned
    assert len(prompts) == 1, prompts  # the replaced graph no longer listens
    shot(page, "06-refreshed")


def test_switching_the_window_and_a_custom_range(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_graph(page, "last 1m")
    page.click("[data-window='5m']")
    wait_graph(page, "burner: last 5m")
    assert query_of(page)["window"] == "5m"
    assert page.get_attribute("[data-window='5m']", "aria-pressed") == "true"
    page.click("[data-window=custom]")
    page.locator("#custom").wait_for(state="visible")
    wait_graph(page, " UTC to ")
    params = query_of(page)
    assert "window" not in params and float(params["until"]) > float(params["from"])
    assert "burn_alpha" in " ".join(frame_titles(page))
    shot(page, "07-custom-range")


def test_comparison_view_previous_window_and_two_ranges(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=1m")
    wait_graph(page)
    page.click("[data-view=diff]")
    wait_graph(page, "against the 1m before")
    assert page.locator("#legend").is_visible()
    assert "red, more (it grew)" in page.inner_text("#legend")
    fills = page.eval_on_selector_all(
        "#graph g.fg-f > rect", "rs => rs.map(r => r.getAttribute('fill'))"
    )
    assert all(re.fullmatch(r"rgb\(\d+,\d+,\d+\)", fill) for fill in fills), fills[:5]
    assert query_of(page)["view"] == "diff"
    shot(page, "08-compare-previous")
    page.select_option("#baseline", "ranges")
    wait_graph(page, " UTC against ")
    assert page.locator("#range-a").is_visible()
    params = query_of(page)
    assert params["baseline"] == "ranges" and float(params["a_until"]) > float(params["a_from"])
    assert "/flamed/api/v1/folded?" in (page.get_attribute("#download-baseline", "href") or "")
    shot(page, "09-compare-ranges")


def test_downloads_send_the_token(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner&window=5m")
    wait_graph(page)
    for link, expected in (("#download-svg", b"<?xml"), ("#download-folded", b"main;burn_")):
        href = page.get_attribute(link, "href") or ""
        assert href.startswith(proxy.url + "api/v1/"), href
        with page.expect_download() as info:
            page.click(link)
        body = Path(info.value.path()).read_bytes()
        assert expected in body and b"burn_alpha" in body


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
    assert "note-error" in classes(broken.nth(7))
    page.goto(proxy.url + "?target=burner&window=banana")
    page.wait_for_function("() => document.getElementById('message').textContent.includes('400')")
    assert "window" in message.inner_text() and "banana" in message.inner_text()
    shot(page, "10-daemon-error")


def test_a_wrong_token_is_reported(tab: Tab, proxy: Proxy) -> None:
    page = open_page(tab, proxy, "target=burner", token="not-the-token")
    page.locator("#token-form").wait_for(state="visible")
    assert "refused this bearer token" in page.inner_text("#token-reason")
    assert "refused" in page.inner_text("#status")
    assert page.locator("#graph svg").count() == 0
    shot(page, "11-wrong-token")


def test_hostile_frame_names_stay_text(tab: Tab, proxy: Proxy, daemon: Daemon) -> None:
    staged = daemon.inbox / "ghost.folded.tmp"
    staged.write_text(HOSTILE_STACK)
    staged.rename(daemon.inbox / "ghost.folded")
    page = open_page(tab, proxy, "target=ghost&window=1h")
    page.wait_for_function(
        "part => [...document.querySelectorAll('#graph g.fg-f > title')]"
        ".some(t => t.textContent.startsWith(part))",
        arg=HOSTILE,
    )
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#graph img").count() == 0
    assert any(title.startswith("</svg><script>") for title in frame_titles(page))
    shot(page, "12-hostile-names")
