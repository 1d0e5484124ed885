"""collapse recursive against stackcollapse-recursive.pl (tests/data/recursive)."""

from __future__ import annotations

import logging

import pytest

from flamed.collapse.recursive import RecursiveCollapser
from tests.collapse.goldens import check_any_split, check_cli, check_golden, fold
from tests.conftest import DATA


def test_golden() -> None:
    check_golden(RecursiveCollapser, "recursive", "fib", "default")


def test_cli() -> None:
    check_cli("recursive", "fib", "default")


def test_any_split() -> None:
    check_any_split(RecursiveCollapser, (DATA / "recursive" / "fib.txt").read_bytes())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a;b;b;b;c 3\n", {"a;b;c": 3}),
        (b"a;b;a;b 1\n", {"a;b;a;b": 1}),  # indirect recursion stays
        (b"a;a\r\n", {}),
        (b"x;x;y 2\r\n", {"x;y": 2}),  # CRLF accepted (the Perl script skips the line)
        (b";;; 4\n", {}),  # no frame left: dropped
        (b"0 5\n", {}),  # false to Perl: skipped, as there
        (b"r;r 1.5\nr 2\n", {"r": 3.5}),
    ],
)
def test_lines(line: bytes, expected: dict[str, float]) -> None:
    assert fold(RecursiveCollapser(), line).counts == expected


def test_a_line_without_count_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        profile = fold(RecursiveCollapser(), b"a;b\nc;d\ne;e 1\n")
    assert profile.counts == {"e": 1}
    assert len(caplog.records) == 1 and "without a count" in caplog.records[0].getMessage()
