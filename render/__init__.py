"""Render folded stacks: interactive SVG flame graphs, differential graphs, other formats.

Pure: functions take a profile and options and return text or write to a stream they are given.

The flame graph API, for the command line and the daemon alike:

* ``render_flamegraph(folded, options) -> str`` and
  ``render_differential({stack: (before, after)}, options) -> str``
  (``render_diff_folded(before, after, options)`` for two profiles);
* ``RenderOptions`` (frozen; fields mirror ``flamed flamegraph``'s options) and
  ``options_from_query(params)`` for HTTP query parameters;
* ``layout_plain`` / ``layout_differential`` and ``write_svg`` to render into a
  stream and learn whether there were samples at all (``Layout.empty``).
"""

from __future__ import annotations

from flamed.render.layout import Frame, Layout, layout_differential, layout_plain
from flamed.render.options import RenderOptions, options_from_query
from flamed.render.svg import (
    render_diff_folded,
    render_differential,
    render_flamegraph,
    render_layout,
    write_svg,
)

__all__ = [
    "Frame",
    "Layout",
    "RenderOptions",
    "layout_differential",
    "layout_plain",
    "options_from_query",
    "render_diff_folded",
    "render_differential",
    "render_flamegraph",
    "render_layout",
    "write_svg",
]
