"""The flame graph options added for FlameGraph and inferno users (issue 18), through
`flamed flamegraph` and the daemon's query parameters. Golden files: tests/data/flamegraph."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flamed.collapse.errors import UsageError
from flamed.render import RenderOptions, options_from_query, render_flamegraph
from flamed.render.layout import chain_stack
from flamed.render.svg import fit_label
from tests.conftest import DATA, run_flamed
from tests.render.svgread import frames

FOLDER = DATA / "flamegraph"


def drawn(*args: str, stdin: bytes | None = None) -> bytes:
    result = run_flamed("flamegraph", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def hue(fill: str) -> str:
    r, g, b = (int(part) for part in re.findall(r"\d+", fill))
    if (r, g, b) in ((160, 160, 160), (200, 200, 200)):
        return "grey"
    if r == g and 80 <= r < 140 and 205 <= b < 255:
        return "blue"
    if g == b and 50 <= r < 110 and 165 <= g < 220:
        return "aqua"
    return "other"


def test_chain_marks_wakers_as_flamegraph_pl_does() -> None:
    svg = drawn("--colors", "chain", "--minwidth", "0", str(FOLDER / "chain.folded"))
    got = sorted(f"{frame.title}\t{hue(frame.fill)}\n" for frame in frames(svg))
    assert "".join(got) == (FOLDER / "chain.chain.hues").read_text()
    assert 'stop-color="#e0e0ff"' in svg.decode()  # the blue background, as there


@pytest.mark.parametrize(
    ("stack", "chained"),
    [
        ("a;b;--;w1;w2", "a;b;--;w1_[w];w2_[w]"),
        ("a;--;w;--;v", "a;--;w_[w];--;v_[w]"),
        ("a;b", "a;b;--"),  # as flamegraph.pl: a stack without a waker gets `--` on top
    ],
)
def test_chain_stack(stack: str, chained: str) -> None:
    assert chain_stack(stack) == chained


def test_colordiffusion_fills_as_inferno() -> None:
    svg = drawn("--colordiffusion", "--minwidth", "0", str(FOLDER / "unsorted.folded"))
    got = sorted(f"{frame.title}\t{frame.fill}\n" for frame in frames(svg))
    assert "".join(got) == (FOLDER / "unsorted.colordiffusion.fills").read_text()


def test_random_colours_differ_between_runs_and_stay_in_the_palette() -> None:
    profile = {"a;b;c": 3, "a;c;b": 2, "d": 1}
    fills = set()
    for _ in range(3):
        svg = render_flamegraph(profile, RenderOptions(random=True, minwidth=0))
        shown = [frame.fill for frame in frames(svg.encode())]
        fills.add(tuple(shown))
        for fill in shown:  # hot: r 205-254, g 0-229, b 0-54
            r, g, b = (int(part) for part in re.findall(r"\d+", fill))
            assert 205 <= r < 255 and 0 <= g < 230 and 0 <= b < 55
    assert len(fills) > 1


def test_no_sort_merges_in_input_order() -> None:
    path = str(FOLDER / "unsorted.folded")
    plain = {(f.depth, f.start, f.name) for f in frames(drawn("--minwidth", "0", path))}
    kept = [(f.depth, f.start, f.name) for f in frames(drawn("--no-sort", "--minwidth", "0", path))]
    assert (1, 0.0, "main") in kept and (3, 0.0, "lex") in kept and (3, 12.0, "lex") in kept
    assert sorted(plain) != sorted(kept)
    text = Path(path).read_bytes().splitlines()
    sorted_input = b"\n".join(sorted(text)) + b"\n"
    assert drawn("--no-sort", stdin=sorted_input) == drawn(stdin=sorted_input)


def test_ui_and_stroke_colours() -> None:
    svg = drawn("--uicolor", "#336699", "--stroke-color", "#102030", stdin=b"a;b 1\n").decode()
    assert ".fg-title, .flamegraph .fg-details" in svg and "fill: #336699;" in svg
    assert ".fg-f > rect { stroke: #102030; stroke-width: 1; }" in svg
    assert "stroke-width: 1;" not in drawn(stdin=b"a;b 1\n").decode()


@pytest.mark.parametrize(
    "args",
    [["--uicolor", "red"], ["--stroke-color", "url(x)"], ["--encoding", "utf-16"]],
    ids=lambda args: args[0],
)
def test_bad_values_are_one_line_errors(args: list[str]) -> None:
    result = run_flamed("flamegraph", *args, stdin=b"a 1\n")
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().count("\n") == 1


def test_truncation_end() -> None:
    assert fit_label("abcdefghij", 6 * 7, 7) == "abcd.."
    assert fit_label("abcdefghij", 6 * 7, 7, "left") == "..ghij"
    stdin = b"a_rather_long_function_name 30\nx 70\n"
    for flag in ("--truncate-text-right", "--truncate-text-left"):
        svg = drawn(flag, "--width", "300", stdin=stdin)
        label = {frame.name: frame.label for frame in frames(svg)}["a_rather_long_function_name"]
        if flag.endswith("right"):
            assert label.startswith("a_") and label.endswith("..")
        else:
            assert label.startswith("..") and label.endswith("me")
        assert (b'data-truncate="left"' in svg) == flag.endswith("left")


def test_fluid_unless_a_width_is_given() -> None:
    assert ET.fromstring(drawn(stdin=b"a 1\n")).get("data-fluid") == "1"
    fixed = ET.fromstring(drawn("--width", "900", stdin=b"a 1\n"))
    assert fixed.get("data-fluid") is None and fixed.get("width") == "900"


def test_encoding_is_declared_and_bytes_pass_through() -> None:
    svg = drawn("--encoding", "ISO-8859-1", stdin=b"caf\xe9;cr\xe8me 2\n")
    assert svg.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"')
    assert b"caf\xe9" in svg and b"cr\xe8me" in svg
    names = {frame.name for frame in frames(svg)}  # expat decodes as declared
    assert {"café", "crème"} <= names
    assert ET.fromstring(svg) is not None


def test_query_parameters() -> None:
    options = options_from_query(
        {
            "colordiffusion": "1",
            "uicolor": "#ffffff",
            "strokecolor": "rgb(1,2,3)",
            "fluid": "true",
            "truncate": "left",
            "colors": "chain",
        }
    )
    assert options.color_diffusion and options.fluid and options.truncate == "left"
    assert (options.ui_color, options.stroke_color, options.colors) == (
        "#ffffff",
        "rgb(1,2,3)",
        "chain",
    )
    with pytest.raises(UsageError):
        options_from_query({"uicolor": "#fff;}</style>"})
    with pytest.raises(UsageError):
        options_from_query({"truncate": "middle"})
