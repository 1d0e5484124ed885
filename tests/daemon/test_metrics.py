"""The metric names others build dashboards and alerts on, and promtool's verdict."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flamed.collector.base import MapStats
from flamed.daemon.app import create_app
from flamed.daemon.metrics import ExportMetrics, Metrics, TargetReading
from tests.daemon.conftest import T0, FakeClock, FakeFactory, make_config, wait_for
from tests.daemon.test_app import MakeClient

Client = TestClient[web.Request, web.Application]

NAMES = {
    "flamed_collapse_input_bytes_total": ("counter", {"target", "format"}),
    "flamed_collapse_samples_total": ("counter", {"target"}),
    "flamed_collapse_seconds_total": ("counter", {"target", "format"}),
    "flamed_collector_up": ("gauge", {"target"}),
    "flamed_collector_restarts_total": ("counter", {"target", "reason"}),
    "flamed_chunks_dropped_total": ("counter", {"target", "reason"}),
    "flamed_samples_lost_total": ("counter", {"target"}),
    "flamed_samples_late_total": ("counter", {"target"}),
    "flamed_perf_records_fixed_total": ("counter", {"target", "fix"}),
    "flamed_target_pids": ("gauge", {"target"}),
    "flamed_window_stacks": ("gauge", {"target"}),
    "flamed_render_seconds_count": ("histogram", set()),
    "flamed_http_request_duration_seconds_count": ("histogram", {"route", "code"}),
    "flamed_config_reloads_total": ("counter", {"result"}),
    "flamed_build_info": ("gauge", {"version"}),
    "flamed_jit_map_lines_total": ("counter", {"target", "kind"}),
    "flamed_jit_map_malformed_total": ("counter", {"target", "kind"}),
    "flamed_jit_map_truncated_total": ("counter", {"target", "kind"}),
    "flamed_jit_map_refused_total": ("counter", {"target", "kind", "reason"}),
    "process_resident_memory_bytes": ("gauge", set()),
}


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


@pytest.fixture
async def scraped(
    aiohttp_client: MakeClient, tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> str:
    app = create_app(
        make_config(tmp_path),
        session_factory=factory,
        clock=clock,
        registry=CollectorRegistry(),
        watch=False,
        version="9.9.9",
    )
    client = await aiohttp_client(app)
    await wait_for(lambda: factory.running("a", "b"))
    factory.latest("a").emit(T0 - 10, T0, "main;f 3\nmain;g 1\n")
    factory.latest("b").status.chunks_dropped["backlog"] = 2
    factory.latest("b").status.samples_lost = 17
    factory.latest("a").status.samples_late = 5
    factory.latest("a").status.records_fixed["truncated"] = 4
    factory.latest("b").status.restarts["perf_rss"] = 1
    maps = MapStats(lines=40, malformed=2, refused={"owner": 1})
    factory.latest("b").status.jit_maps = {"perf-map": maps}
    await client.get("/api/v1/flamegraph?target=a")
    await client.get("/api/v1/folded?target=zzz")
    return await (await client.get("/metrics")).text()


async def test_every_documented_metric_is_exported(scraped: str) -> None:
    found = samples(scraped)
    for name, (_, labels) in NAMES.items():
        assert name in found, f"{name} missing"
        if labels:
            assert any(set(sample_labels) >= labels for sample_labels, _ in found[name]), name


async def test_values(scraped: str) -> None:
    found = samples(scraped)
    assert ({"target": "a"}, 4.0) in found["flamed_collapse_samples_total"]
    assert ({"target": "a", "format": "perf"}, float(len("main;f 3\nmain;g 1\n"))) in found[
        "flamed_collapse_input_bytes_total"
    ]
    assert ({"target": "a"}, 1.0) in found["flamed_collector_up"]
    assert ({"target": "a"}, 2.0) in found["flamed_target_pids"]
    assert ({"target": "a"}, 2.0) in found["flamed_window_stacks"]
    assert ({"target": "b", "reason": "backlog"}, 2.0) in found["flamed_chunks_dropped_total"]
    assert ({"target": "b"}, 17.0) in found["flamed_samples_lost_total"]
    assert ({"target": "a"}, 0.0) in found["flamed_samples_lost_total"]
    assert ({"target": "a"}, 5.0) in found["flamed_samples_late_total"]
    assert ({"target": "a", "fix": "truncated"}, 4.0) in found["flamed_perf_records_fixed_total"]
    assert ({"target": "b", "fix": "dropped"}, 0.0) in found["flamed_perf_records_fixed_total"]
    assert ({"target": "b", "reason": "perf_rss"}, 1.0) in found["flamed_collector_restarts_total"]
    assert ({"version": "9.9.9"}, 1.0) in found["flamed_build_info"]
    perf_map = {"target": "b", "kind": "perf-map"}
    assert found["flamed_jit_map_lines_total"] == [(perf_map, 40.0)]  # a reads no maps
    assert found["flamed_jit_map_malformed_total"] == [(perf_map, 2.0)]
    refused = {labels["reason"]: value for labels, value in found["flamed_jit_map_refused_total"]}
    assert refused == {"owner": 1.0, "symlink": 0.0, "not_regular": 0.0, "unreadable": 0.0}
    assert found["flamed_render_seconds_count"] == [({}, 1.0)]
    routes = {
        labels["route"]: labels["code"]
        for labels, _ in found["flamed_http_request_duration_seconds_count"]
    }
    assert routes["/api/v1/flamegraph"] == "200" and routes["/api/v1/folded"] == "404"


def test_labels_never_grow_with_pids_or_stacks() -> None:
    reading = TargetReading("t", True, 5000, 10**6, {"exit": 1}, {})
    metrics = Metrics(CollectorRegistry(), process=False)
    metrics.add_targets(lambda: [reading])
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert "5000" in text and 'pid="' not in text


@pytest.mark.prometheus
async def test_promtool_accepts_the_exposition(scraped: str, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=scraped.encode(), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_metrics_are_registered_on_the_given_registry() -> None:
    registry = CollectorRegistry()
    metrics = ExportMetrics(registry)
    metrics.add("x")
    for result in ("success", "retry", "rejected"):
        value = registry.get_sample_value(
            "flamed_export_pushes_total", {"exporter": "x", "result": result}
        )
        assert value == 0
    for reason in ("queue_full", "too_old", "rejected", "shutdown"):
        value = registry.get_sample_value(
            "flamed_export_dropped_total", {"exporter": "x", "reason": reason}
        )
        assert value == 0
    assert registry.get_sample_value("flamed_export_queue_depth", {"exporter": "x"}) == 0
