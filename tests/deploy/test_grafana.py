"""deploy/grafana/flamed.json: every query names only metrics (and labels) the daemon exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.deploy.exported import (
    COUNTERS,
    GAUGES,
    HISTOGRAMS,
    PROCESS,
    exported_names,
    labels_of,
    metric_names,
)

DASHBOARD = ROOT / "deploy" / "grafana" / "flamed.json"
ALWAYS = {"job", "instance"}  # added by Prometheus to every series


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(items: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"] if items is None else items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries() -> list[str]:
    """Every PromQL expression: panel targets and annotations."""
    found = [target["expr"] for panel in panels() for target in panel.get("targets", [])]
    found += [item["expr"] for item in dashboard()["annotations"]["list"] if "expr" in item]
    return found


def label_values_queries() -> list[tuple[str, str]]:
    """(selector, label) of every `label_values(selector, label)` template variable."""
    out = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", text.strip())
        assert match, f"variable {variable['name']}: unexpected query {text!r}"
        out.append((match.group(1), match.group(2)))
    return out


def test_the_dashboard_has_queries() -> None:
    assert len(queries()) >= 10


@pytest.mark.parametrize("query", queries())
def test_every_query_names_only_exported_metrics(query: str) -> None:
    names = metric_names(query)
    assert names, query
    assert names <= exported_names(), names - exported_names()


def used_labels(query: str) -> set[str]:
    """Label names the query groups by, matches on, or prints in a legend."""
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", query):
        labels |= {label.strip() for label in group.split(",") if label.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", query):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return labels


@pytest.mark.parametrize("query", queries())
def test_every_query_uses_only_labels_its_metrics_carry(query: str) -> None:
    carried = set(ALWAYS)
    for name in metric_names(query):
        carried |= labels_of(name)
    assert used_labels(query) <= carried, (query, used_labels(query) - carried)


def test_template_variables_query_exported_metrics_and_labels() -> None:
    pairs = label_values_queries()
    assert {label for _, label in pairs} >= {"instance", "target"}
    for selector, label in pairs:
        names = metric_names(selector)
        assert names and names <= exported_names(), selector
        carried = set(ALWAYS).union(*(labels_of(name) for name in names))
        assert label in carried and used_labels(selector) <= carried, selector


def test_the_issue_s_panels_are_there() -> None:
    text = "\n".join(queries())
    per_target = {
        "flamed_collapse_input_bytes_total",  # bytes/s per target
        "flamed_collapse_samples_total",  # samples/s per target
    }
    for metric in per_target:
        assert any(metric in q and re.search(r"by \(target\b", q) for q in queries()), metric
    used = set().union(*(metric_names(q) for q in queries()))
    wanted = {
        "flamed_collector_up",  # collector state
        "flamed_collector_restarts_total",  # restarts
        "flamed_window_stacks",  # window sizes
        "flamed_render_seconds_bucket",  # render latency
        "flamed_http_request_duration_seconds_bucket",  # HTTP latency
        "flamed_collapse_seconds_total",  # throughput = bytes / seconds
        "flamed_samples_lost_total",  # the kernel dropped samples: the daemon stalled
        "flamed_jit_map_refused_total",  # JIT frames that stay unnamed
    }
    assert wanted <= used, wanted - used
    assert "histogram_quantile(0.99" in text


def test_each_target_links_to_its_flame_graph() -> None:
    urls = [
        link["url"]
        for panel in panels()
        for override in panel.get("fieldConfig", {}).get("overrides", [])
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    graph = [url for url in urls if "/api/v1/flamegraph?" in url]
    assert graph, urls
    assert all("target=${__data.fields.target}" in url for url in graph)
    assert all(url.startswith("${flamed_url}/") for url in urls)


def test_panels_are_well_formed() -> None:
    all_panels = list(panels())
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_every_variable_used_is_defined() -> None:
    defined = {variable["name"] for variable in dashboard()["templating"]["list"]}
    text = DASHBOARD.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{?(\w+)", text)) - {"__rate_interval", "__data", "__field", "__all"}
    assert used <= defined, used - defined


def test_the_kept_list_matches_what_the_daemon_registers() -> None:
    """Cross-check the hand-kept list against the daemon's own registry, once it exists."""
    metrics = pytest.importorskip("flamed.daemon.metrics", reason="the daemon's metrics module")
    registry = pytest.importorskip("prometheus_client").CollectorRegistry()
    metrics.Metrics(registry)
    registered = set()
    for family in registry.collect():
        registered.add(family.name + ("_total" if family.type == "counter" else ""))
    kept = set(COUNTERS) | set(GAUGES) | set(HISTOGRAMS) | PROCESS
    assert kept <= registered, kept - registered
