"""What each profile endpoint sends, made from queries in a worker thread.

Folded text, an SVG flame graph, a differential one, gzip-compressed pprof,
the web page's JSON call tree, speedscope JSON: each function here takes
``Query`` objects, merges them (``Query.folded()``) and returns a ``Rendered``
body (``timeline`` reads only the buckets' sample counts, never their stacks).
This is the one place that calls ``flamed.render``; ``flamed.render`` is
imported on first use, so the command line never pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flamed.collapse.folded import Folded
from flamed.daemon.query import ProfileQuery
from flamed.daemon.responses import JSON, PPROF, SVG, TEXT, Rendered, packed
from flamed.daemon.timerange import format_time

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from flamed.render.options import RenderOptions


def render_flamegraph(folded: Folded, options: RenderOptions) -> str:
    from flamed.render import render_flamegraph as render

    return render(folded, options)


def render_diff(before: Folded, after: Folded, options: RenderOptions) -> str:
    from flamed.render import render_diff_folded

    return render_diff_folded(before, after, options)


def render_params() -> frozenset[str]:
    """The query parameters ``render_options`` reads."""
    from flamed.render.options import QUERY_NAMES

    return QUERY_NAMES


def repeatable_params() -> frozenset[str]:
    """Those of them that may be given more than once."""
    from flamed.render.options import QUERY_REPEATABLE

    return QUERY_REPEATABLE


def render_options(
    query: Mapping[str, str], title: str, subtitle: str, profile: str = "cpu"
) -> RenderOptions:
    """The request's render parameters over the daemon's title and subtitle (and, for an
    off-CPU profile, counts in ``us`` and the blue ``io`` palette, as off-CPU graphs are)."""
    from flamed.render.options import RenderOptions, options_from_query

    base = RenderOptions(title=title, subtitle=subtitle)
    if profile != "cpu":
        colors = "io" if profile == "offcpu" else "hotcold"
        base = RenderOptions(title=title, subtitle=subtitle, count_name="us", colors=colors)
    return options_from_query(query, base)


def note(query: ProfileQuery) -> str:
    """The subtitle: the buckets' times and sample count."""
    start, end = query.selection.start, query.selection.end
    if start is None or end is None:
        return "no samples in this range yet"
    from flamed.render.options import format_count

    if query.profile == "offcpu":
        amount = f"{query.samples / 1e6:,.3f} s off CPU"
    elif query.profile == "hotcold":
        amount = f"{query.samples / 1e6:,.3f} s on CPU and off"
    else:
        amount = format_count(query.samples)
    return f"{format_time(start)} to {format_time(end)}, {amount}"


def folded_text(query: ProfileQuery) -> Rendered:
    return packed(query.folded().to_bytes(), TEXT)


def flamegraph(query: ProfileQuery, options: RenderOptions, timer: Histogram) -> Rendered:
    folded = query.folded()
    with timer.time():
        svg = render_flamegraph(folded, options)
    return packed(svg.encode("utf-8", "surrogateescape"), SVG)


def diff(
    before: ProfileQuery, after: ProfileQuery, options: RenderOptions, timer: Histogram
) -> Rendered:
    a, b = before.folded(), after.folded()
    with timer.time():
        svg = render_diff(a, b, options)
    return packed(svg.encode("utf-8", "surrogateescape"), SVG)


def pprof(query: ProfileQuery) -> Rendered:
    """The range as gzip-compressed pprof (``go tool pprof``, Pyroscope, Parca, ...)."""
    span = query.span
    data = pprof_for(
        query.folded(),
        frequency=query.frequency,
        start=span.start,
        end=span.end,
        target=query.target,
        kind=query.profile,
    )
    return Rendered(data, b"", PPROF)  # gzip already: never compressed again


def pprof_for(
    folded: Folded,
    *,
    frequency: float,
    start: float,
    end: float,
    target: str,
    kind: str = "cpu",
) -> bytes:
    """A merged range of one target as gzip-compressed pprof, labelled with the target."""
    from flamed.render.pprof import encode_pprof

    return encode_pprof(
        folded,
        frequency=frequency,
        start_ns=round(start * 1e9),
        duration_ns=max(0, round((end - start) * 1e9)),
        labels={"target": target},
        kind=kind,
    )


def profile_json(query: ProfileQuery) -> Rendered:
    """The range as the web page's compact JSON call tree (``flamed.render.jsonprofile``)."""
    from flamed.render.jsonprofile import profile_json as encode

    selection = query.selection
    meta = {
        "target": query.target,
        "type": query.profile,
        "start": selection.start,
        "end": selection.end,
        "samples": query.samples,
        "frequency": query.frequency,
    }
    return packed(encode(query.folded(), meta), JSON, level=1)


def speedscope(query: ProfileQuery, exporter: str) -> Rendered:
    """The range as a speedscope file, named by the target and the buckets' times."""
    from flamed.render.speedscope import speedscope_json

    selection = query.selection
    name = query.target
    if selection.start is not None and selection.end is not None:
        name += f" {format_time(selection.start)} to {format_time(selection.end)}"
    return packed(speedscope_json(query.folded(), name, exporter), JSON)


def timeline(query: ProfileQuery) -> Rendered:
    """Samples per bucket over the range, ``[start, end, samples]`` each, from the buckets'
    own counts (no stacks are read: cheap for a day of buckets, cold ones included)."""
    buckets = [
        [round(bucket.start, 3), round(bucket.end, 3), bucket.samples]
        for bucket in query.selection.buckets
    ]
    body = {"target": query.target, "type": query.profile, "buckets": buckets}
    return packed(json.dumps(body, separators=(",", ":")).encode("ascii"), JSON)
