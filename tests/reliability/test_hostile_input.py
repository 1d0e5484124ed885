"""Case 1 of issue 9: hostile frame names through the renderer and the daemon's page.

Frame names carrying ``</script>``, ``"onload=``, ``&``, ``]]>``, every control
byte 0x00-0x1F (ESC included), invalid UTF-8 and a 64 KiB name go through the
collapsers, the renderer, the daemon's API (fed through its inbox) and its web
page in real headless Chromium. Every payload that could run would bump the
global ``window.__pwned``; the count must stay 0 while the graph's own script
demonstrably ran. The SVG parses as strict XML (expat, and the browser's
DOMParser: no ``parsererror``), the page as strictly nested HTML, and the names
read back from the SVG and the folded text as they went in.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamed.collapse.dtrace import DTraceCollapser
from flamed.collapse.errors import InputError
from flamed.collapse.folded import decode, read_folded
from flamed.collapse.guess import GuessCollapser
from flamed.collapse.perf import PerfCollapser
from flamed.daemon.watch import gunzip
from flamed.render import RenderOptions, render_diff_folded, render_flamegraph
from flamed.render.svg import clean
from tests.reliability import Daemon, start_daemon, wait_until
from tests.render.svgread import SVG, frames

PWN = "window.__pwned=(window.__pwned||0)+1"
CONTROL = bytes(b for b in range(0x20) if b != 0x0A)  # 0x0A ends the folded line itself
BIG = 64 * 1024

HOSTILE: list[bytes] = [
    f"</script><script>{PWN}</script>".encode(),
    f'"onload="{PWN}" x="'.encode(),
    f"'onmouseover='{PWN}' y='".encode(),
    f'<img src=x onerror="{PWN}">'.encode(),
    f'<svg onload="{PWN}"><script>{PWN}</script></svg>'.encode(),
    b"amp& &amp &lt &#x3c &#0 &quot",  # a ";" would split the frame
    f"]]><script>{PWN}</script><![CDATA[".encode(),
    f"<!-- --><script>{PWN}</script><!--".encode(),
    f"javascript:{PWN}".encode(),
    b"ctl[" + CONTROL + b"]esc\x1b[31mred",
    b"bad\xff\xfe\xc3(\xed\xa0\x80utf8\xf0\x9f",
    b"A" * BIG + f"<script>{PWN}</script>".encode(),
]
TOKEN = "hostile-input-token"


def hostile_folded() -> bytes:
    lines = [b"main;" + name + b";leaf %d" % (index + 1) for index, name in enumerate(HOSTILE)]
    return b"\n".join(lines) + b"\n"


def readable(name: bytes) -> str:
    """How a name should read in the SVG: XML-forbidden characters dropped, bad bytes U+FFFD."""
    return clean(decode(name))


def assert_strict_svg(data: bytes) -> ET.Element:
    root = ET.fromstring(data)  # expat: raises on anything not well-formed
    scripts = list(root.iter(f"{SVG}script"))
    assert len(scripts) == 1, len(scripts)  # the renderer's own
    for element in root.iter():
        handlers = [key for key in element.attrib if key.lower().startswith("on")]
        assert handlers == [], (element.tag, handlers)
        assert element.tag.split("}")[-1] not in ("img", "iframe", "foreignObject", "a")
    return root


# -- the renderer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [RenderOptions(minwidth=0), RenderOptions(minwidth=0, inverted=True, reverse=True)],
)
def test_hostile_names_render_as_strict_xml_and_read_back(options: RenderOptions) -> None:
    profile = read_folded(hostile_folded())
    svg = render_flamegraph(profile, options).encode("utf-8")  # strict: no lone surrogates
    assert_strict_svg(svg)
    names = {frame.name for frame in frames(svg)}
    for name in HOSTILE:
        assert readable(name) in names, readable(name)[:80]
    assert any(len(name) >= BIG for name in names)
    for char in CONTROL.decode().replace("\t", ""):
        assert char not in svg.decode("utf-8")


def test_a_diff_of_hostile_names_is_strict_xml() -> None:
    before = read_folded(hostile_folded())
    after = read_folded(hostile_folded().replace(b"leaf 1\n", b"leaf 9\n"))
    svg = render_diff_folded(before, after, RenderOptions(minwidth=0)).encode("utf-8")
    assert_strict_svg(svg)


def perf_script(names: list[bytes]) -> bytes:
    """``perf script`` output whose symbols are the hostile names."""
    out = []
    for index, name in enumerate(names):
        out.append(b"prog 42 [000] %d.000: 1 cpu-clock:\n" % (index + 1))
        out.append(b"\t7f0000001000 " + name + b"+0x1 (/usr/lib/libx.so)\n")
        out.append(b"\t7f0000000000 main+0x2 (/usr/bin/prog)\n\n")
    return b"".join(out)


def dtrace_output(names: list[bytes]) -> bytes:
    runs = [
        b"  libx.so`" + name + b"+0x1\n  prog`main+0x2\n    %d\n" % (i + 1)
        for i, name in enumerate(names)
    ]
    return b"CPU     ID                    FUNCTION:NAME\n\n" + b"\n".join(runs)


@pytest.mark.parametrize("kind", ["perf", "dtrace", "guess"])
def test_hostile_symbols_through_the_collapsers_render_as_strict_xml(kind: str) -> None:
    names = [name for name in HOSTILE if b"\x00" not in name and b"\r" not in name]
    text = dtrace_output(names) if kind == "dtrace" else perf_script(names)
    collapser: Any = {"perf": PerfCollapser, "dtrace": DTraceCollapser, "guess": GuessCollapser}[
        kind
    ]()
    for offset in range(0, len(text), 4093):  # fed in pieces split anywhere
        collapser.feed(text[offset : offset + 4093])
    profile = collapser.finish()
    assert profile.total() == sum(range(1, len(names) + 1)) if kind == "dtrace" else len(names)
    svg = render_flamegraph(profile, RenderOptions(minwidth=0)).encode("utf-8")
    assert_strict_svg(svg)
    drawn = " ".join(frame.name for frame in frames(svg))
    # (perf's symbol tidying drops argument lists and quotes; markup must survive as text)
    assert "</script><script>" in drawn and "<img src=x" in drawn and "javascript:" in drawn


def test_inbox_gzip_is_unpacked_bounded() -> None:
    """The inbox's gunzip stops at its limit: a small gzip bomb cannot exhaust memory."""
    bomb = gzip.compress(b"a" * (64 << 20))
    assert len(bomb) < (1 << 20)
    assert gunzip(bomb, 1000) == b"a" * 1000


