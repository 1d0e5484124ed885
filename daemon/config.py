"""The daemon's TOML configuration (a contract): the tables, their defaults, their limits.

Defaults live in the dataclass fields below and nowhere else: a key that is
absent keeps its field's default; a key that is present is checked and, when
zero, negative or absurd, refused, never replaced. Every refusal is a
``ConfigError`` whose message is one line naming the file, the line, the key
and the reason, e.g. ``/etc/flamed.toml:12: targets[1].process: bad regular
expression: ...`` (``flamed.daemon.tables`` reads every table the same way).
Nothing here touches the running daemon: a reload parses a new ``Config`` and
the service applies it only when it is valid.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

from flamed.collapse.errors import ConfigError
from flamed.collector.base import TargetSpec
from flamed.daemon.exporter_config import ExporterConfig, read_exporters
from flamed.daemon.tables import KeyPath, TableReader, given, type_name
from flamed.daemon.timerange import parse_duration

DEFAULT_SOURCE = "<embedded default>"
EVENT_NAME = re.compile(r"[A-Za-z0-9_.:/,=-]{1,200}")
HOST_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63}){0,63}\.?")
SELECTORS = ("all", "pids", "process", "cmdline", "unit")
CALL_GRAPHS = ("fp", "dwarf", "lbr")
BACKENDS = ("auto", "perf", "dtrace", "py-spy")
MAX_BUCKETS = 100_000
"""retention / bucket may not exceed this: it bounds memory and the number of files."""
HOUR, DAY, YEAR = 3600.0, 86400.0, 366 * 86400.0


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9797
    token_file: str | None = None
    """When set, every request but /healthz and /readyz needs ``Authorization: Bearer <token>``."""
    token: str | None = field(default=None, repr=False)
    """The token read from ``token_file`` (its first line)."""
    max_renders: int = 2
    """Renders running at once; further render requests get 503."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names (lower case) a request's ``Host`` header may give besides ``localhost`` and
    addresses; any other name is refused (DNS rebinding)."""

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class StorageConfig:
    state_dir: str
    bucket: float = 10.0
    """Seconds per bucket: the window resolution and the sampler's rotation period."""
    retention: float = DAY
    """Seconds of buckets kept, in memory and on disk."""
    max_stacks: int = 50_000
    """Distinct stacks per bucket; the rarest beyond it are summed into ``[other]``."""
    inbox: str | None = None
    rollup_after: float = 1800.0
    """Buckets older than this are merged into ``rollup``-long ones (memory, files, speed)."""
    rollup: float = 600.0
    memory: float = 600.0
    """Buckets that ended longer ago than this keep only their sample count in memory; their
    stacks are read back from their files by the queries (and the roll-up) that need them."""


@dataclass(frozen=True)
class SamplerConfig:
    """How a target's perf runs (``[profile]``, or the target's table); None: perf's own."""

    perf_path: str | None = None
    """The perf binary: an absolute path, or a name looked up on PATH."""
    event: str | None = None
    """perf's event (``-e``); None: ``cycles`` where the machine counts it, else ``cpu-clock``."""
    mmap_pages: int | None = None
    """perf's ring buffer in pages per CPU (``-m``)."""
    perf_maps: bool | None = None
    """Name JIT frames from the target's own ``/tmp/perf-PID.map`` (flamed's default: yes)."""
    java_perfmap: bool | None = None
    """Ask the target's JVMs for their perf map (as ``jcmd PID Compiler.perfmap`` does)."""
    jitdump: bool | None = None
    """Name JIT frames from the jitdump files the target's JITs map, read by flamed."""
    python_view: bool | None = None
    """Fold CPython 3.12+ ``py::`` frames as Python functions, without the interpreter's."""
    py_spy_native: bool | None = None
    """The py-spy backend adds native (C) frames (``py-spy --native``)."""
    offcpu: bool = False
    """Also record the off-CPU profile (time blocked per stack, bpftrace; Linux, as root)."""
    offcpu_min_block: float = 0.001
    """Seconds: blocks shorter than this are not counted (each costs a map update)."""
    bpftrace_path: str | None = None
    """The bpftrace binary: an absolute path, or a name looked up on PATH."""

    def arguments(self) -> dict[str, Any]:
        """What ``flamed.collector.create_session`` takes from this (the settings given)."""
        return given(**{key: getattr(self, key) for key in PERF_KEYS})

    def offcpu_arguments(self) -> dict[str, Any]:
        """What ``create_session`` takes for the off-CPU sampler."""
        return {
            "profile": "offcpu",
            "min_block_us": round(self.offcpu_min_block * 1e6),
            **given(bpftrace_path=self.bpftrace_path),
        }


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    storage: StorageConfig
    targets: tuple[TargetSpec, ...]
    source: str = DEFAULT_SOURCE
    exporters: tuple[ExporterConfig, ...] = ()
    """``[[exporters]]``: receivers every completed bucket is pushed to (flamed.daemon.export)."""
    samplers: Mapping[str, SamplerConfig] = field(default_factory=dict)
    """Each target's perf settings, by target name (absent: perf's own)."""

    def target(self, name: str) -> TargetSpec | None:
        return next((spec for spec in self.targets if spec.name == name), None)

    def sampler(self, name: str) -> SamplerConfig:
        return self.samplers.get(name, SamplerConfig())


