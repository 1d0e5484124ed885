"""The interactive SVG in real headless Chromium: hover, click to zoom, search, URL state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flamed.collapse.folded import Folded
from flamed.render import RenderOptions, render_flamegraph

pytestmark = pytest.mark.chromium

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROFILE = Folded(
    {
        "main;work;java/Foo:.bar": 40,
        "main;work;java/Foo:.baz": 20,
        "main;work;compute": 15,
        "main;idle": 20,
        "other;java/Zed": 5,
    }
)
FULL = 1180.0  # 1200 pixels less 10 each side


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on loopback serving tmp_path; yields its base URL."""
    (tmp_path / "graph.svg").write_text(render_flamegraph(PROFILE), "utf-8")
    svg = render_flamegraph(PROFILE, RenderOptions(title="Embedded"))
    body = svg.split("?>", 1)[1]
    (tmp_path / "page.html").write_text(
        f"<!doctype html><html><body><h1>Page</h1>{body}</body></html>", "utf-8"
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            tab = browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            yield tab
            assert not errors, errors
        finally:
            browser.close()


def frame(page: Any, name: str) -> Any:
    return page.locator("g.fg-f", has=page.locator(f"title:text-matches('^{name} \\\\(')"))


def rect_width(page: Any, name: str) -> float:
    return float(frame(page, name).locator("rect").get_attribute("width"))


def classes(page: Any, name: str) -> str:
    return frame(page, name).get_attribute("class") or ""


def test_click_zooms_and_the_url_keeps_the_view(page: Any, served: str) -> None:
    page.goto(f"{served}/graph.svg")
    assert rect_width(page, "work") == pytest.approx(FULL * 75 / 100, abs=0.1)
    frame(page, "work").locator("rect").hover()
    details = page.locator(".fg-details").text_content()
    assert details == "Function: work (75 samples, 75.00%)"

    frame(page, "work").locator("rect").click()
    assert rect_width(page, "work") == pytest.approx(FULL, abs=0.1)
    assert rect_width(page, "java/Foo:.bar") == pytest.approx(FULL * 40 / 75, abs=0.1)
    assert frame(page, "java/Foo:.bar").locator("text").text_content() == "java/Foo:.bar"
    for ancestor in ("main", "all"):
        assert "fg-parent" in classes(page, ancestor)
        assert rect_width(page, ancestor) == pytest.approx(FULL, abs=0.1)
    for outside in ("idle", "other", "java/Zed"):
        assert "fg-hide" in classes(page, outside)
        assert not frame(page, outside).is_visible()
    assert page.locator(".fg-unzoom").is_visible()
    assert "x=20" in page.url and "y=2" in page.url

    page.goto(page.url)  # a link reproduces the view
    assert page.evaluate("document.querySelector('svg').flamegraph.view().zoomed") == [20, 2]
    assert rect_width(page, "work") == pytest.approx(FULL, abs=0.1)

    page.locator(".fg-unzoom").click()
    assert rect_width(page, "work") == pytest.approx(FULL * 75 / 100, abs=0.1)
    assert "fg-parent" not in classes(page, "main") and frame(page, "idle").is_visible()
    assert "x=" not in page.url


def test_search_highlights_and_reports_the_matched_share(page: Any, served: str) -> None:
    page.goto(f"{served}/graph.svg")
    page.once("dialog", lambda dialog: dialog.accept("^java/"))
    page.locator(".fg-search").click()
    for name in ("java/Foo:.bar", "java/Foo:.baz", "java/Zed"):
        assert "fg-match" in classes(page, name)
        fill = frame(page, name).locator("rect").evaluate("r => getComputedStyle(r).fill")
        assert fill == "rgb(230, 0, 230)"
    assert "fg-match" not in classes(page, "work")
    assert page.locator(".fg-matched").text_content() == "Matched: 65.0%"
    assert "s=%5Ejava%2F" in page.url

    frame(page, "work").locator("rect").click()  # zoomed: share of the zoomed frame
    assert page.locator(".fg-matched").text_content() == "Matched: 80.0%"

    page.locator(".fg-search").click()  # "Reset Search"
    assert "fg-match" not in classes(page, "java/Zed")
    assert "s=" not in page.url


def test_ctrl_f_and_ignore_case(page: Any, served: str) -> None:
    page.goto(f"{served}/graph.svg")
    page.once("dialog", lambda dialog: dialog.accept("^JAVA/FOO"))
    page.keyboard.press("Control+f")
    assert "fg-match" not in classes(page, "java/Foo:.bar")
    page.locator(".fg-ignorecase").click()
    assert "fg-match" in classes(page, "java/Foo:.bar")
    assert "fg-match" not in classes(page, "java/Zed")
    assert page.locator(".fg-matched").text_content() == "Matched: 60.0%"
    assert "i=1" in page.url


def test_works_inlined_in_a_page(page: Any, served: str) -> None:
    page.goto(f"{served}/page.html?s=idle")
    assert "fg-match" in classes(page, "idle")
    frame(page, "main").locator("rect").click()
    assert rect_width(page, "main") == pytest.approx(FULL, abs=0.1)
    assert "fg-hide" in classes(page, "other")


def test_search_option_highlights_on_open(page: Any, served: str, tmp_path: Path) -> None:
    """The daemon's `search` query parameter: highlighted as soon as the graph opens."""
    svg = render_flamegraph(PROFILE, RenderOptions(search="^(idle|compute)$", inverted=True))
    (tmp_path / "searched.svg").write_text(svg, "utf-8")
    page.goto(f"{served}/searched.svg")
    assert "fg-match" in classes(page, "idle") and "fg-match" in classes(page, "compute")
    assert page.locator(".fg-matched").text_content() == "Matched: 35.0%"
    frame(page, "work").locator("rect").click()  # icicle: zoom works the same way up
    assert rect_width(page, "compute") == pytest.approx(FULL * 15 / 75, abs=0.1)
    assert "fg-parent" in classes(page, "main")


def test_fluid_width_follows_the_window(page: Any, served: str, tmp_path: Path) -> None:
    """Without --width the graph fills the window and is laid out again when it changes."""
    svg = render_flamegraph(PROFILE, RenderOptions(fluid=True, ui_color="#336699"))
    (tmp_path / "fluid.svg").write_text(svg, "utf-8")
    page.set_viewport_size({"width": 800, "height": 600})
    page.goto(f"{served}/fluid.svg")
    assert rect_width(page, "main") == pytest.approx((800 - 20) * 95 / 100, abs=0.2)
    page.set_viewport_size({"width": 1000, "height": 600})
    page.wait_for_function(
        "() => document.querySelector('.fg-background').width.baseVal.value == 1000"
    )
    assert rect_width(page, "main") == pytest.approx((1000 - 20) * 95 / 100, abs=0.2)
    frame(page, "work").locator("rect").click()
    assert rect_width(page, "work") == pytest.approx(980, abs=0.2)
    fill = page.evaluate("getComputedStyle(document.querySelector('.fg-title')).fill")
    assert fill == "rgb(51, 102, 153)"


def test_left_truncation_and_custom_titles_keep_search(
    page: Any, served: str, tmp_path: Path
) -> None:
    from flamed.render.nameattr import parse_nameattr

    profile = {"root;a_very_long_function_name_here": 2, "root;work": 60, "other": 60}
    options = RenderOptions(
        truncate="left", name_attrs=parse_nameattr(b"work\ttitle=the work loop\n")
    )
    (tmp_path / "left.svg").write_text(render_flamegraph(profile, options), "utf-8")
    page.goto(f"{served}/left.svg?s=^work$")
    work = page.locator("g.fg-f[data-name='work']")
    assert "fg-match" in (work.get_attribute("class") or "")  # found by name, not title
    assert page.locator(".fg-matched").text_content() == "Matched: 49.2%"
    long_name = frame(page, "a_very_long_function_name_here").locator("text")
    assert long_name.text_content() == ""  # too narrow at first
    frame(page, "root").locator("rect").click()  # zoomed: the script fits it again
    assert long_name.text_content() == "..ere"


def test_the_search_controls_show_when_the_pointer_is_on_the_graph(page: Any, served: str) -> None:
    """At 10 % opacity "Search" and "ic" were hard to find: they show while the pointer is
    anywhere on the graph, fully on themselves (transitions off: read at once)."""
    page.goto(f"{served}/graph.svg")

    def opacity(selector: str) -> float:
        return float(page.locator(selector).evaluate("e => getComputedStyle(e).opacity"))

    page.mouse.move(1, 1)  # on the background, not on a frame or a control
    assert opacity(".fg-search") >= 0.7 and opacity(".fg-ignorecase") >= 0.7
    page.locator(".fg-search").hover()
    assert opacity(".fg-search") == 1.0
