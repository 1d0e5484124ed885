"""Render options: one frozen dataclass, mirroring `flamed flamegraph`'s command line.

The names and defaults follow flamegraph.pl (and inferno where flamegraph.pl has
no such option). The command line and the daemon's query parameters are turned
into a :class:`RenderOptions` in one place each (``daemon/commands/flamegraph.py``
and :func:`options_from_query`); values a user can get wrong raise
:class:`~flamed.collapse.errors.UsageError` with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from flamed.collapse.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flamed.render.nameattr import FrameAttrs

#: Every value ``--colors`` accepts: themes, language palettes, flat colours.
PALETTES = (
    "hot",
    "mem",
    "io",
    "wakeup",
    "chain",
    "hotcold",
    "java",
    "js",
    "perl",
    "python",
    "rust",
    "red",
    "green",
    "blue",
    "aqua",
    "yellow",
    "purple",
    "orange",
)
#: Named background gradients for ``--bgcolors`` (or a flat ``#rrggbb``).
BACKGROUNDS = ("yellow", "blue", "green", "grey", "gray")

COLOR_RE = re.compile(
    r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?|rgb\(\d{1,3},\d{1,3},\d{1,3}\)|[a-zA-Z]{1,30}"
)
FLAT_BACKGROUND_RE = re.compile(r"#[0-9a-fA-F]{6}")
# A CSS font-family list: names, spaces, commas, quotes, dots and dashes only.
FONT_RE = re.compile(r"[\w ,.'\"-]{1,200}")
MINWIDTH_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(%?)")
UI_COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}")
ENCODING_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,39}")
TRUNCATE = ("right", "left")

DEFAULT_TITLE = "Flame Graph"
INVERTED_TITLE = "Icicle Graph"
FLAMECHART_TITLE = "Flame Chart"


@dataclass(frozen=True)
class RenderOptions:
    """How to draw a flame graph. Defaults are flamegraph.pl's.

    title: heading; empty means "Flame Graph" ("Icicle Graph" with ``inverted``,
        "Flame Chart" with ``flamechart``).
    subtitle: second heading line, none if empty.
    width: image width in pixels (1200).
    frame_height: height of one frame row in pixels (16).
    minwidth: frames narrower than this are omitted: pixels at ``width`` (0.1),
        or a percentage of the total when ``minwidth_percent``.
    font_type, font_size, font_width: label font ("Verdana", 12 px) and the
        average character width relative to the size (0.59), used to fit labels.
    count_name: what the counts are ("samples"); name_type: what the frames are
        ("Function:"), shown before the hovered frame's details.
    notes: text embedded in an XML comment.
    colors: palette, one of :data:`PALETTES` ("hot"); ``chain`` marks the frames after
        each ``--`` frame as wakers (``_[w]``, aqua) and the rest off-CPU (blue), as
        flamegraph.pl does for stackcollapse-chain output; ``hotcold`` colours frames
        marked ``_[o]`` (off-CPU, ``flamed.collapse.hotcold``) blue and the others hot.
    bgcolors: background gradient (:data:`BACKGROUNDS`) or ``#rrggbb``; empty
        picks the palette's usual one.
    hash: colour by flamegraph.pl's weighted name hash (similar names, similar
        colours) instead of the default stable CRC-32 of the name.
    random: a random colour for every frame, as flamegraph.pl's ``--random`` (the same
        name gets different colours; the output differs from run to run).
    color_diffusion: colour by width, redder for wider frames (inferno's
        ``--colordiffusion``); the palette is then unused.
    deterministic: accepted for inferno compatibility; colours are the same for
        the same name in flamed anyway (unless ``random``).
    reverse: reverse every stack (leaf first) before merging.
    inverted: icicle graph, root at the top.
    flamechart: keep input order (first line leftmost) instead of sorting.
    no_sort: merge the stacks in input order without sorting them (inferno's
        ``--no-sort``, for input that is already sorted); ignored with ``reverse``.
    negate: swap the differential hues (red for shrinkage).
    factor: multiply the displayed counts by this (1).
    total: treat this as the total count if it exceeds the real total.
    base: keep only stacks through one of these frames, rooted at its leafmost
        occurrence (inferno's ``--base``).
    search_color: fill of frames matched by a search ("rgb(230,0,230)").
    search: regular expression to highlight when the graph opens.
    javascript: embed the interactive script (``--no-javascript`` turns it off).
    pretty_xml: indent the frames' elements.
    ui_color: fill of the title, details, search and zoom texts (``#rrggbb``, "#000000").
    stroke_color: outline of every frame (a colour, or "none").
    truncate: which end of a label that does not fit is cut: "right" (flamegraph.pl)
        or "left" (inferno's default), with ``..`` in its place.
    fluid: the graph fills the width of the window or page that shows it, laid out
        again when that changes (inferno's behaviour when no width is given);
        ``width`` is then only the width it opens with.
    encoding: the character encoding named in the XML declaration (flamegraph.pl's
        ``--encoding``); the caller writes the text in it. Empty: UTF-8.
    name_attrs: per function name, extra attributes of its frames (flamegraph.pl's
        ``--nameattr`` file, read by :func:`flamed.render.nameattr.parse_nameattr`).
    """

    title: str = ""
    subtitle: str = ""
    width: int = 1200
    frame_height: int = 16
    minwidth: float = 0.1
    minwidth_percent: bool = False
    font_type: str = "Verdana"
    font_size: float = 12.0
    font_width: float = 0.59
    count_name: str = "samples"
    name_type: str = "Function:"
    notes: str = ""
    colors: str = "hot"
    bgcolors: str = ""
    hash: bool = False
    deterministic: bool = False
    reverse: bool = False
    inverted: bool = False
    flamechart: bool = False
    negate: bool = False
    factor: float = 1.0
    total: float | None = None
    base: tuple[str, ...] = ()
    search_color: str = "rgb(230,0,230)"
    search: str = ""
    javascript: bool = True
    pretty_xml: bool = False
    random: bool = False
    color_diffusion: bool = False
    no_sort: bool = False
    ui_color: str = "#000000"
    stroke_color: str = "none"
    truncate: str = "right"
    fluid: bool = False
    encoding: str = ""
    name_attrs: Mapping[str, FrameAttrs] = dataclass_field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_options(self)

    @property
    def heading(self) -> str:
        if self.title:
            return self.title
        if self.flamechart:
            return FLAMECHART_TITLE
        return INVERTED_TITLE if self.inverted else DEFAULT_TITLE

    def replace(self, **changes: object) -> RenderOptions:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def format_count(count: int, name: str = "samples") -> str:
    """``5,744 samples``, ``1 sample``: thousands separated, the unit from ``count_unit``."""
    return f"{count:,} {count_unit(count, name)}"


def count_unit(count: int, name: str) -> str:
    """ "samples", but "sample" for one (flamegraph.pl writes "1 samples"); a unit given
    with --countname is left as given."""
    return "sample" if count == 1 and name == "samples" else name


def check_options(options: RenderOptions) -> None:
    """Refuse values that cannot be drawn or that would end up unescaped in CSS."""
    if not 20 < options.width <= 1_000_000:
        raise UsageError(f"width must be between 21 and 1000000 pixels, not {options.width}")
    if not 0 < options.frame_height <= 1000:
        raise UsageError(f"frame height must be between 1 and 1000, not {options.frame_height}")
    if not 0 < options.font_size <= 1000 or not 0 < options.font_width <= 100:
        raise UsageError("font size and font width must be positive")
    if not options.minwidth >= 0:
        raise UsageError(f"minwidth must not be negative, not {options.minwidth}")
    if options.colors not in PALETTES:
        raise UsageError(f"unknown palette {options.colors!r}; one of: {', '.join(PALETTES)}")
    if options.bgcolors and not (
        options.bgcolors in BACKGROUNDS or FLAT_BACKGROUND_RE.fullmatch(options.bgcolors)
    ):
        raise UsageError(
            f"unknown background {options.bgcolors!r}: yellow, blue, green, grey or #rrggbb"
        )
    if not COLOR_RE.fullmatch(options.search_color):
        raise UsageError(f"bad search colour {options.search_color!r}: #rgb, #rrggbb or rgb(r,g,b)")
    if not FONT_RE.fullmatch(options.font_type):
        raise UsageError(f"bad font type {options.font_type!r}")
    if options.total is not None and not options.total >= 0:
        raise UsageError("total must not be negative")
    if options.factor != options.factor:
        raise UsageError("factor must be a number")
    check_ui_options(options)


def check_ui_options(options: RenderOptions) -> None:
    if not UI_COLOR_RE.fullmatch(options.ui_color):
        raise UsageError(f"bad UI colour {options.ui_color!r}: #rrggbb")
    if options.stroke_color != "none" and not COLOR_RE.fullmatch(options.stroke_color):
        raise UsageError(f"bad stroke colour {options.stroke_color!r}: #rrggbb, rgb(r,g,b) or none")
    if options.truncate not in TRUNCATE:
        raise UsageError(f"truncate must be right or left, not {options.truncate!r}")
    if options.encoding:
        check_encoding(options.encoding)
    if options.search:
        check_search(options.search)


def check_search(pattern: str) -> None:
    """Refuse a search the SVG's script could not run (it showed "Bad regular expression",
    cut at the edge). JavaScript's syntax is checked with Python's ``re``; its named groups,
    ``(?<name>``, are Python's ``(?P<name>``."""
    try:
        re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern))
    except re.error as err:
        raise UsageError(f"search: bad regular expression {pattern[:100]!r}: {err}") from None


def check_encoding(name: str) -> None:
    """An encoding XML can name that Python knows and that writes ASCII as ASCII."""
    try:
        ascii_safe = "<?xml ;&#".encode(name) == b"<?xml ;&#"
    except LookupError:
        ascii_safe = False
    if not ENCODING_RE.fullmatch(name) or not ascii_safe:
        raise UsageError(f"unknown or unusable encoding {name!r} (an ASCII-based one, e.g. latin1)")


def parse_minwidth(text: str) -> tuple[float, bool]:
    """``"0.1"`` -> (0.1, False) pixels; ``"0.5%"`` -> (0.5, True) percent of the total."""
    match = MINWIDTH_RE.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"minwidth must be a number of pixels or a percentage like 0.5%, not {text!r}"
        )
    return float(match.group(1)), bool(match.group(2))


def parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("", "1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name} must be true or false, not {text!r}")


def parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name} must be an integer, not {text!r}") from None


