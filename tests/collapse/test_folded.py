"""Folded profiles: read/write, merge, diff, pairs (difffolded.pl), top-N with an [other] stack."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse import speedups
from flamed.collapse.folded import (
    OTHER,
    Count,
    Folded,
    FoldedCollapser,
    diff,
    format_count,
    format_pairs,
    is_applicable,
    merge,
    paired,
    parse_line,
    read_folded,
    sorted_bytes,
    strip_hex,
    top,
)
from tests.conftest import NATIVE_PATHS

# A frame as collapsers make them: no `;` (separator), no line breaks or control
# characters, no white space at its ends (the reader trims a stack's end).
FRAME = (
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=";"),
        min_size=1,
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)
STACK = st.lists(FRAME, min_size=1, max_size=6).map(";".join)
INT_COUNT = st.integers(min_value=-(10**12), max_value=10**12)
FLOAT_COUNT = st.floats(allow_nan=False, allow_infinity=False, width=64)
# Halves add up exactly, so sums of them do not depend on the order.
EXACT_COUNT = st.one_of(INT_COUNT, st.integers(-(10**6), 10**6).map(lambda n: n / 2))


def as_profile(counts: Mapping[str, Count]) -> Folded:
    return Folded(dict(counts))


PROFILES = st.dictionaries(STACK, st.one_of(INT_COUNT, FLOAT_COUNT), max_size=20).map(as_profile)
EXACT_PROFILES = st.dictionaries(STACK, EXACT_COUNT, max_size=20).map(as_profile)
POSITIVE_PROFILES = st.dictionaries(STACK, st.integers(1, 10**6), max_size=30).map(as_profile)


@given(PROFILES)
def test_write_then_read_is_the_identity(profile: Folded) -> None:
    assert read_folded(profile.to_bytes()) == profile


@given(FLOAT_COUNT)
def test_format_count_round_trips(count: float) -> None:
    text = format_count(count)
    assert float(text) == count
    assert " " not in text


def test_format_count_prints_like_perl_where_15_digits_suffice() -> None:
    assert format_count(3) == "3"
    assert format_count(3.0) == "3"
    assert format_count(1.5) == "1.5"
    assert format_count(2 / 3) == "0.6666666666666666"  # 15 digits would lose it
    assert format_count(0.1) == "0.1"


@given(EXACT_PROFILES, EXACT_PROFILES, EXACT_PROFILES)
def test_merge_is_associative(a: Folded, b: Folded, c: Folded) -> None:
    assert merge([merge([a, b]), c]) == merge([a, merge([b, c])]) == merge([a, b, c])


@given(EXACT_PROFILES, EXACT_PROFILES)
def test_merge_is_commutative(a: Folded, b: Folded) -> None:
    assert merge([a, b]) == merge([b, a])


@given(EXACT_PROFILES, EXACT_PROFILES)
def test_merge_sums_and_leaves_inputs_alone(a: Folded, b: Folded) -> None:
    before = dict(a.counts)
    merged = merge([a, b])
    assert a.counts == before
    assert set(merged) == set(a) | set(b)
    for stack in merged:
        assert merged[stack] == a.counts.get(stack, 0) + b.counts.get(stack, 0)


@given(PROFILES)
def test_diff_with_itself_is_all_zeros(profile: Folded) -> None:
    difference = diff(profile, profile)
    assert set(difference) == set(profile)
    assert all(count == 0 for _, count in difference.items())


@given(EXACT_PROFILES, EXACT_PROFILES)
def test_diff_then_merge_gives_back_after(before: Folded, after: Folded) -> None:
    restored = merge([before, diff(before, after)])
    assert {s: c for s, c in restored.items() if c} == {s: c for s, c in after.items() if c}


def test_paired_as_difffolded() -> None:
    before = Folded({"a;b": 4, "a;c": 2})
    after = Folded({"a;b": 1, "a;d": 5})
    assert paired(before, after) == {"a;b": (4, 1), "a;c": (2, 0), "a;d": (0, 5)}
    # -n: the first file scaled to the second's total (6/6: unchanged; else truncated)
    assert paired(before, after, normalize=True) == {"a;b": (4, 1), "a;c": (2, 0), "a;d": (0, 5)}
    after.add("a;d", 3)
    assert paired(before, after, normalize=True) == {"a;b": (6, 1), "a;c": (3, 0), "a;d": (0, 8)}
    assert format_pairs(paired(before, after)) == b"a;b 4 1\na;c 2 0\na;d 0 8\n"


def test_paired_keeps_fractions_and_survives_an_empty_first_file() -> None:
    assert paired(Folded({"a": 1.25}), Folded({"a": 0.5})) == {"a": (1.25, 0.5)}
    assert paired(Folded(), Folded({"a": 2}), normalize=True) == {"a": (0, 2)}


def test_strip_hex_merges_stacks_that_differ_by_address() -> None:
    profile = Folded({"f;[x <0x7f00>]": 1, "f;[x <0xAB12>]": 2, "f;0xzz": 3})
    assert strip_hex(profile).counts == {"f;[x <0x...>]": 3, "f;0xzz": 3}


@given(POSITIVE_PROFILES, st.integers(0, 40))
def test_top_keeps_the_largest_and_sums_the_rest(profile: Folded, n: int) -> None:
    kept = top(profile, n)
    assert kept.total() == profile.total()
    assert len(kept) <= n + 1
    if len(profile) <= n:
        assert kept == profile
        return
    others = [count for stack, count in profile.items() if stack not in kept]
    assert kept[OTHER] == sum(others) + profile.counts.get(OTHER, 0)
    smallest_kept = min((c for s, c in kept.items() if s != OTHER), default=math.inf)
    assert all(count <= smallest_kept for count in others)
    assert top(kept, n) == kept


def test_top_breaks_ties_by_stack_and_folds_an_existing_other() -> None:
    profile = Folded({"b": 5, "a": 5, "c": 5, OTHER: 100})
    assert top(profile, 1).counts == {"a": 5, OTHER: 110}
    with pytest.raises(ValueError):
        top(profile, -1)


def test_reader_streams_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    data = b"a;b 3\nno count here\nalso bad x\na;b 1.5\r\nc 2\n"
    collapser = FoldedCollapser()
    with caplog.at_level(logging.WARNING, logger="flamed.collapse"):
        for byte in range(len(data)):
            collapser.feed(data[byte : byte + 1])
        profile = collapser.finish()
    assert profile.counts == {"a;b": 4.5, "c": 2}
    assert collapser.warn.counts == {"folded line without a count": 2}
    assert len(caplog.records) == 1
    assert parse_line("a b c 12") == ("a b c", 12)


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("a;b\t3", ("a;b", 3)),  # any one white-space character separates, as flamegraph.pl
        ("a;  2.5\r", ("a; ", 2.5)),  # only the last one: a frame named " " stays
        ("a b\t c 12", ("a b\t c", 12)),
        (" 5", None),
        ("a;b", None),
        ("a;b 1x", None),
    ],
)
def test_one_line_rule_for_every_reader(line: str, parsed: tuple[str, Count] | None) -> None:
    """One parser for folded text: the collapser, diff-folded and flamegraph all use it."""
    assert parse_line(line) == parsed


def test_is_applicable() -> None:
    assert is_applicable(b"a;b;c 12\nd 3\n") is True
    assert is_applicable(b"a;b;c 12") is None  # no complete line yet
    assert is_applicable(b"  a`f+0x1\n  12\n") is False
    assert is_applicable(b"CPU     ID                    FUNCTION:NAME\n") is False
    assert is_applicable(b"perf 123 [000] 1.0: 1 cpu-clock:\n") is False


FOLDED_LINES = st.one_of(
    st.sampled_from(
        ["a;b 3", "a;b 007", "a;b\t5", "a; 2\r", "x 1.5", "x -2", "x 1e3", " 4", "x", "", "y 5\x0b"]
    ),
    st.builds(lambda s, n: f"{s} {n}", STACK, st.integers(0, 10**20)),
    st.text(max_size=12),
)


@pytest.mark.parametrize("keep_order", [False, True])
@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(FOLDED_LINES, max_size=20),
    junk=st.binary(max_size=8),
    cut=st.integers(0, 400),
)
def test_c_reader_agrees_with_python(
    lines: list[str], junk: bytes, cut: int, keep_order: bool
) -> None:
    """Every line, any bytes, fed in two chunks: the C reader counts what Python counts,
    in the same order, and leaves the same lines to warn about."""
    if NATIVE_PATHS[1].marks:
        pytest.skip("the C speedups were not built")
    data = "\n".join(lines).encode("utf-8", "surrogatepass") + junk
    results = []
    for native in (False, True):
        collapser = FoldedCollapser(keep_order=keep_order, native=native)
        collapser.feed(data[:cut])
        collapser.feed(data[cut:])
        profile = collapser.finish()
        results.append((list(profile.items()), collapser.in_order, collapser.warn.counts))
    assert results[0] == results[1]


@pytest.mark.parametrize("native", NATIVE_PATHS)
@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(FOLDED_LINES, max_size=20),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_any_chunks_read_as_the_whole(lines: list[str], cuts: list[int], native: bool) -> None:
    """Fed in any chunks (lines cut anywhere, chunks without a newline, empty ones), the
    reader counts what it counts from the whole text at once, in the same order."""
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    results = []
    for bounds in ([], sorted(cuts)):
        collapser = FoldedCollapser(keep_order=True, native=native)
        for start, end in pairwise([0, *bounds, len(data)]):
            collapser.feed(data[start:end])
        profile = collapser.finish()
        results.append((list(profile.items()), collapser.in_order, collapser.warn.counts))
    assert results[0] == results[1]


@settings(max_examples=300, deadline=None)
@given(
    counts=st.dictionaries(
        st.one_of(st.text(max_size=12), st.text(alphabet="ab;c[]_ ", max_size=12)),
        st.one_of(
            st.integers(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(allow_nan=False),
            st.booleans(),
        ),
        max_size=20,
    )
)
def test_c_writes_folded_text_as_python_does(counts: dict[str, Count]) -> None:
    """The C speedups write `stack count` lines, sorted bytewise, where every stack is
    ASCII and every count an int that fits 64 bits (else they leave it to Python): the
    same bytes as the pure-Python writer, surrogate-escaped bytes and bools included."""
    module = speedups.built()
    if module is None:
        pytest.skip("the C speedups were not built")
    written = module.folded_bytes(counts)
    simple = all(
        stack.isascii() and type(count) is int and -(2**63) <= count < 2**63
        for stack, count in counts.items()
    )
    assert (written is not None) == simple
    assert written in (None, sorted_bytes(counts))
    assert Folded(counts).to_bytes() == sorted_bytes(counts)
