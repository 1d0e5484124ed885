"""Hot/cold profiles: CPU samples in microseconds beside off-CPU time, frames kept apart."""

from __future__ import annotations

from flamed.collapse.folded import Folded
from flamed.collapse.hotcold import hot_cold, mark_off_cpu
from flamed.render import RenderOptions, render_flamegraph
from flamed.render.palette import frame_color, strip_annotation
from tests.render.svgread import frames


def test_cpu_samples_become_microseconds_and_off_cpu_frames_are_marked() -> None:
    cpu = Folded({"app;main;work": 3, "app;main": 1})
    off = Folded({"app;main;read;schedule": 25_000})
    both = hot_cold(cpu, off, 1e6 / 99)
    assert both == Folded(
        {
            "app;main;work": 30303,
            "app;main": 10101,
            "app_[o];main_[o];read_[o];schedule_[o]": 25_000,
        }
    )
    assert mark_off_cpu("a") == "a_[o]" and strip_annotation("read_[o]") == "read"


def test_the_hotcold_palette_colours_off_cpu_blue() -> None:
    assert frame_color("read_[o]", "hotcold") == frame_color("read_[o]", "io")
    assert frame_color("read", "hotcold") == frame_color("read", "hot")
    both = hot_cold(Folded({"app;work": 1}), Folded({"app;read": 5000}), 10_000)
    svg = render_flamegraph(both, RenderOptions(colors="hotcold", count_name="us")).encode()
    fills = {frame.name: frame.fill for frame in frames(svg)}
    blue = [name for name, fill in fills.items() if name.startswith("read")]
    assert blue == ["read"], fills  # shown without the mark
    r, g, b = (int(x) for x in fills["read"][4:-1].split(","))
    assert b > r and b > g, fills
