"""`flamed flamegraph` at the command line: inputs, empty input, differential input, options."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from flamed.collapse.errors import UsageError
from flamed.collapse.folded import Folded
from flamed.render import (
    RenderOptions,
    layout_differential,
    options_from_query,
    render_diff_folded,
    render_differential,
)
from tests.conftest import run_flamed
from tests.render.svgread import SVG, frames, parse_svg


@pytest.mark.parametrize(
    "stdin", [b"", b"\n\n", b"no count here\nnor here\n", b"a;b -3\n"], ids=repr
)
def test_no_samples_gives_a_valid_svg_and_a_failure(stdin: bytes) -> None:
    result = run_flamed("flamegraph", stdin=stdin)
    assert result.returncode == 2
    root = parse_svg(result.stdout)
    assert root.tag == f"{SVG}svg"
    assert "No samples" in "".join(root.itertext())
    assert b"no samples" in result.stderr


def test_bad_lines_are_warned_once_and_skipped() -> None:
    stdin = b"a;b 3\ngarbage\nmore garbage\na;c 1\n"
    result = run_flamed("flamegraph", "-", stdin=stdin)
    assert result.returncode == 0
    assert result.stderr.count(b"folded line without a count") == 1
    counts = {frame.name: frame.count for frame in frames(result.stdout)}
    assert counts == {"all": 4, "a": 4, "b": 3, "c": 1}


def test_several_inputs_are_merged_gzip_too(tmp_path: Path) -> None:
    one = tmp_path / "one.folded"
    one.write_bytes(b"main;a 2\nmain;b 1\n")
    two = tmp_path / "two.folded.gz"
    two.write_bytes(gzip.compress(b"main;a 3\nother 4\n"))
    result = run_flamed("flamegraph", str(one), str(two))
    assert result.returncode == 0, result.stderr.decode()
    counts = {(frame.depth, frame.name): frame.count for frame in frames(result.stdout)}
    assert counts == {(0, "all"): 10, (1, "main"): 6, (2, "a"): 5, (2, "b"): 1, (1, "other"): 4}


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    result = run_flamed("flamegraph", str(tmp_path / "absent.folded"))
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and b"absent.folded" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["--minwidth", "abc"], ["--bgcolors", "pink"], ["--search-color", "red;}"], ["--width", "5"]],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = run_flamed("flamegraph", *args, stdin=b"a 1\n")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


def test_minwidth_in_pixels_and_percent() -> None:
    stdin = b"main;big 990\nmain;small 10\n"
    pixels = {
        f.name for f in frames(run_flamed("flamegraph", "--minwidth", "20", stdin=stdin).stdout)
    }
    assert "small" not in pixels and "big" in pixels  # 10 samples are 11.8 px of 1180
    percent = {
        f.name for f in frames(run_flamed("flamegraph", "--minwidth", "1%", stdin=stdin).stdout)
    }
    assert "small" in percent
    percent = {
        f.name for f in frames(run_flamed("flamegraph", "--minwidth", "1.5%", stdin=stdin).stdout)
    }
    assert "small" not in percent


def test_differential_input_from_diff_folded_lines() -> None:
    stdin = b"main;grew 10 30\nmain;shrank 20 5\nmain;same 4 4\n"
    result = run_flamed("flamegraph", stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    drawn = {frame.name: frame for frame in frames(result.stdout)}
    assert drawn["all"].count == 39  # widths from the second count
    assert drawn["grew"].count == 30 and drawn["grew"].delta == "+51.28"
    assert drawn["grew"].fill == "rgb(255,0,0)"  # the largest delta: full red
    assert drawn["shrank"].delta == "-38.46" and drawn["shrank"].fill == "rgb(52,52,255)"
    assert drawn["same"].delta == "0.00" and drawn["same"].fill == "rgb(255,255,255)"
    assert drawn["main"].delta == "0.00"  # the delta belongs to the leaf frames
    negated = {f.name: f for f in frames(run_flamed("flamegraph", "--negate", stdin=stdin).stdout)}
    assert negated["grew"].fill == "rgb(0,0,255)" and negated["grew"].delta == "-51.28"


def test_differential_library_functions_agree() -> None:
    before = Folded({"main;a": 10, "main;gone": 5})
    after = Folded({"main;a": 20, "main;new": 3})
    svg = render_diff_folded(before, after)
    drawn = {frame.name: frame for frame in frames(svg.encode())}
    assert set(drawn) == {"all", "main", "a", "new"}  # "gone" has no width now
    assert drawn["a"].delta == "+43.48" and drawn["new"].delta == "+13.04"
    pairs = {"main;a": (10, 20), "main;gone": (5, 0), "main;new": (0, 3)}
    assert render_differential(pairs) == svg
    assert layout_differential(pairs, RenderOptions()).max_delta == 10


def test_flamechart_keeps_repeated_stacks_apart() -> None:
    stdin = b"main;a 1\nmain;b 1\nmain;a 1\n"
    drawn = frames(run_flamed("flamegraph", "--flamechart", stdin=stdin).stdout)
    a_frames = sorted(frame.start for frame in drawn if frame.name == "a")
    assert a_frames == [0, 2]
    merged = frames(run_flamed("flamegraph", stdin=stdin).stdout)
    assert [frame.count for frame in merged if frame.name == "a"] == [2]


def test_base_roots_stacks_at_the_symbol() -> None:
    stdin = b"init;main;work;leaf 2\ninit;other 5\nx;main;y 1\n"
    drawn = frames(run_flamed("flamegraph", "--base", "main", stdin=stdin).stdout)
    assert {(frame.depth, frame.name, frame.count) for frame in drawn} == {
        (0, "all", 3),
        (1, "main", 3),
        (2, "work", 2),
        (3, "leaf", 2),
        (2, "y", 1),
    }


def test_title_defaults_and_static_output() -> None:
    stdin = b"a;b 1\n"
    for args, title in [([], "Flame Graph"), (["--inverted"], "Icicle Graph")]:
        root = parse_svg(run_flamed("flamegraph", *args, stdin=stdin).stdout)
        heading = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "fg-title"]
        assert heading == [title]
    static = parse_svg(run_flamed("flamegraph", "--no-javascript", stdin=stdin).stdout)
    assert not list(static.iter(f"{SVG}script"))


def test_options_from_query() -> None:
    options = options_from_query(
        {
            "title": "T",
            "colors": "java",
            "reverse": "1",
            "inverted": "false",
            "minwidth": "2%",
            "width": "800",
            "search": "^java",
            "unknown": "x",
        }
    )
    assert options == RenderOptions(
        title="T",
        colors="java",
        reverse=True,
        minwidth=2.0,
        minwidth_percent=True,
        width=800,
        search="^java",
    )
    for bad in ({"width": "wide"}, {"colors": "plaid"}, {"reverse": "maybe"}, {"minwidth": "-1"}):
        with pytest.raises(UsageError):
            options_from_query(bad)


@pytest.mark.parametrize("pattern", ["(", "a[", "*x", "x{2,1}"])
def test_a_search_that_cannot_compile_is_refused_before_rendering(pattern: str) -> None:
    """It wrote an SVG saying "Bad regular expression", cut at the edge, and exited 0."""
    result = run_flamed("flamegraph", "--search", pattern, stdin=b"a;b 1\n")
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flamed flamegraph: search: bad regular")


def test_a_search_in_javascript_syntax_is_kept() -> None:
    result = run_flamed("flamegraph", "--search", "(?<fn>wo)rk|^b$", stdin=b"a;work 1\n")
    assert result.returncode == 0, result.stderr
    assert b'data-search="(?&lt;fn&gt;wo)rk|^b$"' in result.stdout
