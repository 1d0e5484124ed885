"""`flamed flamegraph` draws exactly the frames flamegraph.pl draws (conformance corpus)."""

from __future__ import annotations

import pytest

from tests.conftest import conformance_dir, run_flamed
from tests.render.svgread import frame_counter, frames, read_frames_file

CASES = ["perf-vertx-stacks-01.default", "perf-java-stacks-01.pid", "example-perf-stacks.all"]
MODES = ["plain", "reverse", "inverted"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_frames_match_flamegraph_pl(case: str, mode: str) -> None:
    folder = conformance_dir("flamegraph")
    option = [] if mode == "plain" else [f"--{mode}"]
    suffix = "" if mode == "plain" else f".{mode}"
    result = run_flamed("flamegraph", "--minwidth", "0", *option, str(folder / f"{case}.folded"))
    assert result.returncode == 0, result.stderr.decode()
    drawn = frames(result.stdout)
    expected = read_frames_file(folder / f"{case}{suffix}.frames")
    got = frame_counter(drawn)
    assert got == expected, (
        f"missing {list((expected - got).items())[:5]}, extra {list((got - expected).items())[:5]}"
    )


@pytest.mark.parametrize("mode", MODES)
def test_rows_follow_depth(mode: str) -> None:
    """The <rect> y gives the row: one y per depth, rising with depth (falling if inverted)."""
    folder = conformance_dir("flamegraph")
    option = [] if mode == "plain" else [f"--{mode}"]
    result = run_flamed("flamegraph", *option, str(folder / "perf-vertx-stacks-01.default.folded"))
    drawn = frames(result.stdout)
    rows = {frame.depth: frame.y for frame in drawn}
    assert all(rows[frame.depth] == frame.y for frame in drawn)
    ordered = [rows[depth] for depth in sorted(rows)]
    direction = sorted(ordered, reverse=mode != "inverted")
    assert ordered == direction and len(set(ordered)) == len(ordered)


def test_samples_attributes_nest() -> None:
    """data-start/data-width in samples: every frame lies inside its parent row's frame."""
    folder = conformance_dir("flamegraph")
    result = run_flamed("flamegraph", str(folder / "example-perf-stacks.all.folded"))
    drawn = frames(result.stdout)
    by_depth: dict[int, list[tuple[float, float]]] = {}
    for frame in drawn:
        by_depth.setdefault(frame.depth, []).append((frame.start, frame.start + frame.width))
        assert frame.width == frame.count
    for frame in drawn:
        if frame.depth == 0:
            continue
        parents = by_depth[frame.depth - 1]
        end = frame.start + frame.width
        assert any(low <= frame.start and end <= high for low, high in parents), frame
