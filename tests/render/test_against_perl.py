"""Side by side with flamegraph.pl itself: same titles (names, counts, percentages, deltas),
same pruning at the default pixel minwidth, same differential colours.

Runs the Perl script from outside the repository: FLAMEGRAPH_DIR, or /work/ref where
FlameGraph is checked out; skipped (saying why) where neither perl nor the script is found.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import conformance_dir, run_flamed
from tests.render.svgread import SVG, frames


def flamegraph_pl() -> Path:
    folder = Path(os.environ.get("FLAMEGRAPH_DIR", "/work/ref"))
    script = folder / "flamegraph.pl"
    if not script.is_file() or shutil.which("perl") is None:
        pytest.skip(f"flamegraph.pl not found in {folder} (set FLAMEGRAPH_DIR) or no perl")
    return script


def perl_frames(path: Path, *options: str) -> Counter[tuple[str, str]]:
    """(title, fill) of every frame flamegraph.pl draws."""
    result = subprocess.run(
        ["perl", str(flamegraph_pl()), *options, str(path)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    root = ET.fromstring(result.stdout)
    drawn: Counter[tuple[str, str]] = Counter()
    for group in root.iter(f"{SVG}g"):
        title = group.findtext(f"{SVG}title")
        rect = group.find(f"{SVG}rect")
        if title is not None and rect is not None:
            drawn[(singular(title), rect.get("fill", ""))] += 1
    return drawn


def singular(title: str) -> str:
    """flamed says "1 sample" where flamegraph.pl says "1 samples" (issue 16)."""
    return re.sub(r" \(1 samples, (?=[\d.]+%(?:; [+-]?[\d.]+%)?\)$)", " (1 sample, ", title)


def our_frames(path: Path, *options: str) -> Counter[tuple[str, str]]:
    result = run_flamed("flamegraph", *options, str(path))
    assert result.returncode == 0, result.stderr.decode()
    return Counter((frame.title, frame.fill) for frame in frames(result.stdout))


def titles(drawn: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (title, _fill), count in drawn.items():
        out[title] += count
    return out


def assert_same(ours: Counter[str], theirs: Counter[str]) -> None:
    assert ours == theirs, (
        f"flamed only: {list((ours - theirs).items())[:4]}; "
        f"flamegraph.pl only: {list((theirs - ours).items())[:4]}"
    )


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("--reverse",),
        ("--minwidth", "1%"),
        ("--width", "500", "--minwidth", "2"),
        ("--factor", "0.5", "--countname", "ms"),
        ("--total", "5000"),
    ],
    ids=lambda options: " ".join(options) or "default",
)
def test_titles_and_pruning_match(options: tuple[str, ...]) -> None:
    path = conformance_dir("flamegraph") / "example-perf-stacks.all.folded"
    assert_same(titles(our_frames(path, *options)), titles(perl_frames(path, *options)))


@pytest.mark.parametrize("options", [(), ("--negate",)], ids=["default", "negate"])
def test_differential_matches_including_colours(options: tuple[str, ...], tmp_path: Path) -> None:
    # Lines whose second count is 0 draw zero-width frames, which flamegraph.pl
    # keys by (name, depth, end): one can overwrite a real frame ending at the same
    # sample, which then vanishes. flamed keeps that frame, so compare without them.
    source = conformance_dir("diff") / "before-after.default.diff"
    lines = source.read_text("utf-8").splitlines()
    kept = [line for line in lines if not line.endswith(" 0")]
    assert 0 < len(kept) < len(lines)
    path = tmp_path / "before-after.diff"
    path.write_text("\n".join(kept) + "\n", "utf-8")
    ours, theirs = our_frames(path, *options), perl_frames(path, *options)
    # flamegraph.pl colours the root by the delta of the first line; flamed leaves it white.
    ours_rest = Counter({key: n for key, n in ours.items() if not key[0].startswith("all (")})
    theirs_rest = Counter({key: n for key, n in theirs.items() if not key[0].startswith("all (")})
    assert ours_rest == theirs_rest, (
        f"flamed only: {list((ours_rest - theirs_rest).items())[:3]}; "
        f"flamegraph.pl only: {list((theirs_rest - ours_rest).items())[:3]}"
    )
    assert any("; +" in title for title, _ in ours) and any("; -" in title for title, _ in ours)


def test_differential_titles_match_with_zero_width_lines() -> None:
    """With the zero-second-count lines in, every title flamegraph.pl draws is drawn too."""
    path = conformance_dir("diff") / "before-after.default.diff"
    ours, theirs = titles(our_frames(path)), titles(perl_frames(path))
    assert not theirs - ours
    assert sum((ours - theirs).values()) <= 3  # the frames flamegraph.pl loses


def test_flamechart_keeps_input_order(tmp_path: Path) -> None:
    source = conformance_dir("flamegraph") / "perf-java-stacks-01.pid.folded"
    lines = source.read_text("utf-8").splitlines()
    random.Random(4).shuffle(lines)
    lines += lines[:5]  # a stack seen again later is a new frame in a flame chart
    path = tmp_path / "chart.folded"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    options = ("--flamechart", "--minwidth", "0")
    assert_same(titles(our_frames(path, *options)), titles(perl_frames(path, *options)))
    first = lines[0].rsplit(" ", 1)[0].split(";")[0]
    drawn = frames(run_flamed("flamegraph", *options, str(path)).stdout)
    leftmost = min((frame for frame in drawn if frame.depth == 1), key=lambda f: f.start)
    assert leftmost.name == first


def test_off_cpu_time_in_microseconds() -> None:
    """Off-CPU output (microseconds blocked, flamed record --off-cpu) drawn with
    ``--countname us`` titles its frames as flamegraph.pl does."""
    data = Path(__file__).parent.parent / "data" / "offcpu" / "waiter.folded"
    options = ("--countname", "us", "--title", "Off-CPU Time Flame Graph", "--colors", "io")
    theirs = Counter(title for title, _ in perl_frames(data, *options).elements())
    ours = Counter(title for title, _ in our_frames(data, *options).elements())
    assert ours == theirs
    assert any(title.startswith("wait_here (2,945,707 us, ") for title in ours), ours
