"""What the profile endpoints send, made from merged queries."""

from __future__ import annotations

import gzip
from types import ModuleType

from flamed.collapse.folded import Folded
from flamed.daemon.renders import pprof_for
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
