"""The layout's shortcuts (bisected pruning, sorting without a key) change nothing."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse import speedups
from flamed.collapse.folded import Folded
from flamed.render.layout import Frame, build_layout, plain_entries, split_frames
from flamed.render.options import RenderOptions
from tests.conftest import NATIVE_PATHS

NAMES = st.sampled_from(["a", "b", "a.b", "a b", "", "c\tx", "zz", "b1"])
STACKS = st.lists(NAMES, min_size=1, max_size=6).map(";".join)
PROFILES = st.dictionaries(STACKS, st.integers(min_value=0, max_value=50), max_size=25)


def reference_frames(profile: dict[str, int], minimum: float) -> list[Frame]:
    """flamegraph.pl's merge, written plainly: sort "stack count" lines, open and close
    every frame, keep those at least ``minimum`` wide."""
    lines = sorted(f"{stack} {count}" for stack, count in profile.items())
    kept: list[Frame] = []
    open_names: list[str] = []
    open_starts: list[float] = []
    time = 0
    for line in [*lines, None]:
        if line is None:
            frames: list[str] = []
            count = 0
        else:
            stack, _, text = line.rpartition(" ")
            frames, count = split_frames(stack), int(text)
        same = 0
        while same < min(len(frames), len(open_names)) and frames[same] == open_names[same]:
            same += 1
        for depth in range(len(open_names) - 1, same - 1, -1):
            if time - open_starts[depth] >= minimum:
                kept.append(
                    Frame(
                        open_names[depth],
                        depth + 1,
                        open_starts[depth],
                        time - open_starts[depth],
                        None,
                    )
                )
        open_names = frames
        open_starts = open_starts[:same] + [time] * (len(frames) - same)
        time += count
    return kept


@settings(max_examples=300, deadline=None)
@given(PROFILES, st.sampled_from([0.0, 0.5, 1.0, 2.0, 7.5]))
def test_layout_equals_the_plain_merge(profile: dict[str, int], pixels: float) -> None:
    options = RenderOptions(width=138, minwidth=pixels)  # 118 px of frames
    layout = build_layout(plain_entries(profile), options)
    total = sum(profile.values())
    if not total:
        assert layout.empty and not layout.frames
        return
    minimum = pixels / (118 / total)
    got = sorted(frame for frame in layout.frames if frame.depth)
    assert got == sorted(reference_frames(profile, minimum))
    assert layout.depth_max == max((frame.depth for frame in layout.frames), default=0)


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_a_control_character_after_a_prefix_orders_as_flamegraph_pl(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """flamegraph.pl sorts "stack COUNT" lines: "c\tx 1" before "c 2" (tab below space),
    though "c" sorts first alone. The C merge finds this as it merges and starts again."""
    if not native:
        monkeypatch.setenv(speedups.DISABLE_VARIABLE, "1")
    profile = {"a": 1, "c": 2, "c\tx": 1, "c\tx;y": 3, "d;e": 1}
    layout = build_layout(plain_entries(profile), RenderOptions(minwidth=0))
    got = sorted(frame for frame in layout.frames if frame.depth)
    assert got == sorted(reference_frames(profile, 0))
    by_start = sorted((frame.start, frame.name) for frame in got if frame.depth == 1)
    assert [name for _, name in by_start] == ["a", "c\tx", "c", "d"]


def test_negative_counts_are_skipped_from_any_kind_of_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A mapping and a list are read in place, a one-pass iterator is kept first: each
    drops the stacks with negative counts, with one warning."""
    pairs = [("a;b", 3), ("a;c", -2), ("d", 0), ("e", -1)]
    expected = [("a;b", 3, None), ("d", 0, None)]
    for stacks in (dict(pairs), Folded(dict(pairs)), pairs, iter(pairs)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="flamed.render"):
            assert plain_entries(stacks) == expected
        assert len(caplog.records) == 1 and "negative" in caplog.records[0].getMessage()
