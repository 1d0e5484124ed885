"""collapse ghcprof against inferno-collapse-ghcprof (tests/data/ghcprof)."""

from __future__ import annotations

import logging

import pytest

from flamed.collapse.ghcprof import GhcProfCollapser, GhcProfOptions, Source, is_applicable
from tests.collapse.goldens import check_any_split, check_cli, check_golden, check_guess, fold
from tests.conftest import DATA

INPUT = DATA / "ghcprof" / "fib.prof"
OPTIONS: dict[str, Source] = {"default": "time", "ticks": "ticks", "bytes": "bytes"}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_golden(option: str) -> None:
    options = GhcProfOptions(source=OPTIONS[option])
    check_golden(lambda: GhcProfCollapser(options), "ghcprof", "fib", option)


@pytest.mark.parametrize("option", ["ticks", "bytes"])
def test_cli(option: str) -> None:
    check_cli("ghcprof", "fib", option, f"--{option}")


def test_guess() -> None:
    check_guess("ghcprof", "fib")


def test_any_split() -> None:
    check_any_split(GhcProfCollapser, INPUT.read_bytes())


def test_without_ticks_column(caplog: pytest.LogCaptureFixture) -> None:
    header = b"COST CENTRE MODULE SRC no. entries %time %alloc %time %alloc\n\n"
    text = header + b"MAIN        MAIN   x    1   0       1.0   0.0    100.0 100.0\n"
    assert fold(GhcProfCollapser(), text).counts == {"MAIN.MAIN": 10}
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        profile = fold(GhcProfCollapser(GhcProfOptions(source="ticks")), text)
    assert profile.counts == {} and "without a ticks column" in caplog.text


def test_is_applicable() -> None:
    assert is_applicable(INPUT.read_bytes()) is True
    assert is_applicable(INPUT.read_bytes()[:100]) is None
    assert is_applicable(b"main;f 1\n") is False
