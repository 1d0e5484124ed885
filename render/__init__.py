"""Render folded stacks: interactive SVG flame graphs, differential graphs, other formats.

Pure: functions take a profile and options and return text or write to a stream they are given.

The flame graph API, for the command line and the daemon alike:

* ``render_flamegraph(folded, options) -> str`` and
  ``render_differential({stack: (before, after)}, options) -> str``
  (``render_diff_folded(before, after, options)`` for two profiles);
* ``RenderOptions`` (frozen; fields mirror ``flamed flamegraph``'s options) and
  ``options_from_query(params)`` for HTTP query parameters;
* ``layout_plain`` / ``layout_differential`` and ``write_svg`` to render into a
  stream and learn whether there were samples at all (``Layout.empty``);
* ``profile_json(folded, meta)`` (the web page's compact call tree) and
  ``speedscope_json(folded, name)`` (a file speedscope opens).

The names are loaded on first use, so importing ``flamed.render.options`` (as
every command's argument parser does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flamed.render.jsonprofile import profile_json
    from flamed.render.layout import Frame, Layout, layout_differential, layout_plain
    from flamed.render.options import RenderOptions, options_from_query
    from flamed.render.speedscope import speedscope_json
    from flamed.render.svg import (
        render_diff_folded,
        render_differential,
        render_flamegraph,
        render_layout,
        write_svg,
    )

EXPORTS = {
    "Frame": "layout",
    "Layout": "layout",
    "layout_differential": "layout",
    "layout_plain": "layout",
    "profile_json": "jsonprofile",
    "RenderOptions": "options",
    "options_from_query": "options",
    "render_diff_folded": "svg",
    "render_differential": "svg",
    "render_flamegraph": "svg",
    "render_layout": "svg",
    "speedscope_json": "speedscope",
    "write_svg": "svg",
}

__all__ = [
    "Frame",
    "Layout",
    "RenderOptions",
    "layout_differential",
    "layout_plain",
    "options_from_query",
    "profile_json",
    "render_diff_folded",
    "render_differential",
    "render_flamegraph",
    "render_layout",
    "speedscope_json",
    "write_svg",
]


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flamed.render' has no attribute {name!r}")
    return getattr(importlib.import_module(f"flamed.render.{module}"), name)
