"""Time as the config file and the HTTP API spell it: durations, ranges, diff ranges.

One ``parse_duration`` serves both (``10s``, ``5m``, ``1h30m``, ``250ms``, ``7d``).
A query names a range as ``window`` (ending ``until``, or now) or as
``from``/``until`` (unix seconds or ``now-15m``); a diff names two. Refusals
are ``UsageError``s naming the parameter, which the API answers with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from flamed.collapse.errors import UsageError

DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)")
UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
LATEST = 1e11
"""Times and durations at or past this (year 5138) are refused: no title could print them."""
RANGE_KEYS = ("window", "from", "until")
"""How a query names its range; a diff may name the compared one so (``baseline=previous``)."""
DIFF_KEYS = ("a_from", "a_until", "b_from", "b_until")
"""How a diff names both ranges instead."""


def parse_duration(text: str) -> float:
    """``10s``, ``5m``, ``24h``, ``1h30m``, ``250ms``, ``500us``, ``7d`` -> seconds; ValueError
    otherwise."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration like 10s, 5m, 24h")
    return total


def format_duration(seconds: float) -> str:
    """The shortest of ``90s``/``5m``/``24h``-style spellings that is exact."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    label: str
    """For titles: ``last 5m`` for relative ranges, the absolute times otherwise."""


def parse_time(name: str, text: str, now: float) -> float:
    """``1732530000``, ``1732530000.5``, ``now``, ``now-15m`` -> unix seconds."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("now-"):
        value = now - parse_duration_param(name, text[4:])
    else:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name}: {text!r} is not unix seconds or now-DURATION") from None
    if not 0 <= value < LATEST:  # now-DURATION too: before 1970 no title can print it (a 500)
        raise UsageError(f"{name}: {text!r} is out of range")
    return value


def parse_duration_param(name: str, text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as err:
        raise UsageError(f"{name}: {err}") from None
    if value <= 0:
        raise UsageError(f"{name}: must be more than zero")
    if value >= LATEST:  # also inf, from a long run of digits: the title would read "infs"
        raise UsageError(f"{name}: {text!r} is out of range")
    return value


def parse_range(
    query: Mapping[str, str], now: float, default_window: float, prefix: str = ""
) -> TimeRange:
    """``window`` (ending ``until`` or now) or ``from``/``until``. A key given empty is
    refused (an empty ``window=`` is no window, not the default one)."""
    window_text = query.get(prefix + "window")
    start_text = query.get(prefix + "from")
    until_text = query.get(prefix + "until")
    end = parse_time(prefix + "until", until_text, now) if until_text is not None else now
    if window_text is not None and start_text is not None:
        raise UsageError(f"give {prefix}window or {prefix}from, not both")
    if start_text is not None:
        start = parse_time(prefix + "from", start_text, now)
        label = f"{format_time(start)} to {format_time(end)}"
    else:
        window = None
        if window_text is not None:
            window = parse_duration_param(prefix + "window", window_text)
        width = window if window is not None else default_window
        start = end - width
        label = f"last {format_duration(width)}" if not until_text else f"{format_duration(width)}"
        if until_text:
            label += f" to {format_time(end)}"
    if start >= end:
        raise UsageError(f"{prefix}from must be before {prefix}until")
    return TimeRange(start, end, label)


def diff_ranges(
    query: Mapping[str, str], now: float, default_window: float
) -> tuple[TimeRange, TimeRange]:
    """(baseline, compared): explicit a_/b_ ranges, or ``baseline=previous``."""
    given = [key for key in DIFF_KEYS if key in query]
    if given:
        missing = [key for key in DIFF_KEYS if key not in query]
        if missing:
            raise UsageError(f"{', '.join(missing)}: missing (give all of {', '.join(DIFF_KEYS)})")
        also = [key for key in (*RANGE_KEYS, "baseline") if key in query]
        if also:
            raise UsageError(f"give {', '.join(DIFF_KEYS)} or {', '.join(also)}, not both")
        return parse_range(query, now, 0, "a_"), parse_range(query, now, 0, "b_")
    baseline = query.get("baseline", "previous")
    if baseline != "previous":
        raise UsageError(f"baseline: {baseline!r} is not `previous` (or give a_from/a_until/...)")
    after = parse_range(query, now, default_window)
    width = after.end - after.start
    before = TimeRange(after.start - width, after.start, f"the {format_duration(width)} before")
    return before, after
