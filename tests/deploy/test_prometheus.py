"""deploy/prometheus: promtool accepts the scrape config and the rules, and the alerts fire.

The alert behaviour is checked with `promtool test rules` on synthetic series
built here; the expected annotations are the rules' own templates expanded by
a small renderer below, so a template naming a label the alert lacks fails.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.exported import exported_names, labels_of, metric_names

FOLDER = ROOT / "deploy" / "prometheus"
CONFIG = FOLDER / "prometheus.yml"
RULES = FOLDER / "flamed.rules.yml"
PROMTOOL = shutil.which("promtool")
JOB = {"job": "flamed", "instance": "host:9797"}

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus)")
pytestmark = pytest.mark.prometheus


def promtool(*args: str, cwd: Path = FOLDER) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def load_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in load_rules() if "alert" in rule}


@needs_promtool
def test_promtool_accepts_the_scrape_config() -> None:
    result = promtool("check", "config", CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_job_points_at_the_daemon() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == [RULES.name]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "flamed"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert targets == ["127.0.0.1:9797"]


def test_every_rule_names_only_exported_metrics() -> None:
    known = exported_names()
    for rule in load_rules():
        names = metric_names(str(rule["expr"]))
        assert names, rule
        assert names <= known, (rule.get("alert") or rule.get("record"), names - known)


def test_the_issue_s_alerts_exist_with_severity_and_text() -> None:
    found = alerts()
    wanted = {
        "FlamedScrapeDown": "up",
        "FlamedCollectorDown": "flamed_collector_up",
        "FlamedCollectorRestarting": "flamed_collector_restarts_total",
        "FlamedNoSamples": "flamed_collapse_samples_total",
        "FlamedChunksDropped": "flamed_chunks_dropped_total",
        "FlamedConfigReloadFailing": "flamed_config_reloads_total",
    }
    for name, metric in wanted.items():
        assert name in found, name
        assert metric in metric_names(str(found[name]["expr"])), name
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_annotations_use_only_labels_the_alert_has() -> None:
    """A template such as {{ $labels.target }} must refer to a label the expression keeps."""
    for name, rule in alerts().items():
        expr = str(rule["expr"])
        kept = kept_labels(expr)
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in kept, f"{name}: {label} not in {kept}"


def kept_labels(expr: str) -> set[str]:
    """The labels an alert's result carries: its `by (...)` list, else the metric's own."""
    grouping = re.search(r"\bby\s*\(([^)]*)\)", expr)
    if grouping:
        return {label.strip() for label in grouping.group(1).split(",")}
    labels = {"job", "instance"}
    for name in metric_names(expr):
        labels |= labels_of(name)
    return labels


# -- promtool test rules ----------------------------------------------------------------------


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {**JOB, **labels}
    inner = ", ".join(f'{key}="{value}"' for key, value in sorted(all_labels.items()))
    return {"series": f"{metric}{{{inner}}}", "values": values}


def render(template: str, labels: dict[str, str], value: str) -> str:
    """Expand the two template forms the rules use: $labels.NAME and $value | humanize."""
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return re.sub(r"\{\{\s*\$value\s*\|\s*humanize\s*\}\}", value, text)


def expect(alert: str, value: str = "", **labels: str) -> dict[str, Any]:
    rule = alerts()[alert]
    all_labels = {**labels, **rule["labels"]}
    annotations = {
        key: render(text, all_labels, value) for key, text in rule["annotations"].items()
    }
    return {"exp_labels": all_labels, "exp_annotations": annotations}


def case(alert: str, at: str, *expected: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": list(expected)}


def rule_test_groups() -> list[dict[str, Any]]:
    """Synthetic scrapes (one a minute) and the alerts they must and must not raise."""
    return [
        {
            "interval": "1m",
            "input_series": [
                series("up", "1 1 0x10"),
                series("flamed_collector_up", "1 1 0x10", target="api"),
                series("flamed_collector_up", "1x40", target="system"),
                series("flamed_collector_up", "1x40", target="idle"),
                series("flamed_collapse_samples_total", "0+500x40", target="system"),
                series("flamed_collapse_samples_total", "700x40", target="idle"),
                series("flamed_collector_restarts_total", "0+1x10", target="api", reason="exit"),
                series("flamed_collector_restarts_total", "0x20", target="system", reason="exit"),
                series(
                    "flamed_chunks_dropped_total", "0 0 0 4 4 4", target="system", reason="full"
                ),
                series("flamed_config_reloads_total", "0 0 1 1 1", result="error"),
                series(
                    "flamed_jit_map_refused_total",
                    "0 0 0 2 2",
                    target="node",
                    kind="perf-map",
                    reason="owner",
                ),
                series("flamed_config_reloads_total", "0 1 2 3 4", result="success"),
            ],
            "alert_rule_test": [
                case("FlamedScrapeDown", "5m"),
                case("FlamedScrapeDown", "8m", expect("FlamedScrapeDown", **JOB)),
                case("FlamedCollectorDown", "4m"),
                case(
                    "FlamedCollectorDown", "8m", expect("FlamedCollectorDown", **JOB, target="api")
                ),
                case(
                    "FlamedCollectorRestarting",
                    "6m",
                    expect("FlamedCollectorRestarting", "6", **JOB, target="api"),
                ),
                case("FlamedNoSamples", "10m"),
                case("FlamedNoSamples", "30m", expect("FlamedNoSamples", **JOB, target="idle")),
                case("FlamedChunksDropped", "2m"),
                case(
                    "FlamedChunksDropped",
                    "5m",
                    expect("FlamedChunksDropped", "4", **JOB, target="system", reason="full"),
                ),
                case("FlamedJitMapsRefused", "2m"),
                case(
                    "FlamedJitMapsRefused",
                    "4m",
                    expect(
                        "FlamedJitMapsRefused",
                        "2",
                        **JOB,
                        target="node",
                        kind="perf-map",
                        reason="owner",
                    ),
                ),
                case("FlamedConfigReloadFailing", "1m"),
                case("FlamedConfigReloadFailing", "4m", expect("FlamedConfigReloadFailing", **JOB)),
            ],
        },
        {
            "interval": "1m",
            "input_series": [series("flamed_build_info", "1x30", version="0.1.0")],
            "alert_rule_test": [
                case("FlamedAbsent", "10m"),
                case("FlamedAbsent", "20m", expect("FlamedAbsent", job="flamed")),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series(
                    "flamed_collapse_input_bytes_total", "0+6000x10", target="system", format="perf"
                ),
                series("flamed_collapse_seconds_total", "0+6x10", target="system", format="perf"),
            ],
            "promql_expr_test": [
                {
                    "expr": "target:flamed_collapse_throughput_bytes_per_second:rate5m",
                    "eval_time": "10m",
                    "exp_samples": [
                        {
                            "labels": "target:flamed_collapse_throughput_bytes_per_second:rate5m"
                            '{instance="host:9797", job="flamed", target="system"}',
                            "value": 1000,
                        }
                    ],
                }
            ],
        },
    ]


@needs_promtool
def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    shutil.copy2(RULES, tmp_path / RULES.name)
    spec = {"rule_files": [RULES.name], "evaluation_interval": "1m", "tests": rule_test_groups()}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the shipped config and rules against a real daemon and a real Prometheus -------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())["data"]
    except (OSError, ValueError):
        return None


def shipped_config_for(daemon_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, pointed at a test port and scraping every second."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (job,) = config["scrape_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{daemon_port}"]
    return config


@contextlib.contextmanager
def running(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out, subprocess.Popen(command, stdout=out, stderr=out) as proc:
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.perf
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus")
@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed")
def test_the_rules_evaluate_cleanly_against_a_real_daemon(tmp_path: Path) -> None:
    daemon_port, prom_port = free_port(), free_port()
    flamed_config = tmp_path / "flamed.toml"
    flamed_config.write_text(
        f'[server]\nlisten = "127.0.0.1:{daemon_port}"\n[storage]\n'
        f'state_dir = "{tmp_path / "state"}"\nbucket = "2s"\nretention = "1m"\n'
        '[[targets]]\nname = "system"\nall = true\n'
    )
    shutil.copy2(RULES, tmp_path / RULES.name)
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump(shipped_config_for(daemon_port)), encoding="utf-8")
    daemon = [sys.executable, "-m", "flamed.daemon.cli", "run", "--config", str(flamed_config)]
    prometheus = [
        str(shutil.which("prometheus")),
        f"--config.file={prom_config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    with running(daemon, tmp_path / "flamed.log"), running(prometheus, tmp_path / "prom.log"):
        check_rules_live(prom_port)


def check_rules_live(port: int) -> None:
    def samples_recorded() -> bool:
        found = api(port, "/api/v1/query", query="target:flamed_collapse_samples:rate5m > 0")
        return bool(found and found["result"])

    wait_until(samples_recorded, 120, "the recording rule never saw samples")
    rules = [rule for group in api(port, "/api/v1/rules")["groups"] for rule in group["rules"]]
    assert len(rules) == len(load_rules())
    for rule in rules:
        assert rule["health"] == "ok", rule
    up = api(port, "/api/v1/query", query='up{job="flamed"}')["result"]
    assert [sample["value"][1] for sample in up] == ["1"]
    throughput = "target:flamed_collapse_throughput_bytes_per_second:rate5m"
    wait_until(lambda: bool(api(port, "/api/v1/query", query=throughput)["result"]), 60, throughput)

    # A healthy daemon raises nothing, not even pending, once samples flow. Before the
    # first one is folded FlamedNoSamples may be pending (rightly); it must clear at
    # the next evaluations of its group, which may lag the recording rules' by seconds.
    deadline = time.monotonic() + 10
    alerts = api(port, "/api/v1/alerts")["alerts"]
    while alerts and time.monotonic() < deadline:
        time.sleep(0.5)
        alerts = api(port, "/api/v1/alerts")["alerts"]
    assert alerts == [], alerts
