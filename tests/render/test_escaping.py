"""Names from profiled programs cannot break the SVG or run as script."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from flamed.collapse.folded import Folded
from flamed.render import RenderOptions, render_flamegraph
from flamed.render.svg import clean, xml_attr, xml_text
from tests.conftest import run_flamed
from tests.render.svgread import SVG, frames, parse_svg

HOSTILE = [
    "<script>alert(1)</script>",
    "</script><script>alert(2)</script>",
    'quote"d',
    "apo'strophe",
    "amp&ersand &#60 &quot",
    "cdata]]>end",
    "<!-- comment -->",
    "esc\x1b[31mred",
    "bell\x07and\x00nul",
    "<![CDATA[x]]>",
    "operator<<(std::ostream&, T const&)",
]


def hostile_profile() -> bytes:
    lines = [f"main;{name};leaf {index + 1}" for index, name in enumerate(HOSTILE)]
    text = "\n".join(lines).encode("utf-8") + b"\n"
    return text + b"main;bad\xff\xfebytes;x 3\n"  # not UTF-8


def scripts(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{SVG}script"))


@pytest.mark.parametrize("extra", [[], ["--reverse"], ["--inverted", "--pretty-xml"]])
def test_hostile_names_are_escaped_and_parse_as_strict_xml(extra: list[str]) -> None:
    result = run_flamed(
        "flamegraph",
        "--minwidth",
        "0",
        "--title",
        "<b>t&tle</b>\x1b",
        "--subtitle",
        "sub\"title'",
        "--notes",
        "notes -- with --> dashes-",
        "--countname",
        "<bytes>",
        "--nametype",
        'Fn"<',
        "--search",
        '"><script>',
        *extra,
        "-",
        stdin=hostile_profile(),
    )
    assert result.returncode == 0, result.stderr.decode()
    root = parse_svg(result.stdout)  # expat: raises on anything not well-formed
    assert len(scripts(root)) == 1  # only our own
    names = {frame.name for frame in frames(result.stdout)}
    for name in HOSTILE:
        assert clean(name) in names
    assert "bad\ufffd\ufffdbytes" in names
    titles = [text.text for text in root.iter(f"{SVG}text") if text.get("class") == "fg-title"]
    assert titles == ["<b>t&tle</b>"]
    assert root.get("data-search") == '"><script>'
    assert root.get("data-name-type") == 'Fn"<'


def test_no_control_characters_reach_the_output() -> None:
    svg = render_flamegraph(
        Folded({"a;\x1b\x01\x0b\x0c\ufffe;b": 2, "a;\ud8ff": 1}), RenderOptions(minwidth=0)
    )
    svg.encode("utf-8")  # lone surrogates are gone: strict encoding succeeds
    for char in "\x1b\x01\x0b\x0c\ufffe":
        assert char not in svg
    ET.fromstring(svg.encode("utf-8"))


def test_escape_helpers() -> None:
    assert xml_text("a<b>&c") == "a&lt;b&gt;&amp;c"
    assert xml_attr('"x"\n\t\'') == "&quot;x&quot;&#10;&#9;&#39;"
    assert clean("ok\x00\x1f\ud800\t\n") == "ok\ufffd\t\n"


def test_labels_are_cut_before_escaping() -> None:
    """A cut label never ends inside an entity: text is truncated first, then escaped."""
    name = "&" * 400
    svg = render_flamegraph(Folded({f"main;{name}": 10}), RenderOptions(width=300))
    drawn = {frame.name: frame for frame in frames(svg.encode())}
    label = drawn[name].label
    assert label.endswith("..") and set(label[:-2]) == {"&"}
