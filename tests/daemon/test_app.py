"""The HTTP contract, with fake sessions and a fake clock (pytest-aiohttp)."""

from __future__ import annotations

import asyncio
import gzip
import random
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from flamed.daemon import renders
from flamed.daemon.app import RESPONDER, SERVICE, create_app
from flamed.daemon.config import Config
from tests.daemon.conftest import T0, FakeClock, FakeFactory, make_config, wait_for
from tests.daemon.test_export import MakeServer, receiving
from tests.render.pprofread import decode_protobuf

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


async def start(
    aiohttp_client: MakeClient, config: Config, factory: FakeFactory, clock: FakeClock
) -> Client:
    app = create_app(
        config, session_factory=factory, clock=clock, registry=CollectorRegistry(), watch=False
    )
    client = await aiohttp_client(app)
    await wait_for(lambda: factory.running(*(spec.name for spec in config.targets)))
    await wait_for(lambda: not app[SERVICE].loading)
    return client


@pytest.fixture
async def client(
    aiohttp_client: MakeClient, tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> Client:
    client = await start(aiohttp_client, make_config(tmp_path), factory, clock)
    session = factory.latest("a")
    session.emit(T0 - 130, T0 - 120, "main;old 4\n")
    session.emit(T0 - 20, T0 - 10, "main;work;hot 6\nmain;idle 1\n")
    session.emit(T0 - 10, T0, "main;work;hot 2\nmain;work;cold 1\n")
    return client


async def test_health_and_readiness(client: Client, factory: FakeFactory) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.text()) == "ready\n"
    factory.latest("b").status.state = "error"
    not_ready = await client.get("/readyz")
    assert not_ready.status == 503 and "b" in await not_ready.text()


async def test_targets(client: Client, factory: FakeFactory) -> None:
    factory.latest("a").status.samples_lost = 3
    factory.latest("a").status.samples_late = 2
    response = await client.get("/api/v1/targets")
    assert response.status == 200
    body = await response.json()
    assert [t["name"] for t in body] == ["a", "b"]
    a, b = body
    assert a["state"] == "running" and a["pids"] == [101, 102]
    assert a["spec"] == {"all": True, "frequency": 99, "call_graph": "fp", "backend": "auto"}
    assert b["spec"]["process"] == "^b$"
    assert (a["backend"], a["event"], a["last_error"]) == ("fake", "cpu-clock", None)
    assert (a["oldest"], a["newest"]) == (T0 - 130, T0)
    assert a["samples_last_minute"] == 10
    assert b["oldest"] is None and b["samples_last_minute"] == 0
    assert (a["samples_lost"], a["samples_late"]) == (3, 2)
    assert (b["samples_lost"], b["samples_late"]) == (0, 0)


async def test_the_last_error_shows_its_time_and_whether_it_is_past(
    client: Client, factory: FakeFactory
) -> None:
    status = factory.latest("a").status
    status.error("perf script exited 255: no such file", when=T0 - 30)
    (a, _) = await (await client.get("/api/v1/targets")).json()
    assert a["last_error"] == "perf script exited 255: no such file"
    assert (a["last_error_time"], a["last_error_past"]) == (T0 - 30, False)
    status.sampled(T0 - 20)  # a whole bucket since: the error is history
    (a, _) = await (await client.get("/api/v1/targets")).json()
    assert (a["last_error"], a["last_error_past"]) == ("perf script exited 255: no such file", True)


async def test_folded_merges_the_window(client: Client) -> None:
    response = await client.get("/api/v1/folded", params={"target": "a", "window": "1m"})
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "main;idle 1\nmain;work;cold 1\nmain;work;hot 8\n"
    everything = await client.get("/api/v1/folded?target=a&window=1h")
    assert "main;old 4\n" in await everything.text()
    recent = await client.get(f"/api/v1/folded?target=a&from={T0 - 5}&until=now")
    assert await recent.text() == "main;work;cold 1\nmain;work;hot 2\n"
    relative = await client.get("/api/v1/folded?target=a&from=now-15s&until=now-12s")
    assert await relative.text() == "main;idle 1\nmain;work;hot 6\n"


