"""What the profile endpoints send, made from merged queries."""

from __future__ import annotations

import gzip
from types import ModuleType

from flamed.collapse.folded import Folded
from flamed.daemon.query import Query
from flamed.daemon.renders import note, pprof_for
from flamed.daemon.store import Window, make_bucket
from flamed.daemon.timerange import TimeRange
from tests.daemon.conftest import T0
from tests.render.pprofread import decode_protobuf


def test_pprof_for_the_http_api(pb: ModuleType) -> None:
    data = pprof_for(Folded({"a;b": 3}), frequency=100, start=T0, end=T0 + 300, target="web")
    profile = decode_protobuf(pb, data)
    assert profile.folded() == {"a;b": 3}
    assert profile.period == 10_000_000
    assert profile.time_nanos == int(T0 * 1e9) and profile.duration_nanos == 300 * 10**9
    assert profile.samples[0]["labels"] == [("target", "web")]


def test_gzip_of_pushed_profiles_is_real(pb: ModuleType) -> None:
    data = pprof_for(Folded({"x": 1}), frequency=99, start=T0, end=T0 + 10, target="t")
    assert gzip.decompress(data)


def test_the_subtitle_counts_as_the_titles_do() -> None:
    """It said "5744 samples" where the frames' titles say "5,744"; and "1 samples"."""
    window = Window("t", 100, None)
    window.add(make_bucket(T0 - 10, T0, Folded({"a": 5744}), 100, 5744))
    span = TimeRange(T0 - 60, T0, "last 1m")
    assert note(Query("t", span, window, 99, lambda work: work())).endswith(", 5,744 samples")
    single = Window("t", 100, None)
    single.add(make_bucket(T0 - 10, T0, Folded({"a": 1}), 100, 1))
    assert note(Query("t", span, single, 99, lambda work: work())).endswith(", 1 sample")
