"""collapse bpftrace against stackcollapse-bpftrace.pl (tests/data/bpftrace, recorded)."""

from __future__ import annotations

import pytest

from flamed.collapse.bpftrace import BpftraceCollapser, is_applicable
from tests.collapse.goldens import check_any_split, check_cli, check_golden, check_guess, fold
from tests.conftest import DATA

CASES = ["kstack", "kstack-ustack-comm"]


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    check_golden(BpftraceCollapser, "bpftrace", name, "default")


@pytest.mark.parametrize("name", CASES)
def test_cli_and_guess(name: str) -> None:
    check_cli("bpftrace", name, "default")
    check_guess("bpftrace", name)


@pytest.mark.parametrize("name", CASES)
def test_any_split(name: str) -> None:
    check_any_split(BpftraceCollapser, (DATA / "bpftrace" / f"{name}.txt").read_bytes())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"@[\n    k1+1\n    k2+2\n, \n    u1+3\n, prog]: 5\n", {"prog;u1+3;k2+2;k1+1": 5}),
        (b"@[, \n    u1+3\n    u2\n, prog]: 2\n", {"prog;u2;u1+3": 2}),
        (b"@[, , prog]: 4\n@[prog]: 1\n", {"prog": 5}),
        (b"@stacks[\n    k1\n]: 3\n", {"k1": 3}),
        (b"@[\n    k1\n", {}),  # cut short: dropped
    ],
)
def test_entries(text: bytes, expected: dict[str, int]) -> None:
    assert fold(BpftraceCollapser(), text).counts == expected


def test_is_applicable() -> None:
    assert is_applicable(b"Attaching 2 probes...\n\n\n@[\n") is True
    assert is_applicable(b"Attaching 2 probes...\n") is None
    assert is_applicable(b"main;f 1\n") is False