PY_STACKS = (
    "python3;_start;py::main:app.py;_PyEval_EvalFrameDefault;PyObject_Vectorcall;"
    "py::work:app.py;sorted 5\n"
    "python3;_start;py::main:app.py;_PyEval_EvalFrameDefault;_PyFunction_Vectorcall;"
    "py::work:app.py;sorted 2\n"
    "python3;_start;py::main:app.py;_PyEval_EvalFrameDefault 1\n"
)


async def test_python_1_asks_for_the_python_view(client: Client, factory: FakeFactory) -> None:
    """Stored as perf gave them; ``python=1`` names Python frames and drops the interpreter's
    frames between them, on every profile endpoint (each its own cached answer)."""
    factory.latest("b").emit(T0 - 20, T0 - 10, PY_STACKS)
    query = {"target": "b", "window": "1m"}
    stored = await (await client.get("/api/v1/folded", params=query)).text()
    assert stored == "".join(sorted(PY_STACKS.splitlines(keepends=True)))
    viewed = await client.get("/api/v1/folded", params={**query, "python": "1"})
    assert await viewed.text() == (
        "python3;_start;main (app.py);_PyEval_EvalFrameDefault 1\n"
        "python3;_start;main (app.py);work (app.py);sorted 7\n"
    )
    svg = await (await client.get("/api/v1/flamegraph", params={**query, "python": "1"})).text()
    assert "work (app.py)" in svg and "PyObject_Vectorcall" not in svg
    profile = await (await client.get("/api/v1/profile", params={**query, "python": "1"})).read()
    assert b"work (app.py)" in profile and b"py::work" not in profile
    bad = await client.get("/api/v1/folded", params={**query, "python": "yes"})
    assert bad.status == 400 and "python: expected 0 or 1" in await bad.text()


async def test_quick_endpoints_use_the_first_target_and_last_minute(client: Client) -> None:
    folded = await client.get("/folded.txt")
    assert await folded.text() == "main;idle 1\nmain;work;cold 1\nmain;work;hot 8\n"
    svg = await client.get("/flamegraph.svg")
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
    text = await svg.text()
    assert text.startswith("<?xml") and "hot" in text and "a: last 1m" in text


async def test_flamegraph_options_and_default_title(client: Client) -> None:
    response = await client.get("/api/v1/flamegraph?target=a&window=5m")
    assert response.status == 200
    text = await response.text()
    assert "a: last 5m" in text and "work" in text and "cold" in text
    titled = await client.get("/api/v1/flamegraph?target=a&title=Mine&inverted=1&width=800")
    text = await titled.text()
    assert "Mine" in text and 'width="800"' in text


async def test_diff_against_the_previous_window(client: Client) -> None:
    response = await client.get("/api/v1/diff?target=a&window=10s&baseline=previous")
    assert response.status == 200 and response.content_type == "image/svg+xml"
    assert "cold" in await response.text()
    explicit = await client.get(
        "/api/v1/diff",
        params={
            "target": "a",
            "a_from": T0 - 20,
            "a_until": T0 - 10,
            "b_from": T0 - 10,
            "b_until": T0,
        },
    )
    assert explicit.status == 200


BAD = [
    "/api/v1/folded?target=a&window=abc",
    "/api/v1/folded?target=a&window=0s",
    "/api/v1/folded?target=a&window=1m&from=now-5m",
    "/api/v1/folded?target=a&from=now&until=now-1m",
    "/api/v1/folded?target=a&from=yesterday",
    "/api/v1/folded?target=a&until=1e300",
    "/api/v1/folded?window=1m",
    "/api/v1/flamegraph?target=a&width=wide",
    "/api/v1/flamegraph?target=a&minwidth=-",
    "/api/v1/flamegraph?target=a&colors=nosuch",
    "/api/v1/flamegraph?target=a&reverse=maybe",
    "/api/v1/diff?target=a&a_from=1",
    "/api/v1/diff?target=a&baseline=tomorrow",
    "/flamegraph.svg?window=%00",
]


