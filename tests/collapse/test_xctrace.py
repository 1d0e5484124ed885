"""collapse xctrace against inferno-collapse-xctrace (tests/data/xctrace)."""

from __future__ import annotations

import logging

import pytest

from flamed.collapse.xctrace import XctraceCollapser, is_applicable
from tests.collapse.goldens import check_any_split, check_cli, check_golden, check_guess, fold
from tests.conftest import DATA

INPUT = DATA / "xctrace" / "time-profile.xml"


def test_golden() -> None:
    check_golden(XctraceCollapser, "xctrace", "time-profile", "default")


def test_cli_and_guess() -> None:
    check_cli("xctrace", "time-profile", "default")
    check_guess("xctrace", "time-profile")


def test_any_split() -> None:
    check_any_split(XctraceCollapser, INPUT.read_bytes())


def test_cut_short_counts_complete_rows(caplog: pytest.LogCaptureFixture) -> None:
    data = INPUT.read_bytes()
    cut = data.index(b"<row>", data.index(b'<backtrace ref="7"/>'))
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        profile = fold(XctraceCollapser(), data[:cut])
    leaf = "start;main;compute_all;matrix_multiply(double const*, double*, int);dot"
    assert profile.counts == {leaf: 2}
    assert "ends before" in caplog.text


HEAD = b'<?xml version="1.0"?>\n<trace-query-result><node><row>'


@pytest.mark.parametrize(
    "body",
    [
        b'<backtrace ref="99"/></row>',
        b'<backtrace id="1"><frame ref="5"/></backtrace></row>',
        b"<backtrace><frame/></backtrace></row>",
        b"<backtrace id='1'><frame id='2' name='a;b'/><frame id='3' name='c' /></backtrace></row>",
    ],
)
def test_bad_references_are_skipped(body: bytes) -> None:
    profile = fold(XctraceCollapser(), HEAD + body + b"</node></trace-query-result>")
    assert profile.counts in ({}, {"c;a:b": 1})


def test_entities_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa">]><trace-query-result/>'
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        assert fold(XctraceCollapser(), bomb).counts == {}
    assert "document type declaration" in caplog.text


def test_is_applicable() -> None:
    assert is_applicable(INPUT.read_bytes()[:200]) is True
    assert is_applicable(b"<?xml") is None
    assert is_applicable(b"main;f 1\n") is False
