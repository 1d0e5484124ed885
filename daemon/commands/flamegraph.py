"""``flamed flamegraph [options] [FILE...|-]``: folded stacks to an interactive SVG.

Options have flamegraph.pl's names and meanings (and inferno's where
flamegraph.pl has none). Several inputs are merged; lines with two counts
(``stack BEFORE AFTER``, as ``flamed diff-folded`` writes) make a differential
graph. The SVG goes to stdout; with no samples it still is a valid SVG (saying
"No samples") and the exit status is 2, as with flamegraph.pl.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flamed.collapse.common import WarnOnce
from flamed.collapse.errors import UsageError
from flamed.collapse.folded import Count, FoldedCollapser, parse_line
from flamed.daemon.commands.common import EXIT_NO_SAMPLES, KEPT, iter_chunks, write_atomic
from flamed.daemon.commands.declaration import Declaration, add_log_flags

if TYPE_CHECKING:
    from flamed.render.nameattr import FrameAttrs
    from flamed.render.options import RenderOptions

NAME = "flamegraph"
HELP = "draw folded stacks as an interactive SVG flame graph (flamegraph.pl)"
DESCRIPTION = """\
Draw folded stacks (`frame;frame;frame COUNT`, root first) as an interactive SVG
flame graph: hover for details, click to zoom, Ctrl-F to search by regular
expression. Several FILEs (gzip-compressed too) are merged; `-` or nothing reads
stdin. Lines with two counts (`stack BEFORE AFTER`, from `flamed diff-folded`)
draw a differential graph: widths from AFTER, red where it grew, blue where it
shrank. Drop-in for flamegraph.pl (and inferno-flamegraph): same options, the
same frames. Exit status 2, and an SVG saying "No samples", when there is
nothing to draw.
"""

# Warnings go through WarnOnce only, which imports logging at the first warning.
LAZY_LOGGING = True
# One conversion, then the process ends: skip freeing its many objects one by one.
FAST_EXIT = True


def add_arguments(parser: Declaration) -> None:
    from flamed.render.options import PALETTES

    add = parser.add_argument
    add("files", nargs="*", metavar="FILE", help="folded stacks (default: stdin)")
    add("--title", default="", help='heading (default "Flame Graph", "Icicle Graph" inverted)')
    add("--subtitle", default="", help="second heading line")
    add(
        "--width",
        type=int,
        default=None,
        help="image width in pixels (default: 1200 wide as it opens, then the width of "
        "the window or page showing it)",
    )
    add("--height", type=int, default=16, help="height of one frame in pixels (default 16)")
    add(
        "--minwidth",
        default="0.1",
        help='omit frames narrower than this many pixels, or "N%%" of the total (default 0.1)',
    )
    add("--fonttype", default="Verdana", help='font family (default "Verdana")')
    add("--fontsize", type=float, default=12.0, help="font size in pixels (default 12)")
    add("--fontwidth", type=float, default=0.59, help="average character width / size (0.59)")
    add("--countname", default="samples", help='what the counts are (default "samples")')
    add("--nametype", default="Function:", help='label of the details line (default "Function:")')
    add("--notes", default="", help="text to embed in an XML comment")
    add(
        "-c",
        "--colors",
        "--colours",
        default="hot",
        choices=PALETTES,
        metavar="PALETTE",
        help=f"palette: {', '.join(PALETTES)} (default hot)",
    )
    add("--bgcolors", default="", help="background: yellow, blue, green, grey or #rrggbb")
    add("--hash", action="store_true", help="colour by flamegraph.pl's weighted name hash")
    add("--random", action="store_true", help="a random colour for every frame (flamegraph.pl)")
    add(
        "--colordiffusion",
        action="store_true",
        help="colour by width, redder for wider frames (inferno)",
    )
    add(
        "--deterministic", action="store_true", help="same colour per name in every run (always so)"
    )
    add("--cp", action="store_true", help="use and extend a consistent palette file")
    add(
        "--palette-file",
        default="palette.map",
        metavar="FILE",
        help="palette file for --cp (default palette.map; implies --cp when given)",
    )
    add("--reverse", action="store_true", help="reverse the stacks (leaf first) before merging")
    add("-i", "--inverted", action="store_true", help="icicle graph: root at the top")
    add("--flamechart", action="store_true", help="flame chart: keep input order, do not sort")
    add("--negate", action="store_true", help="swap differential hues (blue grew, red shrank)")
    add("--factor", type=float, default=1.0, help="multiply the displayed counts by this")
    add("--total", type=float, default=None, help="total count to scale to, if above the real one")
    add(
        "--base",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="root stacks at their leafmost SYMBOL frame, dropping stacks without it; repeatable",
    )
    add("--search-color", default="rgb(230,0,230)", help="fill of matched frames")
    add("--search", default="", metavar="REGEX", help="highlight frames matching REGEX on open")
    add("--no-javascript", action="store_true", help="a static SVG without the script")
    add("--pretty-xml", action="store_true", help="indent the frames' elements")
    add_log_flags(parser)
    add("--no-sort", action="store_true", help="input is sorted already: merge it in order")
    add("--uicolor", default="#000000", metavar="#RRGGBB", help="colour of the title and controls")
    add("--stroke-color", default="none", help="outline every frame in this colour (default none)")
    add(
        "--truncate-text-right",
        dest="truncate",
        action="store_const",
        const="right",
        default="right",
        help="cut labels that do not fit on the right, with .. (the default, as flamegraph.pl)",
    )
    add(
        "--truncate-text-left",
        dest="truncate",
        action="store_const",
        const="left",
        help="cut them on the left instead (inferno's default)",
    )
    add("--encoding", default="", help="character encoding of the input and the SVG (UTF-8)")
    add(
        "--nameattr",
        metavar="FILE",
        help="per function: extra attributes of its frames (function TAB name=value TAB ...)",
    )


def make_options(args: argparse.Namespace) -> RenderOptions:
    from flamed.render.options import RenderOptions, parse_minwidth

    minwidth, percent = parse_minwidth(args.minwidth)
    return RenderOptions(
        title=args.title,
        subtitle=args.subtitle,
        width=1200 if args.width is None else args.width,
        fluid=args.width is None,
        frame_height=args.height,
        minwidth=minwidth,
        minwidth_percent=percent,
        font_type=args.fonttype,
        font_size=args.fontsize,
        font_width=args.fontwidth,
        count_name=args.countname,
        name_type=args.nametype,
        notes=args.notes,
        colors=args.colors,
        bgcolors=args.bgcolors,
        hash=args.hash,
        deterministic=args.deterministic,
        reverse=args.reverse,
        inverted=args.inverted,
        flamechart=args.flamechart,
        negate=args.negate,
        factor=args.factor,
        total=args.total,
        base=tuple(args.base),
        search_color=args.search_color,
        search=args.search,
        javascript=not args.no_javascript,
        pretty_xml=args.pretty_xml,
        random=args.random,
        color_diffusion=args.colordiffusion,
        no_sort=args.no_sort,
        ui_color=args.uicolor,
        stroke_color=args.stroke_color,
        truncate=args.truncate,
        encoding=args.encoding,
        name_attrs=load_nameattr(args.nameattr) if args.nameattr else {},
    )


def load_nameattr(path: str) -> dict[str, FrameAttrs]:
    from flamed.render.nameattr import parse_nameattr

    return parse_nameattr(b"".join(iter_chunks(path)))


def read_inputs(
    paths: list[str], merge: bool, encoding: str = ""
) -> Mapping[str, Count] | list[tuple[str, Count]]:
    """All inputs: merged into one profile (stack -> count), or every line in order (a
    flame chart); decoded from ``encoding`` (--encoding), UTF-8 if empty."""
    reader = FoldedCollapser(keep_order=not merge, encoding=encoding)
    reader.warn = WarnOnce("flamed.render")
    for path in paths:
        for chunk in iter_chunks(path):
            reader.feed(chunk)
        reader.feed(b"\n")
    profile = reader.finish()
    return profile.counts if reader.in_order is None else reader.in_order


def split_differential(
    items: Mapping[str, Count] | list[tuple[str, Count]],
) -> list[tuple[str, Count, Count]] | None:
    """``stack BEFORE AFTER`` lines as triples, if every line has two counts; else None."""
    triples: list[tuple[str, Count, Count]] = []
    for stack, after in items.items() if isinstance(items, Mapping) else items:
        found = parse_line(stack)
        if found is None:
            return None
        triples.append((found[0], found[1], after))
    return triples or None


def load_palette(path: str) -> dict[str, str]:
    from flamed.render.palette import parse_palette_map

    if not os.path.exists(path):
        return {}
    return parse_palette_map(b"".join(iter_chunks(path)))


def run(args: argparse.Namespace) -> int:
    from flamed.render.layout import build_layout, diff_entries, plain_entries
    from flamed.render.palette import format_palette_map
    from flamed.render.svg import write_svg

    # One graph, then the process ends: the cyclic garbage collector's passes over the
    # many frames (tuples) of a large graph cost time and would free nothing.
    gc.disable()
    options = make_options(args)
    paths = args.files or ["-"]
    if paths.count("-") > 1:
        raise UsageError("stdin (-) can be read only once")
    in_order = options.flamechart or (options.no_sort and not options.reverse)
    items = read_inputs(paths, merge=not in_order, encoding=options.encoding)
    triples = split_differential(items)
    entries = diff_entries(triples) if triples else plain_entries(items)
    layout = build_layout(entries, options, differential=bool(triples and entries))
    KEPT.extend((items, entries, layout))  # FAST_EXIT: the exit drops them all at once
    use_palette = args.cp or args.palette_file != "palette.map"
    palette = load_palette(args.palette_file) if use_palette else None
    out = io.TextIOWrapper(
        sys.stdout.buffer,
        encoding=options.encoding or "utf-8",
        errors="xmlcharrefreplace",  # characters the chosen encoding lacks
        newline="\n",
    )
    try:
        write_svg(layout, options, out, palette)
        out.flush()
    finally:
        out.detach()
    if palette is not None:
        write_atomic(args.palette_file, format_palette_map(palette))
    if layout.empty:
        print(f"flamed {NAME}: no samples in the input", file=sys.stderr)
        return EXIT_NO_SAMPLES
    return 0
