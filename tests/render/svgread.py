"""Read frames back from a flamed SVG, as the conformance README describes them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SVG = "{http://www.w3.org/2000/svg}"
# NAME (N samples, P%) with an optional differential "; +D%" before the ")".
TITLE_RE = re.compile(
    r"(?P<name>.*) \((?P<count>-?[\d,]+) (?P<unit>.+?), (?P<pct>[\d.]+)%"
    r"(?:; (?P<delta>[+-]?[\d.]+)%)?\)",
    re.DOTALL,
)


@dataclass(frozen=True)
class DrawnFrame:
    name: str
    count: int
    depth: int
    start: float
    width: float
    y: float
    fill: str
    label: str
    title: str
    delta: str | None


def parse_svg(data: bytes) -> ET.Element:
    """Strict XML parse (expat refuses anything not well-formed)."""
    return ET.fromstring(data)


def frames(data: bytes) -> list[DrawnFrame]:
    root = parse_svg(data)
    found = []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "fg-f":
            continue
        title = group.findtext(f"{SVG}title") or ""
        match = TITLE_RE.fullmatch(title)
        assert match, f"title does not read NAME (N samples, P%): {title!r}"
        rect = group.find(f"{SVG}rect")
        assert rect is not None
        found.append(
            DrawnFrame(
                name=match["name"],
                count=int(match["count"].replace(",", "")),
                depth=int(group.get("data-depth", "-1")),
                start=float(group.get("data-start", "nan")),
                width=float(group.get("data-width", "nan")),
                y=float(rect.get("y", "nan")),
                fill=rect.get("fill", ""),
                label=group.findtext(f"{SVG}text") or "",
                title=title,
                delta=match["delta"],
            )
        )
    return found


def frame_counter(drawn: list[DrawnFrame]) -> Counter[tuple[int, int, str]]:
    return Counter((frame.depth, frame.count, frame.name) for frame in drawn)


def read_frames_file(path: Path) -> Counter[tuple[int, int, str]]:
    """A conformance ``.frames`` file: ``depth<TAB>samples<TAB>name`` per line."""
    expected: Counter[tuple[int, int, str]] = Counter()
    for line in path.read_text("utf-8").splitlines():
        depth, count, name = line.split("\t", 2)
        expected[(int(depth), int(count), name)] += 1
    return expected
