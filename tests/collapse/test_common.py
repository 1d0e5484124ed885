"""What every collapser shares: the once-per-kind warnings, caches retired at finish."""

from __future__ import annotations

import logging
import re
import sys

import pytest

from flamed.collapse.common import ASCII, MULTILINE, WarnOnce, printable, retire_into
from flamed.collapse.dtrace import DTraceCollapser
from flamed.collapse.perf import PerfCollapser
from tests.conftest import NATIVE_PATHS


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


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("make", [PerfCollapser, DTraceCollapser])
def test_a_one_shot_command_keeps_the_caches_for_its_exit(
    make: type[PerfCollapser | DTraceCollapser], native: bool
) -> None:
    """`flamed collapse` ends by os._exit: freeing the C folder's caches entry by entry at
    finish() was waste, so they go to the list the command keeps; then freed with it.
    Without that list (a daemon), finish() drops them at once."""
    kept: list[object] = []
    retire_into(kept)
    try:
        collapser = make(native=native)
        collapser.feed(b"")
        collapser.finish()
    finally:
        retire_into(None)
    if native:
        (caches,) = kept
        assert type(caches).__module__ == "flamed.collapse._speedups"
        # the list holds the only other reference: emptying it frees them
        assert sys.getrefcount(caches) == 3  # the list's, this name's, the call's
        del caches
    assert len(kept) == native
    kept.clear()
    collapser = make(native=native)
    collapser.finish()
    assert kept == []
