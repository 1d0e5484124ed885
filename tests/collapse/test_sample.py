"""collapse sample against stackcollapse-sample.awk (tests/data/sample)."""

from __future__ import annotations

import logging

import pytest

from flamed.collapse.sample import SampleCollapser, SampleOptions, is_applicable
from tests.collapse.goldens import check_any_split, check_cli, check_golden, check_guess, fold
from tests.conftest import DATA

INPUT = DATA / "sample" / "threads.txt"


@pytest.mark.parametrize("option", ["default", "no-modules"])
def test_golden(option: str) -> None:
    options = SampleOptions(modules=option == "default")
    check_golden(lambda: SampleCollapser(options), "sample", "threads", option)


def test_cli_no_modules() -> None:
    check_cli("sample", "threads", "no-modules", "--no-modules")


def test_guess() -> None:
    check_guess("sample", "threads")


def test_any_split() -> None:
    check_any_split(SampleCollapser, INPUT.read_bytes())


def test_self_samples_and_waiting_threads() -> None:
    profile = fold(SampleCollapser(), INPUT.read_bytes())
    # compute_all: 1700 less its callees' 1200 + 480 + 20
    assert profile["Thread_99150.DispatchQueue_1:;dyld`start;demo`main;demo`compute_all"] == 0
    assert not any("__workq_kernreturn" in stack or "__psynch" in stack for stack in profile)
    # The total is every thread's samples less those of threads found waiting.
    assert profile.total() == 2531 - 31 + 31 + 131


GRAPH = b"Call graph:\n    10 Thread_1\n    + 10 main  (in a.out) + 1  [0x1]\n"


def test_a_call_graph_cut_short_still_counts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        profile = fold(SampleCollapser(), GRAPH)
    assert profile.counts == {"Thread_1;a.out`main": 10, "Thread_1": 0}
    assert "ends inside the call graph" in caplog.text


def test_odd_indentation_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    text = GRAPH + b"    +  5 odd  (in a.out)\nTotal number in stack\n"
    with caplog.at_level(logging.WARNING, "flamed.collapse"):
        profile = fold(SampleCollapser(), text)
    assert profile.counts == {"Thread_1;a.out`main": 10, "Thread_1": 0}
    assert "odd or skipped indentation" in caplog.text


def test_is_applicable() -> None:
    assert is_applicable(INPUT.read_bytes()[:2000]) is True
    assert is_applicable(b"Analysis of sampling x (pid 1) every 1 millisecond\n") is None
    assert is_applicable(b"main;f 1\n") is False
