"""What every collapser shares: the once-per-kind warnings."""

from __future__ import annotations

import logging
import re

import pytest

from flamed.collapse.common import ASCII, MULTILINE, WarnOnce, printable


def test_a_warning_shows_the_offending_text_short_and_printable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Binary input made a 730-character warning full of \\udc93 escapes."""
    garbage = bytes(range(256)).decode("utf-8", "surrogateescape") * 4
    warn = WarnOnce(logging.getLogger("flamed.collapse"))
    with caplog.at_level(logging.WARNING):
        warn("unrecognized perf script line", garbage)
        warn("unrecognized perf script line", garbage)
    (record,) = caplog.records
    message = record.getMessage()
    assert len(message) < 200 and "\\udc" not in message, message
    assert message.isprintable() and message.startswith("unrecognized perf script line: '")
    assert warn.counts["unrecognized perf script line"] == 2


def test_printable() -> None:
    assert printable("main;café") == "main;café"
    assert printable("a\x1b[31mb\tc\x00") == "a\\x1b[31mb\\tc\\x00"
    assert printable(b"caf\xe9\xff".decode("utf-8", "surrogateescape")) == "caf\\xe9\\xff"
    assert printable("x" * 500, 20) == "x" * 20 + "..."


def test_the_flags_patterns_are_compiled_with_are_re_s() -> None:
    """common.py names re's flags without importing re (start-up time counts)."""
    assert (ASCII, MULTILINE) == (re.ASCII, re.MULTILINE)
