"""--nameattr: per-function frame attributes, as flamegraph.pl's (and inferno's) file gives them."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flamed.render import RenderOptions, render_flamegraph
from flamed.render.nameattr import FrameAttrs, parse_nameattr
from tests.conftest import run_flamed
from tests.render.svgread import SVG

ATTRS = (
    b"main\ttitle=the entry point\tclass=entry\tid=f-main\n"
    b'work\thref=https://example.com/work.c#L3\tg_extra=data-team="core" tabindex=0\n'
    b"evil\tg_extra=onclick=alert(1)\thref=javascript:alert(1)\tclass=x\n"
    b"no tab here\n"
)


def test_parse(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "flamed.render"):
        table = parse_nameattr(ATTRS)
    assert table["main"] == FrameAttrs("the entry point", (("id", "f-main"), ("class", "entry")))
    assert table["work"].link == (("href", "https://example.com/work.c#L3"), ("target", "_top"))
    assert table["work"].group == (("data-team", "core"), ("tabindex", "0"))
    assert table["evil"] == FrameAttrs(None, (("class", "x"),), ())
    assert "onclick" in caplog.text and "javascript link refused" in caplog.text
    assert "without a tab" in caplog.text


def groups(svg: bytes) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    found = {}
    for group in root.iter(f"{SVG}g"):
        if "fg-f" in (group.get("class") or "").split():
            found[group.get("data-name") or group.findtext(f"{SVG}title", "")] = group
    return found


def test_rendered_attributes() -> None:
    options = RenderOptions(minwidth=0, name_attrs=parse_nameattr(ATTRS))
    svg = render_flamegraph({"main;work;evil": 3, "main;other": 1}, options).encode()
    found = groups(svg)
    main = found["main"]
    assert main.get("class") == "fg-f entry" and main.get("id") == "f-main"
    assert main.findtext(f"{SVG}title") == "the entry point"
    assert found["work"].get("data-team") == "core"
    links = list(ET.fromstring(svg).iter(f"{SVG}a"))
    assert [link.get("href") for link in links] == ["https://example.com/work.c#L3"]
    assert links[0].get("target") == "_top" and links[0].find(f"{SVG}g") is not None
    assert b"onclick" not in svg and b"javascript:alert" not in svg


def test_cli(tmp_path: Path) -> None:
    table = tmp_path / "attrs.tsv"
    table.write_bytes(ATTRS)
    result = run_flamed("flamegraph", "--nameattr", str(table), stdin=b"main;work 2\n")
    assert result.returncode == 0, result.stderr
    assert groups(result.stdout)["main"].findtext(f"{SVG}title") == "the entry point"
    # Warnings as every other warning of flamed's, and -q silences them.
    assert b"flamed: WARNING: nameattr: line without a tab" in result.stderr, result.stderr
    quiet = run_flamed("-q", "flamegraph", "--nameattr", str(table), stdin=b"main;work 2\n")
    assert quiet.returncode == 0 and quiet.stderr == b"", quiet.stderr
    missing = run_flamed("flamegraph", "--nameattr", str(tmp_path / "absent"), stdin=b"a 1\n")
    assert missing.returncode == 1 and missing.stderr.count(b"\n") == 1
