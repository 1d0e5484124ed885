"""The C speedups of the flame graph draw exactly what the pure-Python code draws."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse import speedups
from flamed.collapse.folded import Count, read_folded
from flamed.render.layout import layout_differential, layout_plain
from flamed.render.options import RenderOptions
from flamed.render.svg import render_layout
from tests.conftest import CONFORMANCE

pytestmark = pytest.mark.skipif(
    speedups.built(speedups.RENDER) is None, reason="the C speedups were not built"
)

OPTIONS = {
    "default": RenderOptions(),
    "minwidth0": RenderOptions(minwidth=0),
    "inverted": RenderOptions(inverted=True, pretty_xml=True),
    "reverse": RenderOptions(reverse=True, factor=2.5, count_name="bytes & <things>"),
    "narrow": RenderOptions(width=120, minwidth=2, minwidth_percent=True, font_width=0.9),
    "flamechart": RenderOptions(flamechart=True, total=10**6),
}


def both_paths(monkeypatch: pytest.MonkeyPatch, draw: Callable[[], str]) -> tuple[str, str]:
    monkeypatch.setenv(speedups.DISABLE_VARIABLE, "1")
    python = draw()
    monkeypatch.delenv(speedups.DISABLE_VARIABLE)
    return python, draw()


def corpus() -> list[str]:
    return sorted(path.name for path in (CONFORMANCE / "flamegraph").glob("*.folded"))


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name", corpus() or ["(absent)"])
def test_corpus_graphs_are_identical(
    monkeypatch: pytest.MonkeyPatch, name: str, option: str
) -> None:
    path = CONFORMANCE / "flamegraph" / name
    if not path.exists():
        pytest.skip(f"reference corpus {path.parent} is absent")
    profile = read_folded(path.read_bytes())
    options = OPTIONS[option]
    python, native = both_paths(
        monkeypatch, lambda: render_layout(layout_plain(profile, options), options)
    )
    assert native == python


def test_differential_graphs_are_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    path = CONFORMANCE / "flamegraph" / "example-perf-stacks.all.folded"
    if not path.exists():
        pytest.skip(f"reference corpus {path.parent} is absent")
    profile = read_folded(path.read_bytes())
    pairs = {stack: (count, count * (1 + len(stack) % 3) // 2) for stack, count in profile.items()}
    for options in (RenderOptions(), RenderOptions(negate=True)):

        def draw(options: RenderOptions = options) -> str:
            return render_layout(layout_differential(pairs, options), options)

        python, native = both_paths(monkeypatch, draw)
        assert native == python


FRAME = st.text(st.characters(blacklist_characters=";\n"), max_size=8)
STACK = st.lists(FRAME, min_size=0, max_size=7).map(";".join)
# Float counts from 1e-9 up: a total near the smallest doubles makes every coordinate
# infinite, which neither path draws (both raise).
COUNT = st.one_of(st.integers(0, 10**9), st.just(0.0), st.floats(1e-9, 1e6))


@settings(max_examples=150, deadline=None)
@given(
    stacks=st.lists(st.tuples(STACK, COUNT), max_size=25),
    option=st.sampled_from(sorted(OPTIONS)),
    before=st.lists(COUNT, max_size=25),
)
def test_generated_graphs_are_identical(
    stacks: list[tuple[str, Count]], option: str, before: list[Count]
) -> None:
    """Any names (control characters, surrogates, markup), int and float counts, both kinds
    of graph: the same SVG, byte for byte."""
    options = OPTIONS[option]
    triples = [(s, b, a) for (s, a), b in zip(stacks, before, strict=False)]
    with pytest.MonkeyPatch.context() as monkeypatch:
        python, native = both_paths(
            monkeypatch, lambda: render_layout(layout_plain(stacks, options), options)
        )
        assert native == python
        python, native = both_paths(
            monkeypatch, lambda: render_layout(layout_differential(triples, options), options)
        )
        assert native == python
