"""Shared checks of the line-based collapsers against their golden files.

Each format's folder in tests/data holds inputs the project wrote or recorded
(``NAME.txt``, ``.csv``, ``.xml``, ``.prof``) and the reference tool's output for
them (``NAME.OPTION.folded``); tests/data/README.md says how each was made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse.common import Collapser
from flamed.collapse.folded import Folded
from flamed.collapse.guess import GuessCollapser
from tests.conftest import DATA, run_flamed


def fold(collapser: Collapser, data: bytes, cuts: list[int] | None = None) -> Folded:
    """Feed ``data`` cut at ``cuts`` (positions), then finish."""
    start = 0
    for cut in sorted(cuts or []):
        collapser.feed(data[start:cut])
        start = cut
    collapser.feed(data[start:])
    return collapser.finish()


def case_input(fmt: str, name: str) -> Path:
    found = [p for p in (DATA / fmt).glob(f"{name}.*") if not p.name.endswith(".folded")]
    assert len(found) == 1, found
    return found[0]


def expected(fmt: str, name: str, option: str) -> bytes:
    return (DATA / fmt / f"{name}.{option}.folded").read_bytes()


def check_golden(make: Callable[[], Collapser], fmt: str, name: str, option: str) -> None:
    got = fold(make(), case_input(fmt, name).read_bytes()).to_bytes()
    assert got.decode() == expected(fmt, name, option).decode()


def check_cli(fmt: str, name: str, option: str, *args: str) -> None:
    result = run_flamed("collapse", fmt, *args, str(case_input(fmt, name)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected(fmt, name, option)


def check_guess(fmt: str, name: str, option: str = "default") -> None:
    """guess tells the format from the first bytes, and folds as that collapser does."""
    guesser = GuessCollapser()
    got = fold(guesser, case_input(fmt, name).read_bytes(), [200, 201, 3000])
    assert guesser.format is not None and guesser.format.name == fmt
    assert got.to_bytes() == expected(fmt, name, option)


def check_any_split(make: Callable[[], Collapser], data: bytes) -> None:
    """Property: the input cut anywhere, in any number of pieces, folds as it does whole."""
    whole = fold(make(), data)

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.lists(st.integers(0, len(data)), max_size=8))
    def split(cuts: list[int]) -> None:
        assert fold(make(), data, cuts) == whole

    split()
