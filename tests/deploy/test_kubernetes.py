"""deploy/kubernetes/daemonset.yaml: hostPID, perf's capabilities, probes, resources, Service."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

MANIFEST = ROOT / "deploy" / "kubernetes" / "daemonset.yaml"
PERF_CAPS = {"PERFMON", "SYS_PTRACE", "SYSLOG"}
PORT = 9797


def documents() -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc]
    return docs


def one(kind: str) -> dict[str, Any]:
    found = [doc for doc in documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("DaemonSet")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    assert only["name"] == "flamed"
    return dict(only)


def test_every_object_is_namespaced_and_labelled() -> None:
    for doc in documents():
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "flamed"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "flamed", doc["kind"]
    assert one("Namespace")["metadata"]["name"] == "flamed"


def test_the_daemonset_sees_the_node_s_processes() -> None:
    daemonset = one("DaemonSet")
    assert daemonset["apiVersion"] == "apps/v1"
    selector = daemonset["spec"]["selector"]["matchLabels"]
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    spec = pod_spec()
    assert spec["hostPID"] is True
    assert spec.get("hostNetwork", False) is False
    assert spec["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in spec["tolerations"]


def test_only_perf_s_capabilities_and_no_escalation() -> None:
    security = container()["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == PERF_CAPS
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")


def test_probes_hit_healthz_and_readyz_on_the_served_port() -> None:
    box = container()
    ports = {port["name"]: port["containerPort"] for port in box["ports"]}
    assert ports == {"http": PORT}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = box[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in ("http", PORT), probe
        assert box[probe]["periodSeconds"] > 0 and box[probe]["failureThreshold"] >= 1


def to_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity)


def to_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_resources_are_requested_and_limited() -> None:
    resources = container()["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert 0 < to_cores(requests["cpu"]) <= to_cores(limits["cpu"])
    assert 0 < to_bytes(requests["memory"]) <= to_bytes(limits["memory"])
    # Issue 6: peak RSS of the daemon is at most 150 MB; perf children come on top.
    assert to_bytes(limits["memory"]) >= 256 * 2**20


def test_config_comes_from_the_configmap_and_state_survives_restarts() -> None:
    box, spec = container(), pod_spec()
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in box["volumeMounts"]}
    config_mount = mounts["/etc/flamed"]
    assert config_mount["readOnly"] is True
    configmap = one("ConfigMap")["metadata"]["name"]
    assert volumes[config_mount["name"]]["configMap"]["name"] == configmap
    assert box["args"] == ["run", "--config", "/etc/flamed/flamed.toml"]
    assert "hostPath" in volumes[mounts["/var/lib/flamed"]["name"]]
    assert "/tmp" in mounts  # the root filesystem is read-only


def configmap_toml() -> str:
    text: str = one("ConfigMap")["data"]["flamed.toml"]
    return text


def test_the_configmap_config_listens_where_probes_reach_it() -> None:
    import tomllib

    config = tomllib.loads(configmap_toml())
    assert config["server"]["listen"] == f"0.0.0.0:{PORT}"
    assert config["storage"]["state_dir"] == "/var/lib/flamed"


def test_the_configmap_config_is_valid_for_the_daemon() -> None:
    module = pytest.importorskip("flamed.daemon.config", reason="the daemon's config module")
    config = module.parse_config(configmap_toml(), "daemonset.yaml:flamed.toml")
    assert [target.name for target in config.targets] == ["system"]


def test_a_headless_service_selects_the_pods_for_scraping() -> None:
    service = one("Service")
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    labels = one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= labels.items()
    (port,) = spec["ports"]
    assert port["port"] == PORT and port["targetPort"] in ("http", PORT)
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
