"""collapse vsprof against stackcollapse-vsprof.pl (sampling) and inferno (calls)."""

from __future__ import annotations

import logging

import pytest

from flamed.collapse.vsprof import VsprofCollapser, is_applicable, next_number, perl_integer
from tests.collapse.goldens import check_any_split, check_cli, check_golden, check_guess, fold
from tests.conftest import DATA

CASES = ["sampling", "calls"]


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    check_golden(VsprofCollapser, "vsprof", name, "default")


@pytest.mark.parametrize("name", CASES)
def test_cli_and_guess(name: str) -> None:
    check_cli("vsprof", name, "default")
    check_guess("vsprof", name)


@pytest.mark.parametrize("name", CASES)
def test_any_split(name: str) -> None:
    check_any_split(VsprofCollapser, (DATA / "vsprof" / f"{name}.csv").read_bytes())


@pytest.mark.parametrize(
    ("text", "value"), [(b'"8,735"', 8735), (b"8.735", 8735), (b"12x", 12), (b"x", 0)]
)
def test_perl_integer(text: bytes, value: int) -> None:
    assert perl_integer(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [(b'"2,893,824",1', 2893824), (b"471,2", 471), (b'"1 000",', 1000), (b"", 0)],
)
def test_next_number(text: bytes, value: int) -> None:
    found = next_number(text)
    assert found is not None and found[0] == value


@pytest.mark.parametrize("text", [b'"2893824",', b'"28,93824",', b'"2,893.82",', b"1000,"])
def test_next_number_refuses(text: bytes) -> None:
    assert next_number(text) is None


SAMPLING = b"Level,Function Name,Inclusive Samples,Exclusive Samples\n"


def test_a_skipped_level_is_warned_and_the_rest_counts(caplog: pytest.LogCaptureFixture) -> None:
    text = SAMPLING + b'1,"main",10,0\n3,"deep",5,5\n2,"f",7,7\n'
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        profile = fold(VsprofCollapser(), text)
    assert profile.counts == {"main;f": 7}
    assert "skips a level" in caplog.text


def test_an_empty_export_folds_to_nothing() -> None:
    assert fold(VsprofCollapser(), SAMPLING).counts == {}


def test_is_applicable() -> None:
    assert is_applicable(SAMPLING) is True
    assert is_applicable(b"Level,Func") is None
    assert is_applicable(b"Function Stack,CPU Time:Self,Module\n") is False
