"""The pprof encoder, read back by two independent decoders.

Every profile is decoded by Python ``protobuf`` (with the public profile.proto
compiled here) and by the npm ``pprof-format`` under Node.js, and turned back
into folded stacks that must equal the input. Parca's rules (ids 1..n without
gaps, one value per sample type) and Pyroscope's limits (16,000 samples, 4 MiB)
are checked on what the decoders saw, not on our own bytes.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse.folded import OTHER, Folded, read_folded
from flamed.render.pprof import (
    PYROSCOPE_MAX_BYTES,
    PYROSCOPE_MAX_SAMPLES,
    PprofOptions,
    encode_pprof,
    encode_within,
    varint,
)
from tests.conftest import CONFORMANCE, DATA
from tests.render.pprofread import (
    Decoded,
    decode_node,
    decode_protobuf,
    go_pprof_raw,
    node_decoder,
    profile_module,
)

Decode = Callable[[bytes], Decoded]

SMALL = Folded(
    {
        "main;parse;read": 7,
        "main;parse;lex": 3,
        "main;render": 120,
        "main": 1,
        "[unknown];read": 2,
        "java;Foo::bar(int, char*);std::vector<int>::push_back": 40,
        "python;λ;café": 5,
        "one frame with spaces": 9,
    }
)


@pytest.fixture(scope="session")
def pb_module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return profile_module(str(tmp_path_factory.mktemp("proto")))


@pytest.fixture(scope="session")
def node_script(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pprof-format, installed once into pytest's cache (or a temporary folder without one)."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("pprof-format") if cache is not None else None
    return node_decoder(folder or tmp_path_factory.mktemp("pprof-format"))


@pytest.fixture(params=["protobuf", "pprof-format"])
def decode(request: pytest.FixtureRequest) -> Decode:
    if request.param == "protobuf":
        module = request.getfixturevalue("pb_module")
        return lambda data: decode_protobuf(module, data)
    script = request.getfixturevalue("node_script")
    return lambda data: decode_node(script, data)


def check_parca_rules(profile: Decoded) -> None:
    """Ids 1..n in order, every reference resolves, one value per sample type."""
    assert profile.string_table[0] == ""
    for table in (profile.mappings, profile.locations, profile.functions):
        assert [item["id"] for item in table] == list(range(1, len(table) + 1))
    mapping_ids = {m["id"] for m in profile.mappings}
    function_ids = {f["id"] for f in profile.functions}
    location_ids = {loc["id"] for loc in profile.locations}
    for location in profile.locations:
        assert location["mapping_id"] in mapping_ids
        assert location["functions"] and set(location["functions"]) <= function_ids
    for sample in profile.samples:
        assert len(sample["values"]) == len(profile.sample_types)
        assert sample["location_ids"] and set(sample["location_ids"]) <= location_ids
    names = [f["name"] for f in profile.functions]
    assert len(names) == len(set(names)), "one Function per distinct frame"


def test_round_trip(decode: Decode) -> None:
    profile = decode(encode_pprof(SMALL, frequency=99))
    assert profile.folded() == SMALL.counts
    check_parca_rules(profile)


def test_header_values_and_times(decode: Decode) -> None:
    data = encode_pprof(
        SMALL, frequency=250, start_ns=1_700_000_000_000_000_000, duration_ns=10_000_000_000
    )
    profile = decode(data)
    assert profile.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert profile.period_type == ("cpu", "nanoseconds")
    assert profile.period == 4_000_000
    assert profile.time_nanos == 1_700_000_000_000_000_000
    assert profile.duration_nanos == 10_000_000_000
    for sample in profile.samples:
        count, nanos = sample["values"]
        assert nanos == count * 4_000_000


def test_stacks_are_leaf_first_and_frames_shared(decode: Decode) -> None:
    profile = decode(encode_pprof(Folded({"root;mid;leaf": 1, "root;mid;other": 2})))
    names = {f["id"]: f["name"] for f in profile.functions}
    frames = {loc["id"]: names[loc["functions"][0]] for loc in profile.locations}
    stacks = sorted([frames[i] for i in s["location_ids"]] for s in profile.samples)
    assert stacks == [["leaf", "mid", "root"], ["other", "mid", "root"]]
    assert sorted(names.values()) == ["leaf", "mid", "other", "root"]
    assert len(profile.locations) == 4


def test_labels_on_every_sample(decode: Decode) -> None:
    profile = decode(encode_pprof(SMALL, labels={"target": "web", "hostname": "h1"}))
    assert profile.samples
    for sample in profile.samples:
        assert sample["labels"] == [("target", "web"), ("hostname", "h1")]


def test_fractional_counts_are_rounded_and_zeros_left_out(decode: Decode) -> None:
    profile = decode(encode_pprof(Folded({"a;b": 2.6, "a;c": 0.3, "a;d": 4})))
    assert profile.folded() == {"a;b": 3, "a;d": 4}
    assert {f["name"] for f in profile.functions} == {"a", "b", "d"}


def test_empty_profile(decode: Decode) -> None:
    profile = decode(encode_pprof(Folded()))
    assert profile.samples == []
    assert profile.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    check_parca_rules(profile)


def test_invalid_utf8_frames_still_decode(decode: Decode) -> None:
    folded = read_folded(b"main;bad\xff\xfename;ok 3\nmain 1\n")
    profile = decode(encode_pprof(folded))
    assert profile.folded() == {"main;bad\ufffd\ufffdname;ok": 3, "main": 1}


def test_large_counts_and_negative_values_survive(decode: Decode) -> None:
    folded = Folded({"a": 2**32, "b": -5, "c": 2**60})
    profile = decode(encode_pprof(folded, frequency=1))
    assert profile.folded() == {"a": 2**32, "b": -5, "c": 2**60}
    nanos = sorted(s["values"][1] for s in profile.samples)
    assert nanos == [-5 * 10**9, 2**32 * 10**9, 2**63 - 1]  # the last one clamped to int64


def real_profiles() -> list[Path]:
    paths = sorted(DATA.glob("perf/*.folded"))
    paths += sorted((CONFORMANCE / "flamegraph").glob("*.folded"))
    return paths


@pytest.mark.parametrize("path", real_profiles(), ids=lambda p: p.name)
def test_real_profiles_round_trip(decode: Decode, path: Path) -> None:
    folded = read_folded(path.read_bytes())
    integral = Folded({stack: round(count) for stack, count in folded.items() if round(count)})
    profile = decode(encode_pprof(integral, frequency=99))
    assert profile.folded() == integral.counts
    check_parca_rules(profile)


def test_go_tool_pprof_shows_the_same_stacks(tmp_path: Path) -> None:
    data = encode_pprof(SMALL, frequency=99, labels={"target": "web"})
    profile = go_pprof_raw(data, tmp_path)
    assert profile.folded() == SMALL.counts  # names exactly, C++ parameters included
    assert profile.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert profile.period_type == ("cpu", "nanoseconds")
    assert profile.period == round(1e9 / 99)
    for sample in profile.samples:
        assert sample["labels"] == [("target", "web")]
        assert sample["values"][1] == sample["values"][0] * profile.period


@pytest.mark.parametrize("path", real_profiles()[:4], ids=lambda p: p.name)
def test_go_tool_pprof_reads_real_profiles(path: Path, tmp_path: Path) -> None:
    folded = read_folded(path.read_bytes())
    integral = Folded({stack: round(count) for stack, count in folded.items() if round(count)})
    assert go_pprof_raw(encode_pprof(integral), tmp_path).folded() == integral.counts


def test_output_is_deterministic_gzip() -> None:
    one = encode_pprof(SMALL, start_ns=5, duration_ns=6, labels={"a": "b"})
    two = encode_pprof(Folded(dict(reversed(list(SMALL.items())))), start_ns=5, duration_ns=6,
                       labels={"a": "b"})  # fmt: skip
    assert one == two
    assert one[:2] == b"\x1f\x8b"
    assert gzip.decompress(one)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
     (-1, b"\xff" * 9 + b"\x01")],
)  # fmt: skip
def test_varint(value: int, expected: bytes) -> None:
    assert varint(value) == expected


stacks = st.lists(
    st.text(st.characters(blacklist_characters=";\n\r", blacklist_categories=("Cs",)), max_size=8),
    min_size=1,
    max_size=6,
).map(";".join)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(stacks, st.integers(1, 2**50), max_size=30))
def test_any_profile_round_trips_through_protobuf(
    pb_module: ModuleType, counts: dict[str, int]
) -> None:
    profile = decode_protobuf(pb_module, encode_pprof(Folded(counts)))
    assert profile.folded() == counts
    check_parca_rules(profile)


# -- Pyroscope's limits --------------------------------------------------------------------


def many_stacks(n: int, frame_bytes: int = 8) -> Folded:
    """``n`` distinct stacks of three frames; counts 1..n so the heaviest are known."""
    pad = "x" * frame_bytes
    return Folded({f"main;work{i % 97}{pad};leaf{i}{pad}": i + 1 for i in range(n)})


def test_within_limits_is_left_whole(decode: Decode) -> None:
    fitted = encode_within(SMALL, PprofOptions(frequency=99))
    assert fitted.folded_into_other == 0
    assert decode(fitted.data).folded() == SMALL.counts


def test_too_many_samples_are_reduced_with_other(decode: Decode) -> None:
    folded = many_stacks(20_000)
    fitted = encode_within(folded, PprofOptions(frequency=99))
    profile = decode(fitted.data)
    counts = profile.folded()
    assert len(profile.samples) <= PYROSCOPE_MAX_SAMPLES
    assert len(gzip.decompress(fitted.data)) <= PYROSCOPE_MAX_BYTES
    assert sum(counts.values()) == folded.total()
    assert OTHER in counts
    heaviest = sorted(folded.items(), key=lambda item: -item[1])[: PYROSCOPE_MAX_SAMPLES - 1]
    assert all(counts[stack] == count for stack, count in heaviest)
    assert fitted.folded_into_other == 20_000 - (PYROSCOPE_MAX_SAMPLES - 1)
    check_parca_rules(profile)


def test_too_many_bytes_are_reduced_with_other(pb_module: ModuleType) -> None:
    # 6,000 stacks with 1 KiB frame names: ~12 MiB uncompressed, over 4 MiB.
    folded = many_stacks(6_000, frame_bytes=1024)
    fitted = encode_within(folded, PprofOptions(frequency=99))
    raw = gzip.decompress(fitted.data)
    assert len(raw) <= PYROSCOPE_MAX_BYTES
    assert len(raw) > PYROSCOPE_MAX_BYTES // 2, "reduced far more than needed"
    profile = decode_protobuf(pb_module, fitted.data)
    counts = profile.folded()
    assert sum(counts.values()) == folded.total()
    assert OTHER in counts and len(counts) < 6_000
    check_parca_rules(profile)


def test_limits_can_be_set(pb_module: ModuleType) -> None:
    fitted = encode_within(many_stacks(50), max_samples=10)
    counts = decode_protobuf(pb_module, fitted.data).folded()
    assert len(counts) == 10 and OTHER in counts
    assert counts[OTHER] == sum(range(1, 42))