# -- the daemon and its page -----------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(tmp_path_factory.mktemp("hostile") / "run", token=TOKEN)
    running.deliver("ghost", hostile_folded())
    folded = "/api/v1/folded?target=ghost&window=1h"
    wait_until("profile ingested", lambda: b"javascript:" in running.get(folded)[1])
    yield running
    assert running.stop() == 0


def test_the_folded_api_returns_the_names_byte_for_byte(daemon: Daemon) -> None:
    status, body = daemon.get("/api/v1/folded?target=ghost&window=1h")
    assert status == 200
    for name in HOSTILE:
        assert b";" + name + b";leaf" in body, name[:60]


@pytest.mark.parametrize("path", ["/api/v1/flamegraph", "/api/v1/diff"])
def test_the_daemons_svg_is_strict_xml(daemon: Daemon, path: str) -> None:
    status, body = daemon.get(f"{path}?target=ghost&window=1h&minwidth=0")
    assert status == 200, body[:200]
    assert_strict_svg(body)
    if path.endswith("flamegraph"):
        names = {frame.name for frame in frames(body)}
        assert all(readable(name) in names for name in HOSTILE)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr"}


class StrictHTML(HTMLParser):
    """Fails on any tag closed out of order, left open, or closed without being opened."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(
                f"</{tag}> while {self.stack[-3:]} are open (line {self.getpos()[0]})"
            )
            return
        self.stack.pop()


def test_the_page_is_strictly_nested_html(daemon: Daemon) -> None:
    status, body = daemon.get("/?target=ghost&window=1h&title=</script><script>")
    assert status == 200
    parser = StrictHTML()
    parser.feed(body.decode("utf-8"))
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    assert parser.scripts == 2  # the page's own two
    assert b"</script><script>" not in body  # the query is never reflected


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Debian's chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


PAGE_STATE = """() => ({
    pwned: window.__pwned || 0,
    scripts: document.querySelectorAll('script').length,
    injected: document.querySelectorAll('img, iframe, object, embed, svg, foreignObject').length,
    handlers: [...document.querySelectorAll('body *')].filter(
        e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
})"""
TABLE_NAMES = "() => [...document.querySelectorAll('#top tbody tr')].map(r => r.cells[0].firstChild.textContent)"  # noqa: E501
TIP_NAMES = "() => document.querySelector('#graph .graph-tip .tip-name').textContent"


def shown_as(name: bytes) -> str:
    """How a name reads in the page: the JSON's text (bad bytes U+FFFD, nothing dropped)."""
    return name.decode("utf-8", "replace")


def hover_every_frame(page: Any, where: str) -> list[str]:
    """Hover each painted frame of the graph in ``where``; the tooltip names it reads."""
    box = page.locator(f"{where} canvas").bounding_box()
    drawn = page.evaluate(f"() => document.querySelector('{where}').flamedGraph.frames()")
    seen = []
    for frame in drawn:
        page.mouse.move(box["x"] + frame["x"] + 2, box["y"] + frame["y"] + frame["height"] / 2)
        seen.append(page.evaluate(TIP_NAMES.replace("#graph", where)))
    return seen


@pytest.mark.chromium
def test_chromium_runs_no_injected_script_in_the_page(daemon: Daemon, browser: Any) -> None:
    """Every view of the page (icicle, flame, top table, sandwich, compare, the timeline),
    every frame hovered: no payload runs, no element or handler is made from a name, and
    the names read back in the table and the tooltips as they went in."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.add_init_script(f"sessionStorage.setItem('flamed-token', {json.dumps(TOKEN)});")
    page.goto(daemon.url + "/?target=ghost&window=1h&fold=0")
    page.wait_for_function(
        "() => { const g = document.getElementById('graph').flamedGraph;"
        " return g && g.frames().length > 10; }"
    )
    expected = {shown_as(name) for name in HOSTILE}
    tips: set[str] = set()
    for view in ("icicle", "flame"):
        page.click(f"[data-view={view}]")
        tips.update(hover_every_frame(page, "#graph"))
    assert {name[:5000] for name in expected} <= {tip[:5000] for tip in tips}
    page.click("[data-view=table]")
    page.locator("#top tbody tr").first.wait_for()
    listed = set(page.evaluate(TABLE_NAMES))
    assert expected <= listed, sorted(n[:60] for n in expected - listed)
    for name in sorted(expected):  # each hostile function's sandwich
        page.click("[data-view=table]")
        page.locator("#top tbody tr").first.wait_for()
        index = page.evaluate(TABLE_NAMES).index(name)
        page.locator("#top tbody tr").nth(index).locator("button.sandwich").click()
        page.locator("#sandwich-view").wait_for(state="visible")
        assert page.evaluate("document.getElementById('sandwich-name').textContent") == name
        hover_every_frame(page, "#callers")
        hover_every_frame(page, "#callees")
    page.click("#compare")
    page.wait_for_function(
        "() => document.getElementById('subtitle').textContent.includes('against')"
    )
    page.click("[data-view=icicle]")
    hover_every_frame(page, "#graph")
    state = page.evaluate(PAGE_STATE)
    assert state == {"pwned": 0, "scripts": 2, "injected": 0, "handlers": 0}, state
    assert errors == [], errors
    context.close()
    print(f"\nFIGURE case1 page: scripts run by payloads=0 views=6 names={len(expected)}")


@pytest.mark.chromium
def test_chromium_runs_no_injected_script_in_the_standalone_svg(
    daemon: Daemon, browser: Any
) -> None:
    context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    response = page.goto(daemon.url + "/api/v1/flamegraph?target=ghost&window=1h&minwidth=0")
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    page.wait_for_function("() => document.documentElement.flamegraph !== undefined")
    for box in page.locator("g.fg-f").all()[:40]:
        box.hover(force=True)
    state = page.evaluate(
        """() => ({
            pwned: window.__pwned || 0,
            parseErrors: document.getElementsByTagName('parsererror').length,
            scripts: document.getElementsByTagName('script').length,
        })"""
    )
    assert state == {"pwned": 0, "parseErrors": 0, "scripts": 1}, state
    assert errors == [], errors
    context.close()


@pytest.mark.chromium
def test_the_payloads_would_be_counted_if_they_ran(browser: Any) -> None:
    """The control: the same payloads, unescaped in a page without a CSP, do bump the count."""
    page = browser.new_page()
    markup = "".join(name.decode("utf-8", "replace") for name in HOSTILE[:5])
    page.set_content(f"<!doctype html><body><svg>{markup}</svg><div>{markup}</div></body>")
    page.wait_for_function("() => (window.__pwned || 0) >= 3")
    assert page.evaluate("window.__pwned") >= 3
    page.close()


# -- every parser, fuzzed (case 2; the long run is tests/reliability/fuzz_parsers.py) -------

TOKENS = [b" ", b"  ", b"\t", b"\n", b"\n\n", b":", b";", b"(", b")", b"[", b"]", b"+0x1f", b"`"]
TOKENS += [b"0", b"42", b"99999999999999999999", b"1.5", b"-1", b"/", b"prog", b"main", b"\xff"]
TOKENS += [b"\x00", b"\x1b", b"\r", b"cpu-clock:", b"cycles:u:", b"[unknown]", b"[000]", b"=", b'"']
TOKENS += [b"[[targets]]", b"[server]", b"[storage]", b"name", b"all = true", b"listen", b"'"]
TOKENS += [b"bucket", b"retention", b"10s", b"window", b"&", b"now-", b"1e400", b"nan", b"inf"]
TOKENS += [b"\xe2\x80\xa8", b"\xed\xa0\x80", b"java", b"_[k]", b"->", b"libc.so.6", b"#"]
TOKENS += [b"    ", b"+ ", b"! ", b"(in ", b"Call graph:\n", b"Total number", b"@[", b"]: ", b", "]
TOKENS += [
    b"<row>",
    b"</row>",
    b'<backtrace id="1">',
    b'<frame ref="2"/>',
    b'"',
    b",",
    b"\xef\xbb\xbf",
]
TOKENS += [b"COST CENTRE MODULE SRC no. entries %time %alloc %time %alloc ticks bytes\n"]


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """A seed with a few random splices: stays close to the grammar, then breaks it."""

    def splice(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
        for at, cut, insert in edits:
            at %= len(data) + 1
            data = data[:at] + insert + data[at + cut :]
        return data

    edit = st.tuples(st.integers(0, 10_000), st.integers(0, 20), st.binary(max_size=12))
    return st.lists(edit, max_size=6).map(lambda edits: splice(seed, edits))


QUERY_KEYS = ["target", "window", "from", "until", "title", "colors", "width", "height"]
QUERY_KEYS += ["minwidth", "search", "reverse", "inverted", "baseline", "a_from", "a_until"]
QUERY_KEYS += ["b_from", "b_until", "x"]
UNITS = ["s", "s", "s", "", "m", "h", "d", "ms", "1h30m", "x"]


def query_values() -> st.SearchStrategy[str]:
    # times near the edges: now, 1970, year 1 and 9999, the 1e11 s limit, inf
    edges = st.sampled_from([1_700_000_001, 2 * 10**9, 7 * 10**10, 10**11 - 1, 10**11, 10**400])
    amount = st.one_of(edges, st.integers(0, 10**13))
    number = st.one_of(amount, st.integers(-(10**13), 0), st.floats(allow_nan=True)).map(str)
    relative = st.builds(lambda n, u: f"now-{n}{u}", amount, st.sampled_from(UNITS))
    duration = st.builds(lambda n, u: f"{n}{u}", amount, st.sampled_from(UNITS))
    return st.one_of(number, relative, duration, st.sampled_from(["now", "", "true", "%", "1%"]))


def queries() -> st.SearchStrategy[bytes]:
    pair = st.tuples(st.sampled_from(QUERY_KEYS), query_values())
    return st.lists(pair, max_size=6).map(
        lambda pairs: "&".join(f"{key}={value}" for key, value in pairs).encode()
    )


def inputs(name: str) -> st.SearchStrategy[bytes]:
    from tests.reliability.fuzz_parsers import SEEDS

    grammar = st.lists(st.sampled_from(TOKENS), max_size=120).map(b"".join)
    seeds = [mutated(seed) for seed in SEEDS[name]]
    if name == "query":
        return st.one_of(queries(), st.binary(max_size=600), grammar)
    return st.one_of(st.binary(max_size=600), grammar, *seeds)


@pytest.mark.parametrize(
    "name",
    [
        *("perf", "dtrace", "folded", "guess", "native", "config", "query"),
        *("recursive", "sample", "xctrace", "vtune", "vsprof", "ghcprof", "bpftrace"),
    ],
)
@settings(
    max_examples=int(os.environ.get("FLAMED_FUZZ_EXAMPLES", "500")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_exception_escapes_a_parser(name: str, data: st.DataObject) -> None:
    """Only documented user errors (FlamedError) may leave a parser; the result re-reads."""
    from tests.reliability.fuzz_parsers import fuzz_one

    text = data.draw(inputs(name), label="input")
    split = data.draw(st.integers(0, 255), label="split")
    fuzz_one(name, text, split)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "line",
    [
        b"prog 42 [000] 1.000: 1 cpu-clock:u::" + b"2" * 400 + b"bar(int)\n",  # was exponential
        b"prog 42 [000] 1.000:" + b" " * 200_000 + b"x\n",  # were quadratic: minutes each
        b"p " + b"1 " * 100_000 + b"\n",
        b"prog 42 [000] 1.000: 1 cpu-clock:\n\t" + b"a (" * 70_000 + b"\n",
    ],
    ids=["digits", "spaces", "ones", "parens"],
)
def test_perf_lines_built_to_backtrack_fold_in_linear_time(line: bytes) -> None:
    """Bounded by the timeout, not timed: the old patterns would not finish in hours."""
    collapser = PerfCollapser()
    collapser.feed(line + b"\n")
    collapser.finish()
    guessed = GuessCollapser()
    with contextlib.suppress(InputError):  # "cannot tell the input format" is fine
        guessed.feed(line + b"\n")
        guessed.finish()


@pytest.mark.chromium
def test_the_svg_policy_alone_stops_a_script_that_escaped_escaping(browser: Any) -> None:
    """The second wall: an SVG with an injected script, served with the daemon's policy."""
    from flamed.daemon.responses import svg_policy

    svg = render_flamegraph(read_folded(b"main;work 3\n"), RenderOptions())
    tampered = svg.replace("</svg>", f"<script>{PWN}</script><g onload='{PWN}'/></svg>")
    page = browser.new_page()
    url = "http://flamed.invalid/graph.svg"
    headers = {"Content-Type": "image/svg+xml", "Content-Security-Policy": svg_policy()}
    page.route(url, lambda route: route.fulfill(status=200, headers=headers, body=tampered))
    page.goto(url)
    page.wait_for_function("() => document.documentElement.flamegraph !== undefined")
    assert page.evaluate("window.__pwned || 0") == 0
    page.close()
    control = browser.new_page()  # without the policy the same document does run it
    control.route(
        url,
        lambda route: route.fulfill(
            status=200, headers=headers | {"Content-Security-Policy": ""}, body=tampered
        ),
    )
    control.goto(url)
    control.wait_for_function("() => (window.__pwned || 0) >= 1")
    control.close()


@pytest.mark.parametrize("data", [b"      L+\n2\n", b"  L\n  L+0x1\n 3\n", b"  a->L\n 1\n"])
def test_fuzzer_findings_stay_fixed(data: bytes) -> None:
    """Inputs atheris found (a DTrace frame that tidies to nothing wrote a bare count line)."""
    from tests.reliability.fuzz_parsers import fuzz_one

    for name in ("dtrace", "guess"):
        for split in (0, 3, 255):
            fuzz_one(name, data, split)


@pytest.mark.parametrize("escape", ["$uffffff$", "$u110000$", "$ud800$", "$udfff$"])
def test_a_rust_escape_of_no_character_is_kept_as_written(escape: str) -> None:
    """Found by atheris: ``$uffffff$`` in a symbol raised out of every collapser (chr())."""
    symbol = f"_$LT$core..fmt{escape}x$GT$::fmt::h0123456789abcdef"
    for data in (
        f"  prog`{symbol}+0x1\n  prog`main+0x2\n    3\n".encode(),
        f"prog 42 [000] 1.000: 1 cpu-clock:\n\t7f00 {symbol} (/bin/prog)\n\n".encode(),
    ):
        for name in ("dtrace", "perf", "guess"):
            from tests.reliability.fuzz_parsers import fuzz_one

            fuzz_one(name, data, 0)
        collapser = GuessCollapser()
        collapser.feed(data)
        stacks = collapser.finish().to_bytes()
        assert escape.encode() in stacks and b"<core::fmt" in stacks
