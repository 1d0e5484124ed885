"""Frames to an interactive SVG flame graph: pure functions, text in, text out.

Entry points (what the command line and the daemon call):

* :func:`render_flamegraph` — a profile (a :class:`~flamed.collapse.folded.Folded`,
  or ``(stack, count)`` pairs in order for a flame chart) to SVG text;
* :func:`render_differential` — ``stack -> (before, after)`` to a differential
  SVG (red grew, blue shrank); :func:`render_diff_folded` takes two profiles;
* :func:`write_svg` — a computed :class:`~flamed.render.layout.Layout` to a
  text stream, for callers that want the layout too (to learn it was empty).

Every frame is a ``<g class="fg-f">`` carrying ``data-depth``, ``data-start``
and ``data-width`` (in samples), a ``<title>`` ``NAME (N samples, P%)``, a
``<rect>`` and a label. Everything that comes from a profile or a user is
escaped for XML, characters XML forbids are dropped and undecodable bytes
(lone surrogates) become U+FFFD, so a frame name cannot break the document or
run as script. The JavaScript and CSS are this package's own assets.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import TextIO

from flamed.collapse import speedups
from flamed.collapse.folded import Count, Folded
from flamed.render.layout import (
    XPAD,
    DiffStacks,
    Frame,
    Layout,
    Stacks,
    layout_differential,
    layout_plain,
)
from flamed.render.nameattr import FrameAttrs
from flamed.render.options import RenderOptions, count_unit
from flamed.render.palette import (
    DARK_SEPARATOR,
    GREY_SEPARATOR,
    PaletteMap,
    background,
    diff_color,
    diffusion_color,
    frame_color,
    strip_annotation,
)

FRAME_PAD = 1  # pixels between rows
BATCH = 1000  # frames per write: bounded memory for the text of huge graphs
NO_SAMPLES = "No samples"
# The texts --uicolor colours: title, details, zoom and search controls.
UI_TEXTS = ", ".join(
    f".flamegraph .fg-{name}"
    for name in ("title", "details", "unzoom", "search", "ignorecase", "matched")
)

# XML 1.0 allows tab, newline, carriage return, U+0020-U+D7FF, U+E000-U+FFFD and
# U+10000-U+10FFFF; not the other controls, lone surrogates (undecodable input bytes kept
# by surrogateescape), U+FFFE and U+FFFF. Spelled as what is left out: the complement of
# the allowed ranges compiles in ~10 ms, a cost at every start.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

Look = tuple[str, str, "str | None", "tuple[str, str, str | None, str] | None"]
"""What the C writer draws a name with: the name cleaned, escaped, its colour (None: by
its delta) and its --nameattr extras: group classes, group attributes, title (None: the
usual one) and the link's opening tag ("" for none)."""


def _clean_char(match: re.Match[str]) -> str:
    return "\ufffd" if "\ud800" <= match.group() <= "\udfff" else ""


def clean(text: str) -> str:
    """Drop characters XML forbids; undecodable bytes become U+FFFD."""
    if text.isascii() and text.isprintable():  # the common case, without the regex
        return text
    return NOT_XML.sub(_clean_char, text)


def xml_text(text: str) -> str:
    """Escape for XML character data (a CR as a reference: parsers turn a raw one into LF)."""
    escaped = clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("\r", "&#13;")


def xml_attr(text: str) -> str:
    """Escape for a double-quoted XML attribute value (whitespace kept as references)."""
    escaped = xml_text(text).replace('"', "&quot;").replace("'", "&#39;")
    return escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def xml_comment(text: str) -> str:
    """Text safe inside ``<!-- -->``: no ``--``, no trailing ``-``."""
    return clean(text).replace("--", "- -").rstrip("-")


def number(value: float) -> str:
    """Samples for data attributes: integers plainly, fractions exactly (JS parses them back)."""
    if type(value) is int:
        return str(value)
    if value == int(value):
        return str(int(value))
    return repr(float(value))


@cache
def script_text() -> str:
    """The text of the graph's one ``<script>`` element."""
    return "\n" + asset("flamegraph.js")


