"""Frame colours: themes, language palettes, differential hues, background gradients.

The rules for which palette a language frame falls in, the hue ranges of every
palette and flamegraph.pl's weighted name hash (``--hash``) follow flamegraph.pl
(python and rust follow inferno, which added them). The default colouring is
our own: a CRC-32 of the name, so a function gets the same colour in every run,
on every machine, in every graph.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

from flamed.collapse.common import get_logger
from flamed.collapse.folded import decode, encode

LOGGER = "flamed.render"

Values = tuple[float, float, float]
PaletteMap = dict[str, str]

GREY_SEPARATOR = "rgb(200,200,200)"  # a frame named "-"
DARK_SEPARATOR = "rgb(160,160,160)"  # a frame named "--"
RGB_RE = re.compile(r"rgb\((\d{1,3}),(\d{1,3}),(\d{1,3})\)")
ANNOTATION_RE = re.compile(r"_\[[kwijo]\]\Z")
JAVA_PACKAGE_RE = re.compile(r"L?(?:java|javax|jdk|net|org|com|io|sun)/")
PYTHON_VERSION_RE = re.compile(r"[Pp]ython[0-9.]*")

GRADIENTS = {
    "yellow": ("#eeeeee", "#eeeeb0"),
    "blue": ("#eeeeee", "#e0e0ff"),
    "green": ("#eef2ee", "#e0ffe0"),
    "grey": ("#f8f8f8", "#e8e8e8"),
    "gray": ("#f8f8f8", "#e8e8e8"),
}


def strip_annotation(name: str) -> str:
    """``foo_[k]`` -> ``foo``: perf's kernel/inline/jit/waker suffixes, and our off-CPU one
    (``flamed.collapse.hotcold``), are for colour only."""
    if name.endswith("]"):
        return ANNOTATION_RE.sub("", name)
    return name


def name_bytes(name: str) -> bytes:
    """The name's bytes: undecodable input bytes come back as they were read."""
    try:
        return encode(name)
    except UnicodeEncodeError:  # a lone surrogate that did not come from input bytes
        return name.encode("utf-8", "surrogatepass")


def stable_values(name: str) -> Values:
    """Three numbers in [0, 1) from CRC-32s of the name: the same everywhere, always."""
    data = name_bytes(name)
    first = zlib.crc32(data) / 0x1_0000_0000
    second = zlib.crc32(data[::-1]) / 0x1_0000_0000
    return first, second, second


def weighted_hash(name: str) -> float:
    """flamegraph.pl's ``--hash``: the first three characters, earlier ones weigh more.

    A module prefix (``libc.so`malloc``) is dropped first, so a function keeps its
    colour whichever library it was resolved in.
    """
    tick = name.find("`", 1)
    if tick >= 0:
        name = name[tick + 1 :]
    vector = 0.0
    weight = 1.0
    maximum = 1.0
    for modulus, char in zip((10, 11, 12), name, strict=False):
        vector += (ord(char) % modulus) / (modulus - 1) * weight
        maximum += weight
        weight *= 0.70
    return 1 - vector / maximum


def hashed_values(name: str) -> Values:
    first = weighted_hash(name)
    second = weighted_hash(name[::-1])
    return first, second, second


def scaled(base: int, span: int, value: float) -> int:
    return base + int(span * value)


def hot(v: Values) -> str:
    return f"rgb({scaled(205, 50, v[2])},{scaled(0, 230, v[0])},{scaled(0, 55, v[1])})"


def mem(v: Values) -> str:
    return f"rgb(0,{scaled(190, 50, v[1])},{scaled(0, 210, v[0])})"


def io(v: Values) -> str:
    grey = scaled(80, 60, v[0])
    return f"rgb({grey},{grey},{scaled(190, 55, v[1])})"


def red(v: Values) -> str:
    other = scaled(50, 80, v[0])
    return f"rgb({scaled(200, 55, v[0])},{other},{other})"


def green(v: Values) -> str:
    other = scaled(50, 60, v[0])
    return f"rgb({other},{scaled(200, 55, v[0])},{other})"


def blue(v: Values) -> str:
    other = scaled(80, 60, v[0])
    return f"rgb({other},{other},{scaled(205, 50, v[0])})"


def yellow(v: Values) -> str:
    both = scaled(175, 55, v[0])
    return f"rgb({both},{both},{scaled(50, 20, v[0])})"


def purple(v: Values) -> str:
    both = scaled(190, 65, v[0])
    return f"rgb({both},{scaled(80, 60, v[0])},{both})"


def aqua(v: Values) -> str:
    return f"rgb({scaled(50, 60, v[0])},{scaled(165, 55, v[0])},{scaled(165, 55, v[0])})"


def orange(v: Values) -> str:
    return f"rgb({scaled(190, 65, v[0])},{scaled(90, 65, v[0])},0)"