# -- addresses and places ------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError otherwise."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not host:port")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


def default_state_dir(
    env: Mapping[str, str] | None = None, euid: int | None = None, home: str | None = None
) -> str:
    """$STATE_DIRECTORY under systemd, /var/lib/flamed as root, else ~/.local/state/flamed."""
    env = os.environ if env is None else env
    if env.get("STATE_DIRECTORY"):
        return env["STATE_DIRECTORY"].split(":")[0]
    if (os.geteuid() if euid is None else euid) == 0:
        return "/var/lib/flamed"
    base = env.get("XDG_STATE_HOME") or os.path.join(
        home or os.path.expanduser("~"), ".local/state"
    )
    return os.path.join(base, "flamed")


# -- the document --------------------------------------------------------------------------


TOP_KEYS = ("server", "storage", "profile", "targets", "exporters")
SERVER_KEYS = ("listen", "token_file", "max_renders", "allowed_hosts")
STORAGE_KEYS = (
    "state_dir",
    "bucket",
    "retention",
    "max_stacks",
    "inbox",
    "rollup_after",
    "rollup",
    "memory",
)
JIT_KEYS = ("perf_maps", "java_perfmap", "jitdump", "python_view", "py_spy_native")
"""Switches for interpreted and JIT-compiled code (README: "Python, Java, Node")."""
PROFILE_KEYS = ("frequency", "call_graph", "backend", "perf_path", "event", "mmap_pages", *JIT_KEYS)
OFFCPU_KEYS = ("offcpu", "offcpu_min_block", "bpftrace_path")
TARGET_KEYS = ("name", *SELECTORS, *PROFILE_KEYS, *OFFCPU_KEYS)
PERF_KEYS = ("perf_path", "event", "mmap_pages", *JIT_KEYS)
"""What the CPU sampler's session takes from a SamplerConfig."""
SAMPLER_KEYS = (*PERF_KEYS, *OFFCPU_KEYS)