@cache
def script_hash() -> str:
    """``sha256-…`` of the graph's script, for a Content-Security-Policy that runs it alone."""
    import base64  # here: start-up time counts in every `flamed flamegraph`
    import hashlib

    digest = hashlib.sha256(script_text().encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


@cache
def asset(name: str) -> str:
    """The text of one of this package's assets: a file beside this module when installed
    as files (importlib.resources costs ~10 ms to import), else through importlib."""
    path = os.path.join(os.path.dirname(__file__), "assets", name)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            text = file.read()
    else:
        from importlib import resources

        text = resources.files("flamed.render").joinpath("assets", name).read_text("utf-8")
    if "]]>" in text:
        raise ValueError(f"asset {name} must not contain ]]>")
    return text


class SvgWriter:
    """Draws one layout with one set of options; :meth:`write` emits the document."""

    def __init__(
        self, layout: Layout, options: RenderOptions, palette_map: PaletteMap | None = None
    ) -> None:
        self.layout = layout
        self.options = options
        self.palette_map = palette_map
        self.colors: dict[str, str] = {}
        self.per_sample = (options.width - 2 * XPAD) / layout.time_max if layout.time_max else 0
        self.char_width = options.font_size * options.font_width
        self.ypad1 = options.font_size * 3
        self.ypad2 = options.font_size * 2 + 10
        self.ypad3 = options.font_size * 2 if options.subtitle else 0
        rows = (layout.depth_max + 1) * options.frame_height
        self.height = rows + self.ypad1 + self.ypad2 + self.ypad3
        self.color_of, self.per_name_colors = self.pick_coloring()
        self.names: dict[str | None, tuple[str, str]] = {}
        self.row_texts: dict[int, tuple[str, str]] = {}
        self.rect_height = options.frame_height - FRAME_PAD
        self.count_name = xml_text(options.count_name)
        self.count_one = xml_text(count_unit(1, options.count_name))
        self.full = layout.time_max * options.factor
        self.sep = "\n  " if options.pretty_xml else ""
        self.end_sep = "\n" if options.pretty_xml else ""

    def write(self, out: TextIO) -> None:
        if self.layout.empty:
            out.write(empty_svg(self.options))
            return
        out.write(self.header())
        out.write(self.controls())
        out.write('<g class="fg-frames">\n')
        native = speedups.module(speedups.RENDER)
        if native is not None and self.char_width > 0 and self.per_name_colors:
            self.write_frames_native(native, out)
        else:
            frames = self.layout.frames
            for first in range(0, len(frames), BATCH):
                batch = frames[first : first + BATCH]
                out.write("".join([self.frame_element(frame) + "\n" for frame in batch]))
        out.write("</g>\n")
        if self.options.javascript:
            out.write(f'<script type="text/ecmascript"><![CDATA[{script_text()}]]></script>\n')
        out.write("</svg>\n")

    # The document's head: root element, background, style.

    def header(self) -> str:
        o = self.options
        width, height = o.width, fmt(self.height)
        first, second = background(o.colors, o.bgcolors)
        data = {
            "data-total": number(self.layout.time_max),
            "data-xpad": str(XPAD),
            "data-char-width": fmt(self.char_width),
            "data-name-type": o.name_type,
            "data-search": o.search,
        }
        if o.truncate != "right":
            data["data-truncate"] = o.truncate
        if o.fluid:
            data["data-fluid"] = "1"
        attrs = " ".join(f'{key}="{xml_attr(value)}"' for key, value in data.items())
        notes = f"<!-- NOTES: {xml_comment(o.notes)} -->\n" if o.notes else ""
        return (
            f'<?xml version="1.0" encoding="{o.encoding or "UTF-8"}" standalone="no"?>\n'
            f'<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
            f' xmlns="http://www.w3.org/2000/svg" class="flamegraph" {attrs}>\n'
            "<!-- Flame graph drawn by flamed; click a frame to zoom, Ctrl-F to search. -->\n"
            f"{notes}"
            '<defs><linearGradient id="fg-background" y1="0" y2="1" x1="0" x2="0">'
            f'<stop stop-color="{first}" offset="5%"/><stop stop-color="{second}" offset="95%"/>'
            "</linearGradient></defs>\n"
            f'<style type="text/css"><![CDATA[\n{asset("flamegraph.css")}{self.dynamic_css()}'
            "]]></style>\n"
            f'<rect class="fg-background" x="0" y="0" width="{width}" height="{height}"'
            ' fill="url(#fg-background)"/>\n'
        )

    def dynamic_css(self) -> str:
        o = self.options
        return (
            f".flamegraph text {{ font-family: {o.font_type}; font-size: {fmt(o.font_size)}px; }}\n"
            f".flamegraph .fg-title {{ font-size: {fmt(o.font_size + 5)}px; }}\n"
            f".flamegraph .fg-f.fg-match > rect {{ fill: {o.search_color}; }}\n"
            f"{UI_TEXTS} {{ fill: {o.ui_color}; }}\n"
            + (
                f".flamegraph .fg-f > rect {{ stroke: {o.stroke_color}; stroke-width: 1; }}\n"
                if o.stroke_color != "none"
                else ""
            )
        )

    def controls(self) -> str:
        o = self.options
        middle = o.width // 2
        top = fmt(o.font_size * 2)
        bottom = fmt(self.height - self.ypad2 / 2)
        right = o.width - XPAD
        parts = [f'<text class="fg-title" x="{middle}" y="{top}">{xml_text(o.heading)}</text>']
        if o.subtitle:
            sub_y = fmt(o.font_size * 4)
            parts.append(
                f'<text class="fg-subtitle" x="{middle}" y="{sub_y}">{xml_text(o.subtitle)}</text>'
            )
        if o.javascript:
            parts += [
                f'<text class="fg-details" x="{XPAD}" y="{bottom}"> </text>',
                f'<text class="fg-unzoom fg-hide" x="{XPAD}" y="{top}">Reset Zoom</text>',
                f'<text class="fg-search" x="{right - 100}" y="{top}">Search</text>',
                f'<text class="fg-ignorecase" x="{right - 16}" y="{top}">ic</text>',
                f'<text class="fg-matched" x="{right - 100}" y="{bottom}"> </text>',
            ]
        return "\n".join(parts) + "\n"

    # Frames.

    def frame_element(self, frame: Frame) -> str:
        x1 = XPAD + frame.start * self.per_sample
        x2 = XPAD + (frame.start + frame.width) * self.per_sample
        x1_text, x2_text = f"{x1:.1f}", f"{x2:.1f}"
        rect_width = f"{float(x2_text) - float(x1_text):.1f}"
        clean_name, escaped = self.name_texts(frame)
        label = fit_label(clean_name, x2 - x1, self.char_width, self.options.truncate)
        label = escaped if label is clean_name else xml_text(label)
        rect_y, text_y = self.rows(frame.depth)
        sep = self.sep
        title = self.title(frame, escaped)
        attrs = self.options.name_attrs.get(frame.name) if frame.depth else None
        classes = group = ""
        if attrs is not None:
            classes, group = group_attrs(attrs, escaped)
            title = title if attrs.title is None else xml_text(attrs.title)
        element = (
            f'<g class="fg-f{classes}" data-depth="{frame.depth}"'
            f' data-start="{number(frame.start)}" data-width="{number(frame.width)}"{group}>'
            f"{sep}<title>{title}</title>{sep}"
            f'<rect x="{x1_text}" y="{rect_y}" width="{rect_width}" height="{self.rect_height}"'
            f' fill="{self.color_of(frame)}" rx="2" ry="2"/>{sep}'
            f'<text x="{x1 + 3:.2f}" y="{text_y}">{label}</text>{self.end_sep}</g>'
        )
        return element if attrs is None or not attrs.link else link(attrs, element)

    def write_frames_native(self, native: ModuleType, out: TextIO) -> None:
        """What the frame_element loop writes, written by the C speedups; what each
        distinct name shows comes from ``look`` and each row's y from ``rows``."""
        frames = self.layout.frames
        looks: dict[str | None, Look] = {}
        rows = [self.rows(depth) for depth in range(self.layout.depth_max + 1)]
        o = self.options
        numbers = (self.per_sample, self.char_width, o.factor, self.full, self.layout.max_delta)
        flags = (o.negate, o.truncate == "left")
        strings = (self.sep, self.end_sep, self.count_name, self.count_one, str(self.rect_height))
        for first in range(0, len(frames), BATCH):
            out.write(
                native.frame_elements(
                    frames,
                    first,
                    first + BATCH,
                    looks,
                    self.look,
                    rows,
                    (*numbers, *flags),
                    strings,
                )
            )

    def look(self, frame: Frame) -> Look:
        """A frame's name cleaned and escaped, its colour (None: by its delta) and its
        --nameattr extras (None: none): what frame_element makes of them, written out."""
        clean_name, escaped = self.name_texts(frame)
        by_delta = self.layout.differential and not separator_color(frame.name)
        color = None if by_delta else self.color_of(frame)
        attrs = self.options.name_attrs.get(frame.name) if frame.depth else None
        if attrs is None:
            return clean_name, escaped, color, None
        classes, group = group_attrs(attrs, escaped)
        title = None if attrs.title is None else xml_text(attrs.title)
        opening = link_tag(attrs) if attrs.link else ""
        return clean_name, escaped, color, (classes, group, title, opening)

    def name_texts(self, frame: Frame) -> tuple[str, str]:
        """The frame's display name, cleaned and escaped (cached: names repeat)."""
        key = frame.name if frame.depth else None
        texts = self.names.get(key)
        if texts is None:
            name = clean(strip_annotation(frame.name)) if frame.depth else "all"
            texts = self.names[key] = (name, xml_text(name))
        return texts

    def rows(self, depth: int) -> tuple[str, str]:
        """The y of a row's rectangles and of their labels (cached per depth)."""
        found = self.row_texts.get(depth)
        if found is None:
            o = self.options
            if o.inverted:
                top = self.ypad1 + self.ypad3 + depth * o.frame_height
            else:
                top = self.height - self.ypad2 - (depth + 1) * o.frame_height + FRAME_PAD
            found = self.row_texts[depth] = (fmt(top), fmt(top + self.rect_height / 2 + 3))
        return found

    def title(self, frame: Frame, escaped_name: str) -> str:
        """``NAME (N samples, P%)``, with ``; +D%`` in a differential graph; escaped."""
        samples = round(frame.width * self.options.factor)
        counted = f"{samples:,} {self.count_one if samples == 1 else self.count_name}"
        if not frame.depth:
            return f"all ({counted}, 100%)"
        full = self.full
        pct = f"{100 * samples / full:.2f}" if full else "0.00"
        if frame.delta is None:
            return f"{escaped_name} ({counted}, {pct}%)"
        delta = -frame.delta if self.options.negate else frame.delta
        delta = delta or 0.0  # no "-0.00%"
        delta_pct = f"{100 * delta / full:.2f}" if full else "0.00"
        sign = "+" if delta > 0 else ""
        return f"{escaped_name} ({counted}, {pct}%; {sign}{delta_pct}%)"

    # Colours.

    def pick_coloring(self) -> tuple[Callable[[Frame], str], bool]:
        """How frames are coloured, and whether a frame's colour follows from its name
        (and its delta): not by width (--colordiffusion) nor at random per frame."""
        if self.options.color_diffusion:
            return self.diffusion_coloring, False
        if self.layout.differential:
            return self.diff_coloring, True
        if self.options.random and self.palette_map is None:
            return self.random_coloring, False
        return self.name_coloring, True

    def diffusion_coloring(self, frame: Frame) -> str:
        share = frame.width / self.layout.time_max if self.layout.time_max else 0.0
        return separator_color(frame.name) or diffusion_color(share)

    def random_coloring(self, frame: Frame) -> str:
        name = frame.name
        return separator_color(name) or frame_color(name, self.options.colors, values=shuffled())

    def diff_coloring(self, frame: Frame) -> str:
        special = separator_color(frame.name)
        if special:
            return special
        return diff_color(frame.delta or 0.0, self.layout.max_delta, self.options.negate)

    def name_coloring(self, frame: Frame) -> str:
        name = frame.name
        color = self.colors.get(name)
        if color is None:
            color = separator_color(name) or self.named_color(name)
            self.colors[name] = color
        return color

    def named_color(self, name: str) -> str:
        mapping = self.palette_map
        if mapping is not None and name in mapping:
            return xml_attr(mapping[name])
        values = shuffled() if self.options.random else None
        color = frame_color(name, self.options.colors, self.options.hash, values)
        if mapping is not None:
            mapping[name] = color
        return color


def shuffled() -> tuple[float, float, float]:
    """Three random numbers in [0, 1): a colour for ``--random``."""
    import random  # only for --random: start-up time counts

    return random.random(), random.random(), random.random()


def separator_color(name: str) -> str:
    if name == "--":
        return DARK_SEPARATOR
    if name == "-":
        return GREY_SEPARATOR
    return ""


def fit_label(name: str, pixels: float, char_width: float, truncate: str = "right") -> str:
    """The label that fits ``pixels``: the name, cut with ``..`` at the ``truncate`` end
    when too long, or nothing."""
    chars = int(pixels / char_width)
    if chars < 3:
        return ""
    if chars < len(name):
        return name[: chars - 2] + ".." if truncate == "right" else ".." + name[2 - chars :]
    return name


def attributes(pairs: tuple[tuple[str, str], ...]) -> str:
    return "".join(f' {name}="{xml_attr(value)}"' for name, value in pairs)


# Attributes flamed's frame groups carry themselves: --nameattr may not set them.
OWN_ATTRIBUTES = ("class", "data-depth", "data-start", "data-width", "data-name")


def group_attrs(attrs: FrameAttrs, escaped_name: str) -> tuple[str, str]:
    """A frame group's --nameattr classes (after flamed's ``fg-f``) and attributes, the
    first being ``data-name``: the frame's name, for the script, since a custom title
    no longer starts with it."""
    classes = "".join(f" {xml_attr(value)}" for name, value in attrs.group if name == "class")
    others = tuple((name, value) for name, value in attrs.group if name not in OWN_ATTRIBUTES)
    return classes, f' data-name="{escaped_name}"' + attributes(others)


def link(attrs: FrameAttrs, element: str) -> str:
    """The frame inside a --nameattr link."""
    return f"{link_tag(attrs)}{element}</a>"


def link_tag(attrs: FrameAttrs) -> str:
    """The opening tag of a --nameattr link."""
    return f"<a{attributes(attrs.link)}>"


def fmt(value: float) -> str:
    """A coordinate: integers without a fraction, else up to two decimals."""
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0")


def empty_svg(options: RenderOptions) -> str:
    """A valid SVG that says there is nothing to draw."""
    width, height = options.width, fmt(options.font_size * 5)
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' xmlns="http://www.w3.org/2000/svg" class="flamegraph fg-empty">\n'
        f'<text x="{width // 2}" y="{fmt(options.font_size * 2)}" text-anchor="middle"'
        f' font-family="{xml_attr(options.font_type)}" font-size="{fmt(options.font_size)}">'
        f"{NO_SAMPLES}</text>\n</svg>\n"
    )