BAD += [
    "/api/v1/folded?target=a&window=",  # empty: not the default window
    "/api/v1/folded?target=a&until=",
    "/api/v1/flamegraph?target=a&window=1m&window=5m",  # which one?
    "/api/v1/diff?target=a&window=1m&a_from=1&a_until=2&b_from=2&b_until=3",
    "/api/v1/diff?target=a&from=now-1m&a_from=1&a_until=2&b_from=2&b_until=3",
    "/api/v1/diff?target=a&baseline=previous&a_from=1&a_until=2&b_from=2&b_until=3",
    "/api/v1/flamegraph?target=a&fontsize=big",
    "/api/v1/flamegraph?target=a&factor=inf",
    "/api/v1/flamegraph?target=a&search=(",
]


@pytest.mark.parametrize("path", BAD)
async def test_bad_parameters_are_400_with_one_line(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 400, await response.text()
    text = await response.text()
    assert text.endswith("\n") and text.count("\n") == 1 and len(text) > 5


async def test_a_range_error_names_the_parameter_the_user_wrote(client: Client) -> None:
    query = "target=a&a_from=abc&a_until=1&b_from=1&b_until=2"
    response = await client.get(f"/api/v1/diff?{query}")
    assert (await response.text()).startswith("a_from: 'abc' is not"), await response.text()
    response = await client.get("/api/v1/diff?target=a&a_from=5&a_until=1&b_from=1&b_until=2")
    assert (await response.text()).startswith("a_from must be before a_until")


UNKNOWN = [
    ("/api/v1/flamegraph?target=a&colour=red", "colors"),
    ("/api/v1/flamegraph?target=a&no-javascript=1", "nojavascript"),
    ("/flamegraph.svg?fonttyp=x", "fonttype"),
    ("/api/v1/diff?target=a&window=1m&titel=x", "title"),
    ("/api/v1/folded?target=a&title=x", "window"),  # folded text takes no render options
    ("/folded.txt?colors=hot", "until"),
    ("/api/v1/pprof?target=a&width=9", "from"),
    ("/api/v1/folded?target=a&typ=offcpu", "type"),
]


@pytest.mark.parametrize(("path", "listed"), UNKNOWN)
async def test_unknown_parameters_are_refused_with_the_accepted_names(
    client: Client, path: str, listed: str
) -> None:
    """They were ignored silently: a typo (`colour=`) gave the default graph."""
    response = await client.get(path)
    text = await response.text()
    assert response.status == 400 and text.count("\n") == 1, text
    assert text.startswith("unknown parameter") and listed in text.split("accepted:")[1], text


async def test_the_render_options_that_make_sense_over_http(client: Client) -> None:
    base = "/api/v1/flamegraph?target=a&window=1m"
    plain = await (await client.get(base)).text()
    assert "font-size: 12px" in plain and "Verdana" in plain and "<script" in plain
    assert "main (10 samples, 100.00%)" in plain
    query = "&fontsize=20&fonttype=Courier&fontwidth=0.7&notes=hello&searchcolor=%2300ff00"
    styled = await (await client.get(base + query)).text()
    assert "font-size: 20px" in styled and "Courier" in styled and "<!-- NOTES: hello -->" in styled
    assert "#00ff00" in styled
    scaled = await (await client.get(base + "&factor=2&total=40")).text()
    assert "main (20 samples, 25.00%)" in scaled
    based = await (await client.get(base + "&base=work")).text()
    assert "work (" in based and "idle" not in based
    static = await (await client.get(base + "&nojavascript=1")).text()
    assert "<script" not in static and "main (" in static


@pytest.mark.parametrize(
    "path",
    ["/api/v1/folded?target=nope", "/api/v1/flamegraph?target=nope", "/api/v1/diff?target=x"],
)
async def test_unknown_target_is_404(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert "unknown target" in await response.text()


async def test_etag_gives_304_until_a_bucket_arrives(client: Client, factory: FakeFactory) -> None:
    first = await client.get("/api/v1/flamegraph?target=a&window=5m")
    etag = first.headers["ETag"]
    again = await client.get(
        "/api/v1/flamegraph?target=a&window=5m", headers={"If-None-Match": etag}
    )
    assert again.status == 304
    other = await client.get(
        "/api/v1/flamegraph?target=a&window=5m&title=x", headers={"If-None-Match": etag}
    )
    assert other.status == 200
    factory.latest("a").emit(T0, T0 + 10, "main;new 1\n")
    changed = await client.get(
        "/api/v1/flamegraph?target=a&window=5m", headers={"If-None-Match": etag}
    )
    assert changed.status == 200 and changed.headers["ETag"] != etag


async def test_gzip_when_accepted(client: Client) -> None:
    plain = await client.get(
        "/api/v1/folded?target=a&window=1h",
        headers={"Accept-Encoding": "identity"},
        auto_decompress=False,
    )
    assert "Content-Encoding" not in plain.headers
    packed = await client.get(
        "/api/v1/folded?target=a&window=1h",
        headers={"Accept-Encoding": "gzip"},
        auto_decompress=False,
    )
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await packed.read()) == await plain.read()


async def test_renders_beyond_the_limit_get_503(client: Client) -> None:
    limiter = client.app[RESPONDER].limiter
    limiter.active = limiter.limit
    response = await client.get("/api/v1/flamegraph?target=a&window=7m")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert (await client.get("/healthz")).status == 200
    limiter.active = 0


async def test_a_slow_render_does_not_stall_the_server(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, entered = threading.Event(), threading.Event()
    real = renders.render_flamegraph

    def slow(folded, options):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(30)
        return real(folded, options)

    monkeypatch.setattr(renders, "render_flamegraph", slow)
    pending = asyncio.ensure_future(client.get("/api/v1/flamegraph?target=a&window=9m"))
    await wait_for(entered.is_set)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200
    assert not pending.done()
    release.set()
    assert (await pending).status == 200


async def test_bearer_token(
    aiohttp_client: MakeClient, tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = make_config(tmp_path, server=f"token_file = {str(token)!r}")
    client = await start(aiohttp_client, config, factory, clock)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/")).status == 200  # the page holds no data; it asks for the token
    refused = await client.get("/api/v1/targets")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer s3cre"})
    assert wrong.status == 401
    right = await client.get("/api/v1/targets", headers={"Authorization": "Bearer s3cret"})
    assert right.status == 200


async def test_web_page_is_served(client: Client) -> None:
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "static/page.js" in await page.text()
    assert (await client.get("/static/page.js")).status == 200


async def test_empty_window_still_renders(client: Client) -> None:
    response = await client.get("/api/v1/flamegraph?target=b")
    assert response.status == 200
    folded = await client.get("/api/v1/folded?target=b")
    assert folded.status == 200 and await folded.text() == ""


async def test_concurrent_requests_for_one_graph_render_it_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, calls = threading.Event(), []
    real = renders.render_flamegraph

    def counted(folded, options):  # type: ignore[no-untyped-def]
        calls.append(1)
        release.wait(30)
        return real(folded, options)

    monkeypatch.setattr(renders, "render_flamegraph", counted)
    url = "/api/v1/flamegraph?target=a&window=11m"
    pending = [asyncio.ensure_future(client.get(url)) for _ in range(5)]
    await wait_for(lambda: len(calls) == 1)
    await asyncio.sleep(0.2)
    release.set()
    responses = await asyncio.gather(*pending)
    assert [r.status for r in responses] == [200] * 5 and len(calls) == 1
    bodies = {await r.read() for r in responses}
    assert len(bodies) == 1


FUZZ_KEYS = ["target", "window", "from", "until", "title", "colors", "width", "minwidth", "search"]
FUZZ_KEYS += ["reverse", "inverted", "baseline", "a_from", "a_until", "b_from", "b_until", "height"]
FUZZ_VALUES = ["", "a", "b", "5m", "now-1m", "now", "-1", "0", "1e400", "nan", "inf", "%", "\x00"]
FUZZ_VALUES += ["9" * 40, "1h30m", "1.5", "true", "yes", "<svg>", "'\"", "../../etc", "é", " "]


async def test_no_input_gets_a_500(client: Client) -> None:
    """Random parameter soup on every GET route: 200, 304, 400, 404 or 503, never 500."""
    rng = random.Random(20261125)
    paths = ["/api/v1/folded", "/api/v1/flamegraph", "/api/v1/diff", "/api/v1/pprof"]
    paths += ["/folded.txt", "/flamegraph.svg", "/api/v1/targets", "/metrics", "/readyz"]
    for _ in range(300):
        params = {rng.choice(FUZZ_KEYS): rng.choice(FUZZ_VALUES) for _ in range(rng.randint(0, 5))}
        path = rng.choice(paths)
        response = await client.get(path, params=params)
        assert response.status in (200, 400, 404, 503), (path, params, await response.text())
        if response.status == 400:
            assert (await response.text()).count("\n") == 1


async def test_a_removed_targets_history_is_served_on_every_route(
    aiohttp_client: MakeClient, tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> None:
    """Its windows stay until the retention, so its graphs must too (pprof answered 500)."""
    client = await start(aiohttp_client, make_config(tmp_path), factory, clock)
    factory.latest("b").emit(T0 - 20, T0 - 10, "b;work 7\n")
    service = client.app[SERVICE]
    await wait_for(lambda: "b" in service.windows and service.windows["b"].buckets)
    await service.apply(make_config(tmp_path, '[[targets]]\nname = "a"\nall = true\n'))
    assert "b" not in service.targets
    for path in ("/api/v1/folded", "/api/v1/flamegraph", "/api/v1/pprof"):
        response = await client.get(path, params={"target": "b", "window": "5m"})
        assert response.status == 200, (path, await response.text())


async def test_daemon_pushes_buckets_and_serves_pprof(
    aiohttp_server: MakeServer,
    aiohttp_client: Callable[[web.Application], Awaitable[Any]],
    pb: ModuleType,
    tmp_path: Path,
) -> None:
    stand_in, exporters = await receiving(aiohttp_server, pb, "pyroscope")
    targets = '[[targets]]\nname = "a"\nall = true\nfrequency = 250\n' + exporters
    config = make_config(tmp_path, targets=targets)
    factory, clock, registry = FakeFactory(), FakeClock(T0), CollectorRegistry()
    app = create_app(
        config, session_factory=factory, clock=clock, registry=registry, watch=False,
        persist=False,
    )  # fmt: skip
    client = await aiohttp_client(app)
    await wait_for(lambda: factory.running("a"))
    factory.latest("a").emit(T0 - 10, T0, "main;work 5\nmain;idle 1\n")
    await wait_for(lambda: len(stand_in.received) == 1)
    [got] = stand_in.received
    assert got.folded == {"main;work": 5, "main;idle": 1}
    assert got.labels["target"] == "a" and got.time_nanos == int((T0 - 10) * 1e9)
    assert stand_in.violations == []

    response = await client.get(
        "/api/v1/pprof", params={"target": "a", "window": "5m"},
        headers={"Accept-Encoding": "gzip"}, auto_decompress=False,
    )  # fmt: skip
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in response.headers
    profile = decode_protobuf(pb, await response.read())
    assert profile.folded() == {"main;work": 5, "main;idle": 1}
    assert profile.period == 4_000_000
    assert (await client.get("/api/v1/pprof", params={"target": "zzz"})).status == 404
    assert (await client.get("/api/v1/pprof", params={"target": "a", "window": "x"})).status == 400
    success = {"exporter": "pyroscope", "result": "success"}
    assert registry.get_sample_value("flamed_export_pushes_total", success) == 1