def parse_number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"{name} must be a number, not {text!r}")
    return value


# The options that make sense over HTTP, named as the command line's long options without
# their dashes. Left out: those that name files (--cp, --palette-file, --nameattr), change
# the output's encoding (--encoding), or make every render differ (--random).
QUERY_TEXT = {
    "title": "title",
    "subtitle": "subtitle",
    "colors": "colors",
    "bgcolors": "bgcolors",
    "countname": "count_name",
    "nametype": "name_type",
    "search": "search",
    "searchcolor": "search_color",
    "uicolor": "ui_color",
    "strokecolor": "stroke_color",
    "truncate": "truncate",
    "fonttype": "font_type",
    "notes": "notes",
}
QUERY_FLAGS = {
    "reverse": "reverse",
    "inverted": "inverted",
    "hash": "hash",
    "negate": "negate",
    "flamechart": "flamechart",
    "colordiffusion": "color_diffusion",
    "fluid": "fluid",
}
QUERY_INTEGERS = {"width": "width", "height": "frame_height"}
QUERY_NUMBERS = {
    "fontsize": "font_size",
    "fontwidth": "font_width",
    "factor": "factor",
    "total": "total",
}
QUERY_REPEATABLE = frozenset({"base"})
"""Parameters that may be given more than once (``base=a&base=b``)."""
QUERY_NAMES = frozenset(
    {*QUERY_TEXT, *QUERY_FLAGS, *QUERY_INTEGERS, *QUERY_NUMBERS, "minwidth", "nojavascript"}
    | QUERY_REPEATABLE
)
"""Every render parameter ``options_from_query`` reads."""


