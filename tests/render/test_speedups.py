"""The C speedups of the flame graph draw exactly what the pure-Python code draws."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse import speedups
from flamed.collapse.folded import Count, read_folded
from flamed.render.layout import layout_differential, layout_plain
from flamed.render.nameattr import FrameAttrs
from flamed.render.options import RenderOptions
from flamed.render.svg import render_layout
from tests.conftest import CONFORMANCE

pytestmark = pytest.mark.skipif(
    speedups.built(speedups.RENDER) is None, reason="the C speedups were not built"
)

# --nameattr extras for names of the corpus and of the generated stacks: a title, group
# classes and attributes, links; text that needs escaping in each.
NAME_ATTRS = {
    "start_thread": FrameAttrs(
        title='a <title> & "more"',
        group=(("class", "hot"), ("id", "t1"), ("data-x", "'q' & <r>")),
        link=(("href", "https://example.com/?a=1&b=2"), ("target", "_top")),
    ),
    "start_secondary_[k]": FrameAttrs(group=(("class", "k1 k2"),)),
    "[unknown]": FrameAttrs(link=(("href", "x.html"), ("target", "_blank"), ("rel", "a b"))),
    "main": FrameAttrs(title=""),
}
OPTIONS = {
    "default": RenderOptions(),
    "minwidth0": RenderOptions(minwidth=0),
    "inverted": RenderOptions(inverted=True, pretty_xml=True),
    "reverse": RenderOptions(reverse=True, factor=2.5, count_name="bytes & <things>"),
    "narrow": RenderOptions(width=120, minwidth=2, minwidth_percent=True, font_width=0.9),
    "flamechart": RenderOptions(flamechart=True, total=10**6),
    "truncate-left": RenderOptions(truncate="left", width=300, minwidth=0),
    "nameattr": RenderOptions(name_attrs=NAME_ATTRS, minwidth=0),
    "nameattr-pretty": RenderOptions(name_attrs=NAME_ATTRS, pretty_xml=True, truncate="left"),
    "one-unit": RenderOptions(count_name="sample", factor=0.5),
    "chain": RenderOptions(colors="chain", stroke_color="#ff0000", ui_color="#00ff00"),
    "colordiffusion": RenderOptions(color_diffusion=True),  # by width: Python draws
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


FRAME = st.one_of(
    st.text(st.characters(blacklist_characters=";\n"), max_size=8),
    st.sampled_from(sorted(NAME_ATTRS)),
)
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
