"""``[[exporters]]``: where completed buckets are pushed (Grafana Pyroscope, Parca).

``ExporterConfig`` is one table, validated, with its credentials read through
the same bounded, FIFO-safe secret reader as ``token_file``. The pushing is
``flamed.daemon.export``'s; the document as a whole is ``flamed.daemon.config``'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from flamed.collector.base import PROFILE_TYPES
from flamed.daemon.tables import KeyPath, TableReader, given

ExportKind = Literal["pyroscope", "parca"]
EXPORT_MAX_AGE: dict[ExportKind, tuple[float, float | None]] = {
    # (default, limit): Pyroscope refuses profiles over an hour old; 5 minutes are left
    # for clock skew and transit.
    "pyroscope": (3300.0, 3600.0),
    "parca": (3600.0, None),
}
EXPORTER_KEYS = (
    "name", "kind", "url", "labels", "targets", "profiles", "user", "password_file", "token_file",
    "tenant", "queue", "timeout", "max_age",
)  # fmt: skip
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True)
class ExporterConfig:
    """One ``[[exporters]]`` table, validated, with its credentials read."""

    name: str
    kind: ExportKind
    url: str
    labels: tuple[tuple[str, str], ...] = ()
    """Extra labels on every push (``hostname`` unless set to ``""``)."""
    targets: tuple[str, ...] = ()
    """The targets pushed; empty means all."""
    profiles: tuple[str, ...] = PROFILE_TYPES
    """The profile types pushed, of those a target records (``offcpu`` only with
    ``offcpu = true``)."""
    user: str | None = None
    password_file: str | None = None
    password: str | None = field(default=None, repr=False)
    token_file: str | None = None
    token: str | None = field(default=None, repr=False)
    tenant: str | None = None
    """Sent as ``X-Scope-OrgID`` (multi-tenant Pyroscope)."""
    queue: int = 64
    """Buckets waiting at most; beyond it the oldest waiting one is dropped."""
    timeout: float = 30.0
    """Seconds for one HTTP attempt."""
    max_age: float = EXPORT_MAX_AGE["pyroscope"][0]
    """Buckets older than this when their turn comes are dropped, not sent."""

    def wants(self, target: str, profile: str = "cpu") -> bool:
        return (not self.targets or target in self.targets) and profile in self.profiles


def read_exporters(
    reader: TableReader, value: object, targets: set[str], hostname: Callable[[], str]
) -> tuple[ExporterConfig, ...]:
    configs: list[ExporterConfig] = []
    for index, table in enumerate(reader.tables(value, ("exporters",), "exporters")):
        path: KeyPath = ("exporters", index)
        config = read_exporter(reader, table, path, targets, hostname)
        if any(other.name == config.name for other in configs):
            raise reader.fail((*path, "name"), f"duplicate exporter name {config.name!r}; set name")
        configs.append(config)
    return tuple(configs)


def read_exporter(
    reader: TableReader,
    table: dict[str, Any],
    path: KeyPath,
    targets: set[str],
    hostname: Callable[[], str],
) -> ExporterConfig:
    reader.check_keys(table, EXPORTER_KEYS, path)
    kind = cast("ExportKind | None", reader.choice(table, "kind", tuple(EXPORT_MAX_AGE), path))
    if kind is None:
        raise reader.fail((*path, "kind"), f"missing (one of {', '.join(EXPORT_MAX_AGE)})")
    return ExporterConfig(
        name=reader.name(table, path, kind),
        kind=kind,
        url=read_url(reader, table, path),
        labels=read_labels(reader, table, path, hostname),
        targets=read_target_names(reader, table, path, targets),
        profiles=read_profiles(reader, table, path),
        tenant=read_tenant(reader, table, path),
        max_age=read_max_age(reader, table, path, kind),
        **given(
            queue=reader.integer(table, "queue", path, 1, 10_000, " buckets"),
            timeout=reader.duration(table, "timeout", path, HOUR),
        ),
        **read_credentials(reader, table, path),
    )


def read_url(reader: TableReader, table: Mapping[str, Any], path: KeyPath) -> str:
    url = reader.get(table, "url", str, path)
    if url is None:
        raise reader.fail(
            (*path, "url"), "missing (the receiver's base URL, e.g. http://host:4040)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.fail((*path, "url"), f"{url!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise reader.fail(
            (*path, "url"), f"{url!r}: give the base URL, without ?query or #fragment"
        )
    return url


def read_labels(
    reader: TableReader, table: Mapping[str, Any], path: KeyPath, hostname: Callable[[], str]
) -> tuple[tuple[str, str], ...]:
    labels = reader.table(table.get("labels", {}), (*path, "labels"))
    out = {"hostname": hostname()}
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
            reason = f"{name!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)"
            raise reader.fail((*path, "labels"), reason)
        if not isinstance(value, str):
            raise reader.fail((*path, "labels"), f"{name}: expected a string value")
        out[name] = value
    return tuple(out.items())


def read_target_names(
    reader: TableReader, table: Mapping[str, Any], path: KeyPath, targets: set[str]
) -> tuple[str, ...]:
    value = table.get("targets", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise reader.fail((*path, "targets"), "expected an array of target names")
    for name in value:
        if name not in targets:
            raise reader.fail((*path, "targets"), f"no target named {name!r}")
    return tuple(cast(list[str], value))


def read_profiles(reader: TableReader, table: Mapping[str, Any], path: KeyPath) -> tuple[str, ...]:
    value = table.get("profiles", list(PROFILE_TYPES))
    known = ", ".join(f'"{name}"' for name in PROFILE_TYPES)
    if not isinstance(value, list) or not value or not all(v in PROFILE_TYPES for v in value):
        raise reader.fail((*path, "profiles"), f"expected a non-empty array of {known}")
    return tuple(name for name in PROFILE_TYPES if name in value)


def read_tenant(reader: TableReader, table: Mapping[str, Any], path: KeyPath) -> str | None:
    tenant = reader.get(table, "tenant", str, path)
    if tenant is not None and (not tenant or any(c in tenant for c in "\r\n")):
        raise reader.fail((*path, "tenant"), "must be a non-empty single line")
    return tenant


def read_max_age(
    reader: TableReader, table: Mapping[str, Any], path: KeyPath, kind: ExportKind
) -> float:
    default, limit = EXPORT_MAX_AGE[kind]
    seconds = reader.duration(table, "max_age", path, DAY)
    if seconds is not None and limit is not None and seconds > limit:
        raise reader.fail((*path, "max_age"), f"{kind} refuses profiles older than {limit:g}s")
    return default if seconds is None else seconds


def read_credentials(
    reader: TableReader, table: Mapping[str, Any], path: KeyPath
) -> dict[str, Any]:
    user = reader.get(table, "user", str, path)
    if (user is None) != ("password_file" not in table):
        missing = "password_file" if user is not None else "user"
        raise reader.fail((*path, missing), "missing (basic auth needs user and password_file)")
    if "token_file" in table and user is not None:
        raise reader.fail(
            (*path, "token_file"), "give basic auth (user) or a bearer token, not both"
        )
    password = reader.secret(table, "password_file", path) or (None, None)
    token = reader.secret(table, "token_file", path) or (None, None)
    return {
        "user": user,
        "password_file": password[0],
        "password": password[1],
        "token_file": token[0],
        "token": token[1],
    }
