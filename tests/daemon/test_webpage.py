"""The web page at the HTTP level: served, assets typed and cached, nothing reflected."""

from __future__ import annotations

import gzip
import re
import subprocess
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from flamed.daemon import webpage

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
ASSETS = Path(__file__).resolve().parents[2] / "daemon" / "assets"


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    app = web.Application()
    webpage.add_page_routes(app)
    return await aiohttp_client(app)


def shipped(name: str) -> bytes:
    """What ``static/NAME`` must serve: the file, or for page.js its parts joined in order."""
    if name == "page.js":
        return b"\n".join((ASSETS / part).read_bytes() for part in webpage.SCRIPT_PARTS)
    return (ASSETS / name).read_bytes()


def nonce_of(response_csp: str) -> str:
    match = re.search(r"script-src 'nonce-([A-Za-z0-9_-]+)'", response_csp)
    assert match, response_csp
    return match.group(1)


async def test_the_page_is_served_with_a_fresh_nonce(client: Client) -> None:
    first = await client.get("/")
    assert first.status == 200 and first.content_type == "text/html"
    assert first.headers["Cache-Control"] == "no-store"
    body = await first.text()
    nonce = nonce_of(first.headers["Content-Security-Policy"])
    assert body.count(f'nonce="{nonce}"') == 2  # the path fix-up and page.js
    assert "{{" not in body and "}}" not in body
    second = await client.get("/")
    assert nonce_of(second.headers["Content-Security-Policy"]) != nonce


async def test_the_page_uses_only_relative_urls(client: Client) -> None:
    body = await (await client.get("/")).text()
    links = re.findall(r'(?:src|href)="([^"]*)"', body)
    assert "static/page.js?v=" in " ".join(links)
    for link in links:
        assert not link.startswith(("/", "http:", "https:", "//")), link


async def test_the_query_is_never_reflected(client: Client) -> None:
    hostile = "<script>alert(1)</script>"
    plain = await (await client.get("/")).text()
    response = await client.get("/", params={"target": hostile, "window": '"><img src=x>'})
    body = await response.text()
    assert "alert(1)" not in body and "<img" not in body
    nonce = nonce_of(response.headers["Content-Security-Policy"])
    plain_nonce = re.search(r'nonce="([^"]+)"', plain)
    assert plain_nonce is not None
    assert body == plain.replace(plain_nonce.group(1), nonce)


@pytest.mark.parametrize(
    ("name", "content_type"), [("page.js", "text/javascript"), ("page.css", "text/css")]
)
async def test_assets_are_typed_and_revalidated(
    client: Client, name: str, content_type: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status == 200
    assert response.content_type == content_type and response.charset == "utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert await response.read() == shipped(name)
    etag = response.headers["ETag"]
    again = await client.get(f"/static/{name}", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    stale = await client.get(f"/static/{name}", headers={"If-None-Match": '"0"'})
    assert stale.status == 200
    packed = await client.get(
        f"/static/{name}", headers={"Accept-Encoding": "gzip, br"}, auto_decompress=False
    )
    assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["Vary"]
    assert gzip.decompress(await packed.read()) == shipped(name)
    plain = await client.get(
        f"/static/{name}", headers={"Accept-Encoding": "identity"}, auto_decompress=False
    )
    assert "Content-Encoding" not in plain.headers and await plain.read() == shipped(name)


async def test_only_the_page_paths_are_served(client: Client) -> None:
    for path in ("/static/index.html", "/static/../webpage.py", "/static/", "/static/x.js"):
        assert (await client.get(path)).status == 404, path
    routes = {
        resource.canonical for resource in client.app.router.resources() if resource.canonical
    }
    assert routes == set(webpage.PAGE_PATHS)


def test_the_page_version_follows_the_assets() -> None:
    text = webpage.page_template()
    version = "".join(webpage.asset(name).etag.strip('"') for name in sorted(webpage.CONTENT_TYPES))
    assert f"?v={version}" in text and version


SOURCES = ("index.html", "page.css", *webpage.SCRIPT_PARTS)


def test_assets_ship_in_the_package() -> None:
    folder = resources.files("flamed.daemon").joinpath("assets")
    shipped_names = {item.name for item in folder.iterdir()}
    assert set(SOURCES) <= shipped_names
    for name in SOURCES:
        assert folder.joinpath(name).read_bytes() == (ASSETS / name).read_bytes()
    assert webpage.read_asset("page.js") == shipped("page.js")


def test_nothing_is_fetched_from_elsewhere() -> None:
    for name in SOURCES:
        text = (ASSETS / name).read_text("utf-8")
        assert not re.search(r"https?://|@import|url\(|import\(|importScripts", text), name


def test_every_element_the_script_uses_exists() -> None:
    script = shipped("page.js").decode("utf-8")
    html = (ASSETS / "index.html").read_text("utf-8")
    ids = set(re.findall(r'\$\("([a-z-]+)"\)', script))
    assert len(ids) > 40
    missing = [name for name in sorted(ids) if f'id="{name}"' not in html]
    assert missing == []


def test_names_reach_the_page_as_text_only() -> None:
    """No part writes markup: names go in with textContent, on canvases with fillText."""
    for name in webpage.SCRIPT_PARTS:
        text = (ASSETS / name).read_text("utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (name, sink)


@pytest.mark.parametrize("name", [*webpage.SCRIPT_PARTS, "page.js"])
def test_the_script_parses(name: str, tmp_path: Path) -> None:
    node = next((p for p in ("/usr/bin/node", "/usr/bin/nodejs") if Path(p).exists()), None)
    if node is None:
        pytest.skip("node is not installed (the Chromium tests run the script anyway)")
    path = tmp_path / name
    path.write_bytes(shipped(name))
    result = subprocess.run([node, "--check", str(path)], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
