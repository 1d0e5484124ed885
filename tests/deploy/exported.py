"""The metric names the daemon exports (issue 6's list), and a PromQL name extractor.

The deploy tests check that every query in the dashboard and the alert rules
names only these. The list is kept here by hand, from the daemon's contract,
so that a renamed metric breaks a test instead of a dashboard.
"""

from __future__ import annotations

import re

COUNTERS = {
    "flamed_collapse_input_bytes_total": {"target", "format"},
    "flamed_collapse_samples_total": {"target"},
    "flamed_collapse_seconds_total": {"target", "format"},
    "flamed_collector_restarts_total": {"target", "reason"},
    "flamed_chunks_dropped_total": {"target", "reason"},
    "flamed_config_reloads_total": {"result"},
    "flamed_samples_lost_total": {"target"},
    "flamed_samples_late_total": {"target"},
    "flamed_perf_records_fixed_total": {"target", "fix"},
    "flamed_jit_map_refused_total": {"target", "kind", "reason"},
}
GAUGES = {
    "flamed_collector_up": {"target"},
    "flamed_target_pids": {"target"},
    "flamed_window_stacks": {"target"},
    "flamed_build_info": {"version"},
}
HISTOGRAMS = {
    "flamed_render_seconds": set(),
    "flamed_http_request_duration_seconds": {"route", "code"},
}
# prometheus_client's ProcessCollector.
PROCESS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}
# Added by Prometheus itself to every scrape.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def exported_names() -> set[str]:
    names = set(COUNTERS) | set(GAUGES) | PROCESS | SYNTHETIC
    for histogram in HISTOGRAMS:
        names |= {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}
    return names


def labels_of(name: str) -> set[str]:
    """The labels a series of `name` carries (plus `le` for histogram buckets)."""
    for table in (COUNTERS, GAUGES):
        if name in table:
            return table[name]
    for histogram, labels in HISTOGRAMS.items():
        if name.startswith(histogram + "_"):
            return labels | ({"le"} if name.endswith("_bucket") else set())
    return set()


KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "inf", "nan", "atan2",
}  # fmt: skip
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"(?<![A-Za-z0-9_.:])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(query: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels removed).

    Grafana variables (``$target``, ``${target}``, ``$__rate_interval``) are removed too.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', query)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for match in IDENT.finditer(text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names
