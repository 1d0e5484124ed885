"""The endpoints the web page reads (issue 15): the JSON call tree, the timeline, speedscope.

Fake sessions and a fake clock, as in ``test_app.py``; the page itself is
driven in Chromium by ``test_webpage_chromium.py``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from flamed.daemon.app import RESPONDER
from flamed.daemon.store import Window
from tests.daemon.conftest import T0, FakeClock, FakeFactory, make_config
from tests.daemon.test_app import Client, MakeClient, start
from tests.render.test_jsonprofile import stacks_of
from tests.render.test_speedscope import samples_of


@pytest.fixture
async def client(
    aiohttp_client: MakeClient, tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> Client:
    client = await start(aiohttp_client, make_config(tmp_path), factory, clock)
    session = factory.latest("a")
    session.emit(T0 - 130, T0 - 120, "main;old 4\n")
    session.emit(T0 - 20, T0 - 10, "main;work;hot 6\nmain;idle 1\n", samples=7)
    session.emit(T0 - 10, T0, "main;work;hot 2\nmain;work;cold 1\n")
    return client


async def test_the_profile_is_the_ranges_call_tree(client: Client) -> None:
    response = await client.get("/api/v1/profile?target=a&window=1m")
    assert response.status == 200 and response.content_type == "application/json"
    document = await response.json()
    assert stacks_of(document) == {"main;idle": 1, "main;work;cold": 1, "main;work;hot": 8}
    assert document["target"] == "a" and document["type"] == "cpu"
    assert (document["start"], document["end"]) == (T0 - 20, T0)
    assert (document["samples"], document["total"], document["frequency"]) == (10, 10, 99)
    everything = await (await client.get(f"/api/v1/profile?target=a&from={T0 - 200}")).json()
    assert stacks_of(everything)["main;old"] == 4


async def test_the_profile_is_gzipped_and_revalidated(
    client: Client, factory: FakeFactory, clock: FakeClock
) -> None:
    url = "/api/v1/profile?target=a&window=5m"
    packed = await client.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert packed.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(await packed.read())
    assert json.loads(body)["total"] == 14
    etag = packed.headers["ETag"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status == 304
    factory.latest("a").emit(T0, T0 + 10, "main;new 1\n")
    clock.advance(10)
    changed = await client.get(url, headers={"If-None-Match": etag})
    assert changed.status == 200 and (await changed.json())["total"] == 15


async def test_an_empty_range_is_an_empty_tree(client: Client) -> None:
    document = await (await client.get("/api/v1/profile?target=b")).json()
    assert document["tree"]["name"] == [] and document["start"] is None


async def test_the_timeline_counts_samples_per_bucket(client: Client) -> None:
    response = await client.get("/api/v1/timeline?target=a&window=5m")
    assert response.status == 200 and response.content_type == "application/json"
    body = await response.json()
    assert body == {
        "target": "a",
        "type": "cpu",
        "buckets": [[T0 - 130, T0 - 120, 4], [T0 - 20, T0 - 10, 7], [T0 - 10, T0, 3]],
    }
    narrow = await (await client.get(f"/api/v1/timeline?target=a&from={T0 - 15}")).json()
    assert narrow["buckets"] == [[T0 - 20, T0 - 10, 7], [T0 - 10, T0, 3]]


async def test_the_timeline_never_merges_stacks(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the timeline merged stacks")

    monkeypatch.setattr(Window, "merge", refuse)
    response = await client.get("/api/v1/timeline?target=a&window=24h")
    assert response.status == 200 and len((await response.json())["buckets"]) == 3


async def test_the_timeline_answers_while_every_render_slot_is_taken(client: Client) -> None:
    limiter = client.app[RESPONDER].limiter
    limiter.active = limiter.limit
    try:
        assert (await client.get("/api/v1/profile?target=a&window=3m")).status == 503
        timeline = await client.get("/api/v1/timeline?target=a&window=3m")
        assert timeline.status == 200
        etag = timeline.headers["ETag"]
        again = await client.get(
            "/api/v1/timeline?target=a&window=3m", headers={"If-None-Match": etag}
        )
        assert again.status == 304
    finally:
        limiter.active = 0


async def test_speedscope_of_a_range(client: Client) -> None:
    response = await client.get("/api/v1/speedscope?target=a&window=1m")
    assert response.status == 200 and response.content_type == "application/json"
    document = await response.json()
    assert samples_of(document) == {"main;idle": 1, "main;work;cold": 1, "main;work;hot": 8}
    assert document["name"].startswith("a 2023-11-14 22:13:00 UTC to ")
    assert document["exporter"].startswith("flamed ")


BAD = [
    "/api/v1/profile?window=1m",
    "/api/v1/profile?target=a&window=soon",
    "/api/v1/timeline?target=a&from=now&until=now-1m",
    "/api/v1/timeline",
    "/api/v1/speedscope?target=a&window=1m&from=now-5m",
]


@pytest.mark.parametrize("path", BAD)
async def test_bad_parameters_are_400_with_one_line(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 400, await response.text()
    text = await response.text()
    assert text.endswith("\n") and text.count("\n") == 1


@pytest.mark.parametrize("endpoint", ["profile", "timeline", "speedscope"])
async def test_an_unknown_target_is_404(client: Client, endpoint: str) -> None:
    response = await client.get(f"/api/v1/{endpoint}?target=nope")
    assert response.status == 404 and "unknown target" in await response.text()
