"""The SVG's own words: counts in titles, the search controls' visibility."""

from __future__ import annotations

from flamed.collapse.folded import Folded
from flamed.render import RenderOptions, render_flamegraph
from flamed.render.options import format_count
from tests.render.svgread import frames


def titles(svg: str) -> dict[str, str]:
    return {frame.name: frame.title for frame in frames(svg.encode())}


def test_counts_have_one_format_and_one_sample_is_singular() -> None:
    """The subtitle said "5744 samples" and titles "5,744"; one frame said "1 samples"."""
    drawn = titles(render_flamegraph(Folded({"main;big": 5744, "main;one": 1})))
    assert drawn["big"] == "big (5,744 samples, 99.98%)"
    assert drawn["one"] == "one (1 sample, 0.02%)"
    assert drawn["main"] == "main (5,745 samples, 100.00%)"
    other = titles(render_flamegraph(Folded({"a": 1}), RenderOptions(count_name="ms")))
    assert other["a"] == "a (1 ms, 100.00%)"  # another unit is left as given


def test_format_count() -> None:
    assert [format_count(n) for n in (0, 1, 2, 5744, 1234567)] == [
        "0 samples",
        "1 sample",
        "2 samples",
        "5,744 samples",
        "1,234,567 samples",
    ]