def write_svg(
    layout: Layout,
    options: RenderOptions,
    out: TextIO,
    palette_map: PaletteMap | None = None,
) -> None:
    """Write the SVG for a computed layout to ``out``.

    ``palette_map`` (``--cp``): names found in it keep their colour; new names
    are added to it, so the caller can save it for the next graph.
    """
    SvgWriter(layout, options, palette_map).write(out)


def render_layout(
    layout: Layout, options: RenderOptions, palette_map: PaletteMap | None = None
) -> str:
    buffer = io.StringIO()
    write_svg(layout, options, buffer, palette_map)
    return buffer.getvalue()


def render_flamegraph(
    folded: Stacks, options: RenderOptions | None = None, palette_map: PaletteMap | None = None
) -> str:
    """A flame graph of ``folded`` (a Folded, a mapping, or ordered (stack, count) pairs)."""
    options = options or RenderOptions()
    return render_layout(layout_plain(folded, options), options, palette_map)


def render_differential(
    stacks: DiffStacks, options: RenderOptions | None = None, palette_map: PaletteMap | None = None
) -> str:
    """A differential flame graph of ``stack -> (before, after)`` (as diff-folded writes)."""
    options = options or RenderOptions()
    return render_layout(layout_differential(stacks, options), options, palette_map)


def diff_pairs(before: Folded, after: Folded) -> dict[str, tuple[Count, Count]]:
    """Every stack of either profile with its two counts (0 where absent)."""
    pairs: dict[str, tuple[Count, Count]] = {stack: (count, 0) for stack, count in before.items()}
    for stack, count in after.items():
        pairs[stack] = (pairs.get(stack, (0, 0))[0], count)
    return pairs


def render_diff_folded(before: Folded, after: Folded, options: RenderOptions | None = None) -> str:
    """A differential flame graph from two profiles: widths from ``after``."""
    return render_differential(diff_pairs(before, after), options)
