"""Durations, ranges and diff ranges as the config file and the HTTP API spell them."""

from __future__ import annotations

import pytest

from flamed.daemon.timerange import format_duration, parse_duration, parse_range


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("24h", 86400), ("1h30m", 5400), ("250ms", 0.25), ("7d", 604800)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "5 m", "1x", "-5s", "10s5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (60, 300, 86400, 90, 2.5)] == [
        "1m",
        "5m",
        "1d",
        "90s",
        "2.5s",
    ]


def test_parse_range_labels() -> None:
    assert parse_range({"window": "5m"}, 1000.0, 60).label == "last 5m"
    span = parse_range({}, 1000.0, 60)
    assert (span.start, span.end) == (940.0, 1000.0)
    fixed = parse_range({"from": "0", "until": "60"}, 1000.0, 60)
    assert fixed.label == "1970-01-01 00:00:00 UTC to 1970-01-01 00:01:00 UTC"