BASIC: dict[str, Callable[[Values], str]] = {
    "hot": hot,
    "mem": mem,
    "io": io,
    "red": red,
    "green": green,
    "blue": blue,
    "yellow": yellow,
    "purple": purple,
    "aqua": aqua,
    "orange": orange,
}


def java_kind(name: str) -> str:
    if name.endswith("_[j]"):
        return "green"
    if name.endswith("_[i]"):
        return "aqua"
    if JAVA_PACKAGE_RE.match(name) or ":::" in name:
        return "green"
    if "::" in name:
        return "yellow"
    return "orange" if name.endswith("_[k]") else "red"


def perl_kind(name: str) -> str:
    if "::" in name:
        return "yellow"
    if "Perl" in name or ".pl" in name:
        return "green"
    return "orange" if name.endswith("_[k]") else "red"


def js_kind(name: str) -> str:
    if name.endswith("_[j]"):
        return "green" if "/" in name else "aqua"
    if "::" in name:
        return "yellow"
    slash = name.find("/")
    if slash >= 0 and ".js" in name[slash + 1 :]:
        return "green"
    if ":" in name:
        return "aqua"
    if name == " ":
        return "green"
    return "orange" if "_[k]" in name else "red"


def python_kind(name: str) -> str:
    parts = re.split(r"[/\\]", name)
    if "site-packages" in parts:
        return "aqua"
    if any(PYTHON_VERSION_RE.fullmatch(part) for part in parts) or name.startswith(
        ("<built-in", "<method", "<frozen")
    ):
        return "yellow"
    return "red"


def rust_kind(name: str) -> str:
    if name.startswith(("core::", "std::", "alloc::", "<std::", "<alloc::")) or (
        name.startswith("<core::") and not name.startswith("<core::future::from_generator")
    ):
        return "orange"
    return "aqua" if "::" in name else "yellow"


MULTI: dict[str, Callable[[str], str]] = {
    "java": java_kind,
    "perl": perl_kind,
    "js": js_kind,
    "python": python_kind,
    "rust": rust_kind,
    "wakeup": lambda _name: "aqua",
    "chain": lambda name: "aqua" if "_[w]" in name else "blue",
    "hotcold": lambda name: "io" if name.endswith("_[o]") else "hot",
}


def frame_color(
    name: str, palette: str = "hot", hashed: bool = False, values: Values | None = None
) -> str:
    """The fill of a frame called ``name`` (annotations included) under ``palette``;
    ``values`` (three numbers in [0, 1)) instead of the name's own, for ``--random``."""
    if values is None:
        values = hashed_values(name) if hashed else stable_values(name)
    kind = MULTI[palette](name) if palette in MULTI else palette
    return BASIC[kind](values)


def diffusion_color(share: float) -> str:
    """inferno's ``--colordiffusion``: redder for a wider frame (``share`` of the total).

    The square root keeps wide frames apart: half the width is not half the red."""
    value = int(share**0.5 * 2000)
    if value <= 0:
        return "rgb(250,250,250)"
    other = 100 + 150 * (2000 - value) // 2000
    return f"rgb(255,{other},{other})"


def diff_color(delta: float, max_delta: float, negate: bool = False) -> str:
    """Red for growth, blue for shrinkage, white for none; scaled by the largest delta."""
    if negate:
        delta = -delta
    if delta > 0:
        other = int(210 * (max_delta - delta) / max_delta)
        return f"rgb(255,{other},{other})"
    if delta < 0:
        other = int(210 * (max_delta + delta) / max_delta)
        return f"rgb({other},{other},255)"
    return "rgb(255,255,255)"


def default_background(palette: str) -> str:
    if palette == "mem":
        return "green"
    if palette in ("io", "wakeup", "chain"):
        return "blue"
    if palette in ("hotcold", "red", "green", "blue", "aqua", "yellow", "purple", "orange"):
        return "grey"
    return "yellow"


def background(palette: str, bgcolors: str = "") -> tuple[str, str]:
    """The two stops of the background gradient (equal for a flat ``#rrggbb``)."""
    choice = bgcolors or default_background(palette)
    if choice in GRADIENTS:
        return GRADIENTS[choice]
    return choice, choice


def parse_palette_map(data: bytes) -> PaletteMap:
    """A ``--cp`` palette file: ``name->rgb(r,g,b)`` per line; bad lines are skipped."""
    mapping: PaletteMap = {}
    bad = 0
    for line in decode(data).splitlines():
        name, arrow, color = line.rpartition("->")
        if arrow and RGB_RE.fullmatch(color.strip()):
            mapping[name] = color.strip()
        elif line.strip():
            bad += 1
    if bad:
        message = "palette file: skipped %d lines that are not name->rgb(r,g,b)"
        get_logger(LOGGER).warning(message, bad)
    return mapping


def format_palette_map(mapping: PaletteMap) -> bytes:
    lines = (f"{name}->{mapping[name]}\n" for name in sorted(mapping, key=name_bytes))
    return name_bytes("".join(lines))