def options_from_query(
    params: Mapping[str, str], defaults: RenderOptions | None = None
) -> RenderOptions:
    """Render options from HTTP query parameters (:data:`QUERY_NAMES`: ``title``,
    ``colors``, ``reverse``, ``minwidth``, ``width``, ``search``, ``fontsize``, ...).
    ``params`` may be a multidict: every ``base`` is read. Other keys are the caller's.

    Raises :class:`UsageError` (a 400 for the daemon) on a bad value.
    """
    changes: dict[str, object] = {}
    for key, field in QUERY_TEXT.items():
        if key in params:
            changes[field] = params[key]
    for key, field in QUERY_FLAGS.items():
        if key in params:
            changes[field] = parse_bool(key, params[key])
    for key, field in QUERY_INTEGERS.items():
        if key in params:
            changes[field] = parse_int(key, params[key])
    for key, field in QUERY_NUMBERS.items():
        if key in params:
            changes[field] = parse_number(key, params[key])
    if "minwidth" in params:
        changes["minwidth"], changes["minwidth_percent"] = parse_minwidth(params["minwidth"])
    if "nojavascript" in params:
        changes["javascript"] = not parse_bool("nojavascript", params["nojavascript"])
    if "base" in params:
        getall = getattr(params, "getall", None)
        changes["base"] = tuple(getall("base") if getall is not None else [params["base"]])
    base = defaults if defaults is not None else RenderOptions()
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
