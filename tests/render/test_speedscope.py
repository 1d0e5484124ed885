"""speedscope export, checked by speedscope itself: its published schema and its importer.

The npm package ``speedscope`` ships the file-format schema
(``dist/release/file-format-schema.json``) and the application; it is
installed once into pytest's cache (the tests skip, saying why, where npm or
its registry cannot be reached; CI installs npm). The importer runs in real
headless Chromium the way speedscope's own command line opens a file
(``index.html#localProfilePath=`` a script that hands it the file), and its
sandwich table must list every function with the self and total samples the
folded input gives.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from flamed.collapse.folded import Count, Folded, decode
from flamed.render.speedscope import SCHEMA, speedscope_json
from tests.npm import npm_package

SPEEDSCOPE_VERSION = "1.25.0"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

HOSTILE = "</script><img src=x onerror=window.__pwned=1>"
FOLDED = Folded(
    {
        "main;parse;lex": 3,
        "main;parse;read": 7,
        "main;render": 120,
        "main": 1,
        "main;render;render": 4,  # recursion: render's total counts each stack once
        f"main;{HOSTILE}": 2,
        "main;" + decode(b"bad\xffbyte"): 5,
    }
)


def speedscope_release(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """speedscope's ``dist/release`` folder, installed once into pytest's cache."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("speedscope") if cache is not None else None
    package = npm_package(
        folder or tmp_path_factory.mktemp("speedscope"), "speedscope", SPEEDSCOPE_VERSION
    )
    return package / "dist" / "release"


@pytest.fixture(scope="session")
def release(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speedscope_release(request, tmp_path_factory)


def validate(document: dict[str, Any], release: Path) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is a speedscope file."""
    schema = json.loads((release / "file-format-schema.json").read_text("utf-8"))
    jsonschema.validate(document, schema)


def samples_of(document: dict[str, Any]) -> dict[str, Count]:
    """The file read back as folded stacks."""
    frames = [frame["name"] for frame in document["shared"]["frames"]]
    (profile,) = document["profiles"]
    stacks: dict[str, Count] = {}
    for sample, weight in zip(profile["samples"], profile["weights"], strict=True):
        stack = ";".join(frames[index] for index in sample)
        stacks[stack] = stacks.get(stack, 0) + weight
    return stacks


def function_counts(folded: Folded) -> dict[str, tuple[Count, Count]]:
    """``name -> (total, self)``: a function counts once per stack however often it recurs."""
    counts: dict[str, list[Count]] = {}
    for stack, count in folded.items():
        frames = stack.split(";")
        for name in set(frames):
            counts.setdefault(name, [0, 0])[0] += count
        counts[frames[-1]][1] += count
    return {name: (total, own) for name, (total, own) in counts.items()}


def test_the_stacks_read_back() -> None:
    document = json.loads(speedscope_json(FOLDED, "web: last 5m"))
    expected = {stack.replace("\udcff", "\ufffd"): count for stack, count in FOLDED.items()}
    assert samples_of(document) == expected
    assert document["$schema"] == SCHEMA and document["name"] == "web: last 5m"
    (profile,) = document["profiles"]
    assert (profile["type"], profile["unit"]) == ("sampled", "none")
    assert (profile["startValue"], profile["endValue"]) == (0, FOLDED.total())
    names = [frame["name"] for frame in document["shared"]["frames"]]
    assert len(names) == len(set(names))


def test_an_empty_profile_is_still_a_file() -> None:
    document = json.loads(speedscope_json(Folded(), "nothing"))
    assert document["profiles"][0]["samples"] == [] and document["shared"]["frames"] == []


def test_the_file_matches_speedscopes_schema(release: Path) -> None:
    for folded in (FOLDED, Folded(), Folded({"a": 0.5, "a;b": 2})):
        document = json.loads(speedscope_json(folded, "profile"))
        validate(document, release)
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        validate({**document, "profiles": [{"type": "sampled"}]}, release)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Debian's chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_in_speedscope(browser: Any, release: Path, data: bytes, folder: Path) -> Any:
    """speedscope's page with ``data`` loaded as its command line does; waits for the import."""
    loader = folder / "load.js"
    name, encoded = (
        json.dumps("profile.speedscope.json"),
        json.dumps(base64.b64encode(data).decode()),
    )
    loader.write_text(f"speedscope.loadFileFromBase64({name}, {encoded});\n")
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.set_default_timeout(30_000)
    logs: list[str] = []
    page.on("console", lambda message: logs.append(message.text))
    page.goto(f"{(release / 'index.html').as_uri()}#localProfilePath={loader}")
    page.wait_for_function("() => document.title.endsWith(' - speedscope')")
    assert "Importing as speedscope json file" in logs, logs
    return page


@pytest.mark.chromium
def test_speedscope_opens_it_with_the_same_counts(
    browser: Any, release: Path, tmp_path: Path
) -> None:
    page = open_in_speedscope(browser, release, speedscope_json(FOLDED, "web: last 5m"), tmp_path)
    assert page.title() == "web: last 5m - speedscope"
    page.get_by_text("Sandwich").click()
    page.get_by_text("Symbol Name").wait_for()
    page.locator("td").first.wait_for()
    cells = page.locator("td").all_inner_texts()
    shown = {
        name: (int(total.split()[0]), int(own.split()[0]))
        for total, own, name in zip(cells[0::3], cells[1::3], cells[2::3], strict=True)
    }
    expected = {
        name.replace("\udcff", "\ufffd"): pair for name, pair in function_counts(FOLDED).items()
    }
    assert shown == expected
    assert page.evaluate("window.__pwned") is None
    page.close()
