"""collapse vtune against inferno-collapse-vtune (tests/data/vtune)."""

from __future__ import annotations

import logging

import pytest

from flamed.collapse.vtune import VTuneCollapser, VTuneOptions, is_applicable, milliseconds
from tests.collapse.goldens import check_any_split, check_cli, check_golden, check_guess, fold
from tests.conftest import DATA

INPUT = DATA / "vtune" / "raytracer.csv"
HEADER = b"Function Stack,CPU Time:Self,Module\n"


@pytest.mark.parametrize("option", ["default", "no-modules"])
def test_golden(option: str) -> None:
    options = VTuneOptions(modules=option == "default")
    check_golden(lambda: VTuneCollapser(options), "vtune", "raytracer", option)


def test_cli() -> None:
    check_cli("vtune", "raytracer", "no-modules", "--no-modules")


def test_guess() -> None:
    check_guess("vtune", "raytracer")


def test_any_split() -> None:
    check_any_split(VTuneCollapser, INPUT.read_bytes())


@pytest.mark.parametrize(
    ("text", "ms"),
    [(b"0.0125", 13), (b"2.3455", 2346), (b"0.0004", 0), (b"-1", 0), (b"1e-3", 1)],
)
def test_milliseconds_round_as_rust_does(text: bytes, ms: int) -> None:
    assert milliseconds(text) == ms


@pytest.mark.parametrize("text", [b"", b"1_0", b" 1", b"x", b"inf"])
def test_not_a_time(text: bytes) -> None:
    assert milliseconds(text) is None


def test_a_node_twice_counts_twice_and_a_bom_is_ignored() -> None:
    text = b"\xef\xbb\xbf" + HEADER + b"main,0.001,a\n f,0.002,a\n f,0.003,a\n"
    assert fold(VTuneCollapser(), text).counts == {"a`main": 1, "a`main;a`f": 5}


def test_bad_lines_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    text = HEADER + b"main,0.001,a\n   deep,1,a\n f,lots,a\n g,0.002\n h,0.004,a\n"
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        profile = fold(VTuneCollapser(), text)
    assert profile.counts == {"a`main": 1, "a`main;a`h": 4}
    assert len(caplog.records) == 3


def test_is_applicable() -> None:
    assert is_applicable(INPUT.read_bytes()) is True
    assert is_applicable(b"Function Stack,CPU") is None
    assert is_applicable(b"Level,Function Name\n") is False


def test_quiet_after_the_format_name() -> None:
    from tests.conftest import run_flamed

    rows = HEADER + b"main,x,a\nmain,1.5,a\n"  # a bad row among good ones: warned, skipped
    loud = run_flamed("collapse", "vtune", stdin=rows)
    quiet = run_flamed("collapse", "vtune", "-q", stdin=rows)
    assert b"not a number" in loud.stderr and quiet.stderr == b""
    assert loud.returncode == quiet.returncode == 0 and loud.stdout == quiet.stdout != b""