def parse_config(
    text: str,
    source: str = DEFAULT_SOURCE,
    *,
    env: Mapping[str, str] | None = None,
    euid: int | None = None,
    hostname: Callable[[], str] = socket.gethostname,
) -> Config:
    """Parse and validate config text; raises ConfigError naming source, line, key, reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: invalid TOML: {err}") from None
    reader = TableReader(source, text)
    reader.check_keys(data, TOP_KEYS, ())
    server = read_server(reader, reader.table(data.get("server", {}), ("server",)))
    storage = read_storage(reader, reader.table(data.get("storage", {}), ("storage",)), env, euid)
    profile_table = reader.table(data.get("profile", {}), ("profile",))
    reader.check_keys(profile_table, (*PROFILE_KEYS, *OFFCPU_KEYS), ("profile",))
    profile = read_profile(reader, profile_table, ("profile",))
    targets = read_targets(reader, data.get("targets"), profile)
    specs = tuple(spec for spec, _ in targets)
    names = {spec.name for spec in specs}
    exporters = read_exporters(reader, data.get("exporters"), names, hostname)
    samplers = {spec.name: sampler for spec, sampler in targets if sampler != SamplerConfig()}
    return Config(server, storage, specs, source, exporters, samplers)


def load_config(
    path: str | None, *, env: Mapping[str, str] | None = None, euid: int | None = None
) -> Config:
    """Read FILE (or the embedded default when ``path`` is None) and validate it."""
    if path is None:
        return parse_config(default_text(), DEFAULT_SOURCE, env=env, euid=euid)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err.reason}") from None
    return parse_config(text, path, env=env, euid=euid)


def default_text() -> str:
    return resources.files("flamed.daemon").joinpath("default.toml").read_text(encoding="utf-8")


# -- [server] and [storage] ----------------------------------------------------------------


def read_server(reader: TableReader, table: dict[str, Any]) -> ServerConfig:
    path: KeyPath = ("server",)
    reader.check_keys(table, SERVER_KEYS, path)
    host, port = reader.convert(table, "listen", parse_listen, path) or (None, None)
    token = reader.secret(table, "token_file", path)
    return ServerConfig(
        **given(
            host=host,
            port=port,
            token_file=token[0] if token else None,
            token=token[1] if token else None,
            max_renders=reader.integer(table, "max_renders", path, 1, 64),
            allowed_hosts=read_host_names(reader, table, path),
        )
    )


def read_host_names(
    reader: TableReader, table: dict[str, Any], path: KeyPath
) -> tuple[str, ...] | None:
    """``allowed_hosts``: DNS names, without scheme or port, compared in lower case."""
    names = reader.get(table, "allowed_hosts", list, path)
    if names is None:
        return None
    found = []
    for name in names:
        if not isinstance(name, str):
            raise reader.fail((*path, "allowed_hosts"), f"expected a string, got {type_name(name)}")
        if not HOST_NAME.fullmatch(name):
            reason = f"{name!r} is not a host name (no scheme, no port: flamed.example.com)"
            raise reader.fail((*path, "allowed_hosts"), reason)
        found.append(name.lower().removesuffix("."))
    return tuple(found)


def read_storage(
    reader: TableReader, table: dict[str, Any], env: Mapping[str, str] | None, euid: int | None
) -> StorageConfig:
    path: KeyPath = ("storage",)
    reader.check_keys(table, STORAGE_KEYS, path)
    storage = StorageConfig(
        reader.path(table, "state_dir", path) or default_state_dir(env, euid),
        **given(
            bucket=reader.convert(table, "bucket", parse_duration, path),
            retention=reader.convert(table, "retention", parse_duration, path),
            max_stacks=reader.integer(table, "max_stacks", path, 2, 10_000_000),
            inbox=reader.path(table, "inbox", path),
            rollup_after=reader.convert(table, "rollup_after", parse_duration, path),
            rollup=reader.convert(table, "rollup", parse_duration, path),
            memory=reader.convert(table, "memory", parse_duration, path),
        ),
    )
    check_storage(reader, storage)
    return storage


def check_storage(reader: TableReader, storage: StorageConfig) -> None:
    """The durations against their bounds and each other (defaults included)."""
    bucket = storage.bucket
    for key, seconds, low, low_text, high, high_text in (
        ("bucket", bucket, 1.0, "1s", HOUR, "1h"),
        ("retention", storage.retention, bucket, "one bucket", YEAR, "366d"),
        ("rollup", storage.rollup, bucket, "one bucket", DAY, "1d"),
        ("rollup_after", storage.rollup_after, 0.0, "0s", YEAR, "366d"),
        ("memory", storage.memory, bucket, "one bucket", YEAR, "366d"),
    ):
        if seconds < low:
            raise reader.fail(("storage", key), f"must be at least {low_text}")
        if seconds > high:
            raise reader.fail(("storage", key), f"must be at most {high_text}")
    if storage.retention / bucket > MAX_BUCKETS:
        raise reader.fail(
            ("storage", "retention"), f"more than {MAX_BUCKETS} buckets; raise bucket"
        )


# -- [profile] and [[targets]] -------------------------------------------------------------


def read_profile(reader: TableReader, table: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
    """The profile keys given in ``table`` (``[profile]`` or one target's), checked."""
    out = given(
        frequency=reader.integer(table, "frequency", path, 1, 100_000, " Hz"),
        call_graph=reader.choice(table, "call_graph", CALL_GRAPHS, path),
        backend=reader.choice(table, "backend", BACKENDS, path),
        perf_path=reader.convert(table, "perf_path", check_program, path),
        event=reader.convert(table, "event", check_event, path),
        mmap_pages=reader.integer(table, "mmap_pages", path, 1, 1 << 16, " pages"),
        **{key: reader.get(table, key, bool, path) for key in JIT_KEYS},
        offcpu=reader.get(table, "offcpu", bool, path),
        offcpu_min_block=reader.convert(table, "offcpu_min_block", parse_duration, path),
        bpftrace_path=reader.convert(table, "bpftrace_path", check_program, path),
    )
    block = out.get("offcpu_min_block")
    if block is not None and not 1e-6 <= block <= 10.0:
        raise reader.fail((*path, "offcpu_min_block"), "must be from 1us to 10s")
    pages = out.get("mmap_pages")
    if pages is not None and pages & (pages - 1):
        raise reader.fail((*path, "mmap_pages"), f"{pages} is not a power of two (perf -m)")
    return out


def check_program(text: str) -> str:
    """An absolute path or a bare name (looked up on PATH), never one relative to the cwd."""
    if not text.strip() or "\0" in text or ("/" in text and not text.startswith("/")):
        raise ValueError(f"{text!r}: give an absolute path or a name on PATH")
    return text


def check_event(text: str) -> str:
    if not EVENT_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a perf event name (see `perf list`)")
    return text


def read_targets(
    reader: TableReader, value: object, profile: dict[str, Any]
) -> list[tuple[TargetSpec, SamplerConfig]]:
    if value is None:
        raise reader.fail(("targets",), "no [[targets]]: nothing to profile")
    if not isinstance(value, list) or not value:
        raise reader.fail(("targets",), "expected one or more [[targets]] tables")
    targets: list[tuple[TargetSpec, SamplerConfig]] = []
    for index, table in enumerate(reader.tables(value, ("targets",), "targets")):
        spec, sampler = read_target(reader, table, ("targets", index), profile)
        if any(other.name == spec.name for other, _ in targets):
            raise reader.fail(("targets", index, "name"), f"duplicate target name {spec.name!r}")
        targets.append((spec, sampler))
    return targets


def read_target(
    reader: TableReader, table: dict[str, Any], path: KeyPath, profile: dict[str, Any]
) -> tuple[TargetSpec, SamplerConfig]:
    reader.check_keys(table, TARGET_KEYS, path)
    name = reader.name(table, path)
    options = {**profile, **read_profile(reader, table, path)}
    sampler = SamplerConfig(**{key: options.pop(key) for key in SAMPLER_KEYS if key in options})
    return TargetSpec(name=name, **read_selector(reader, table, path), **options), sampler


def read_selector(reader: TableReader, table: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
    chosen = [key for key in SELECTORS if key in table]
    if len(chosen) != 1:
        reason = "missing" if not chosen else f"conflicting keys {', '.join(chosen)}"
        raise reader.fail(path, f"{reason}: set exactly one of {', '.join(SELECTORS)}")
    key = chosen[0]
    if key == "all":
        if reader.get(table, "all", bool, path) is not True:
            raise reader.fail((*path, "all"), "only `all = true` makes sense")
        return {"all": True}
    if key == "pids":
        return {"pids": read_pids(reader, table["pids"], (*path, "pids"))}
    text = cast(str, reader.get(table, key, str, path))
    if key in ("process", "cmdline"):
        try:
            re.compile(text)
        except re.error as err:
            raise reader.fail((*path, key), f"bad regular expression: {err}") from None
    elif not text.strip():
        raise reader.fail((*path, key), "empty unit name")
    return {key: text}


def read_pids(reader: TableReader, value: object, path: KeyPath) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise reader.fail(path, "expected a non-empty array of process ids")
    for pid in value:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise reader.fail(path, f"{pid!r} is not a process id")
    return tuple(cast(list[int], value))
