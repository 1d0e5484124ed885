"""Colours: stable per name everywhere, flamegraph.pl's language and hash rules, --cp files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from flamed.collapse.folded import Folded
from flamed.render import RenderOptions, render_flamegraph
from flamed.render.options import PALETTES
from flamed.render.palette import (
    diff_color,
    format_palette_map,
    frame_color,
    parse_palette_map,
    weighted_hash,
)
from tests.conftest import run_flamed
from tests.render.svgread import frames

NAMES = ["main", "do_work", "java/lang/Thread:.run", "__libc_start_main", "ümlaut::ß", "x"]
RGB = re.compile(r"rgb\((\d+),(\d+),(\d+)\)")


def colours_in_subprocess(seed: str) -> str:
    code = (
        f"from flamed.render.palette import frame_color\nprint([frame_color(n) for n in {NAMES!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout


def test_default_colours_do_not_depend_on_the_process() -> None:
    """Same colours under different hash seeds: no hash() anywhere on the way."""
    assert colours_in_subprocess("1") == colours_in_subprocess("2") == colours_in_subprocess("3")


def test_default_colour_comes_from_crc32_of_the_name() -> None:
    for name in NAMES:
        data = name.encode("utf-8")
        v1 = zlib.crc32(data) / 2**32
        v2 = zlib.crc32(data[::-1]) / 2**32
        expected = f"rgb({205 + int(50 * v2)},{int(230 * v1)},{int(55 * v2)})"
        assert frame_color(name) == expected


def test_same_name_same_colour_across_graphs() -> None:
    one = frames(render_flamegraph(Folded({"a;shared;b": 5, "c": 1})).encode())
    two = frames(render_flamegraph(Folded({"x;y;z;shared": 9})).encode())
    fill = {frame.name: frame.fill for frame in one}
    assert {frame.fill for frame in two if frame.name == "shared"} == {fill["shared"]}


@pytest.mark.parametrize("palette", PALETTES)
def test_every_palette_gives_valid_colours(palette: str) -> None:
    for name in [*NAMES, "foo_[k]", "bar_[j]", "baz_[i]", "x::y", "a/b.js", "Perl_pp", ""]:
        match = RGB.fullmatch(frame_color(name, palette))
        assert match and all(0 <= int(part) <= 255 for part in match.groups())


def hue(color: str) -> str:
    r, g, b = (int(part) for part in RGB.fullmatch(color).groups())  # type: ignore[union-attr]
    if r > 150 and g > 150 and b < 100:
        return "yellow"
    if g > r and g > b:
        return "green"
    if b < 10 and r > g:
        return "orange"
    if g > 150 and b > 150 and r < 120:
        return "aqua"
    return "red"


@pytest.mark.parametrize(
    ("palette", "name", "expected"),
    [
        ("java", "java/util/HashMap:.get", "green"),
        ("java", "Interpreter_[j]", "green"),
        ("java", "inlined_[i]", "aqua"),
        ("java", "JavaThread::run", "yellow"),
        ("java", "sys_write_[k]", "orange"),
        ("java", "read", "red"),
        ("perl", "Perl_pp_entersub", "green"),
        ("perl", "Foo::bar", "yellow"),
        ("perl", "read", "red"),
        ("js", "LazyCompile:~foo /app/x.js:1_[j]", "green"),
        ("js", "Builtin:foo_[j]", "aqua"),
        ("js", "v8::internal::Foo", "yellow"),
        ("js", "/app/server.js:10", "green"),
        ("js", "do_syscall_[k]", "orange"),
        ("python", "/usr/lib/python3.11/json/decoder.py:raw_decode", "yellow"),
        ("python", "/venv/lib/python3.11/site-packages/x.py:f", "aqua"),
        ("python", "app.py:main", "red"),
        ("rust", "core::ptr::drop_in_place", "orange"),
        ("rust", "mycrate::run", "aqua"),
        ("rust", "memcpy", "yellow"),
    ],
)
def test_language_palettes(palette: str, name: str, expected: str) -> None:
    assert hue(frame_color(name, palette)) == expected


def test_weighted_hash_follows_the_first_characters() -> None:
    """--hash: names sharing their first three characters get the same first value."""
    assert weighted_hash("foo_alpha") == weighted_hash("foo_beta")
    assert weighted_hash("libc.so`malloc") == weighted_hash("malloc")
    assert weighted_hash("abc") != weighted_hash("xyz")
    assert 0 <= weighted_hash("anything") <= 1


def test_diff_colours() -> None:
    assert diff_color(10, 10) == "rgb(255,0,0)"
    assert diff_color(-10, 10) == "rgb(0,0,255)"
    assert diff_color(5, 10) == "rgb(255,105,105)"
    assert diff_color(5, 10, negate=True) == "rgb(105,105,255)"
    assert diff_color(0, 10) == "rgb(255,255,255)"


def test_palette_file_round_trip() -> None:
    mapping = parse_palette_map(b"b->rgb(1,2,3)\na->x->rgb(4,5,6)\njunk\nc->red\n")
    assert mapping == {"b": "rgb(1,2,3)", "a->x": "rgb(4,5,6)"}
    assert format_palette_map(mapping) == b"a->x->rgb(4,5,6)\nb->rgb(1,2,3)\n"


def test_cp_keeps_known_colours_and_adds_new_ones(tmp_path: Path) -> None:
    palette = tmp_path / "palette.map"
    palette.write_bytes(b"main->rgb(1,2,3)\n")
    profile = tmp_path / "in.folded"
    profile.write_bytes(b"main;work 3\nmain;rest 1\n")
    result = run_flamed("flamegraph", "--cp", "--palette-file", str(palette), str(profile))
    assert result.returncode == 0, result.stderr.decode()
    fills = {frame.name: frame.fill for frame in frames(result.stdout)}
    assert fills["main"] == "rgb(1,2,3)"
    saved = parse_palette_map(palette.read_bytes())
    assert saved["main"] == "rgb(1,2,3)"
    assert saved["work"] == fills["work"] and saved["rest"] == fills["rest"]


def test_hash_option_changes_colouring() -> None:
    folded = Folded({"alpha;beta": 3})
    plain = {f.name: f.fill for f in frames(render_flamegraph(folded).encode())}
    hashed = {
        f.name: f.fill for f in frames(render_flamegraph(folded, RenderOptions(hash=True)).encode())
    }
    assert plain["alpha"] != hashed["alpha"]
    assert hashed["alpha"] == frame_color("alpha", "hot", hashed=True)
