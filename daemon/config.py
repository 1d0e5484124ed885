"""The daemon's TOML configuration: parsing, validation and defaults (a contract).

Every refusal is a ``ConfigError`` whose message is one line naming the file,
the line where it can be found, the key and the reason, e.g.
``/etc/flamed.toml:12: targets[1].process: bad regular expression: ...``.
Nothing here touches the running daemon: a reload parses a new ``Config`` and
the service applies it only when it is valid.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from flamed.collapse.errors import ConfigError
from flamed.collector.base import TargetSpec

if TYPE_CHECKING:
    from flamed.daemon.export import ExporterConfig

DEFAULT_SOURCE = "<embedded default>"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SELECTORS = ("all", "pids", "process", "cmdline", "unit")
CALL_GRAPHS = ("fp", "dwarf", "lbr")
BACKENDS = ("auto", "perf", "dtrace")
MAX_BUCKETS = 100_000
"""retention / bucket may not exceed this: it bounds memory and the number of files."""


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

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class StorageConfig:
    state_dir: str
    bucket: float = 10.0
    """Seconds per bucket: the window resolution and the sampler's rotation period."""
    retention: float = 86400.0
    """Seconds of buckets kept, in memory and on disk."""
    max_stacks: int = 50_000
    """Distinct stacks per bucket; the rarest beyond it are summed into ``[other]``."""
    inbox: str | None = None
    rollup_after: float = 1800.0
    """Buckets older than this are merged into ``rollup``-long ones (memory, files, speed)."""
    rollup: float = 600.0

    @property
    def max_buckets(self) -> int:
        """Buckets one target can hold: fine ones for ``rollup_after``, rolled-up ones after."""
        fine = min(self.rollup_after, self.retention) / self.bucket
        coarse = max(self.retention - self.rollup_after, 0.0) / self.rollup
        return int(fine + coarse) + 2


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    storage: StorageConfig
    targets: tuple[TargetSpec, ...]
    source: str = DEFAULT_SOURCE
    exporters: tuple[ExporterConfig, ...] = ()
    """``[[exporters]]``: receivers every completed bucket is pushed to (flamed.daemon.export)."""

    def target(self, name: str) -> TargetSpec | None:
        return next((spec for spec in self.targets if spec.name == name), None)


# -- durations and addresses -------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``10s``, ``5m``, ``24h``, ``1h30m``, ``250ms``, ``7d`` -> seconds; ValueError otherwise."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration like 10s, 5m, 24h")
    return total


def format_duration(seconds: float) -> str:
    """The shortest of ``90s``/``5m``/``24h``-style spellings that is exact."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


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


# -- the reader ----------------------------------------------------------------------------


Path_ = tuple[str | int, ...]


class _Reader:
    """Walks the parsed TOML, checking types and keys, and raising one-line errors."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    def fail(self, path: Path_, reason: str) -> ConfigError:
        line = self.find_line(path)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {dotted(path)}: {reason}")

    def find_line(self, path: Path_) -> int | None:
        """Best effort: the line of the key within its table, else of the table's header."""
        if not path:
            return None
        indexed = len(path) > 1 and isinstance(path[1], int)
        index = cast(int, path[1]) if indexed else 0
        rest = path[2:] if indexed else path[1:]
        span = self.table_span(str(path[0]), index)
        if span is None:
            return None
        begin, end = span
        if rest and isinstance(rest[0], str):
            pattern = re.compile(rf"\s*[\"']?{re.escape(rest[0])}[\"']?\s*=")
            for number in range(begin + 1, end):
                if pattern.match(self.lines[number]):
                    return number + 1
        return begin + 1

    def table_span(self, table: str, index: int) -> tuple[int, int] | None:
        """0-based [header, end) of the index-th ``[table]``/``[[table]]`` (or its key line)."""
        header = re.compile(rf"\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
        hits = [n for n, line in enumerate(self.lines) if header.match(line)]
        if not hits:
            key = re.compile(rf"\s*{re.escape(table)}\s*=")
            hits = [n for n, line in enumerate(self.lines) if key.match(line)]
        if index >= len(hits):
            return None
        begin = hits[index]
        end = next(
            (
                n
                for n in range(begin + 1, len(self.lines))
                if self.lines[n].lstrip().startswith("[")
            ),
            len(self.lines),
        )
        return begin, end

    def table(self, value: object, path: tuple[str | int, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {type_name(value)}")
        return value

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], path: Path_) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key (allowed: {', '.join(allowed)})")

    def get(self, table: Mapping[str, Any], key: str, kind: type, path: Path_) -> Any:
        value = table.get(key)
        if value is None:
            return None
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail((*path, key), f"expected {kind_name(kind)}, got {type_name(value)}")
        return value

    def convert(
        self, table: Mapping[str, Any], key: str, parse: Callable[[str], Any], path: Path_
    ) -> Any:
        text = self.get(table, key, str, path)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as err:
            raise self.fail((*path, key), str(err)) from None


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", str: "a string", list: "an array"}.get(
        kind, kind.__name__
    )


TOP_KEYS = ("server", "storage", "profile", "targets", "exporters")
SERVER_KEYS = ("listen", "token_file", "max_renders")
STORAGE_KEYS = (
    "state_dir",
    "bucket",
    "retention",
    "max_stacks",
    "inbox",
    "rollup_after",
    "rollup",
)
PROFILE_KEYS = ("frequency", "call_graph", "backend")
TARGET_KEYS = ("name", *SELECTORS, *PROFILE_KEYS)


def parse_config(
    text: str,
    source: str = DEFAULT_SOURCE,
    *,
    env: Mapping[str, str] | None = None,
    euid: int | None = None,
) -> Config:
    """Parse and validate config text; raises ConfigError naming source, line, key, reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: invalid TOML: {err}") from None
    reader = _Reader(source, text)
    reader.check_keys(data, TOP_KEYS, ())
    server = read_server(reader, reader.table(data.get("server", {}), ("server",)))
    storage = read_storage(reader, reader.table(data.get("storage", {}), ("storage",)), env, euid)
    profile = read_profile(reader, reader.table(data.get("profile", {}), ("profile",)))
    targets = read_targets(reader, data.get("targets"), profile)
    exporters = read_exporters(reader, data.get("exporters"), targets)
    return Config(server, storage, targets, source, exporters)


def read_exporters(
    reader: _Reader, raw: object, targets: tuple[TargetSpec, ...]
) -> tuple[ExporterConfig, ...]:
    if raw is None:
        return ()
    from flamed.daemon.export import parse_exporters

    known = {spec.name for spec in targets}
    return parse_exporters(raw, reader.source, fail=reader.fail, known_targets=known)


def read_server(reader: _Reader, table: dict[str, Any]) -> ServerConfig:
    path: Path_ = ("server",)
    reader.check_keys(table, SERVER_KEYS, path)
    host, port = reader.convert(table, "listen", parse_listen, path) or ("127.0.0.1", 9797)
    token_file = read_path(reader, table, "token_file", path)
    token = read_token(reader, token_file) if token_file else None
    max_renders = reader.get(table, "max_renders", int, path) or 2
    if not 1 <= max_renders <= 64:
        raise reader.fail((*path, "max_renders"), "must be between 1 and 64")
    return ServerConfig(host, port, token_file, token, max_renders)


def read_path(reader: _Reader, table: Mapping[str, Any], key: str, path: Path_) -> str | None:
    """A file or folder name: a NUL byte (which no path can hold) is refused here, not later."""
    value: str | None = reader.get(table, key, str, path)
    if value is not None and "\0" in value:
        raise reader.fail((*path, key), "a path cannot contain a NUL character")
    return value


MAX_TOKEN_FILE = 4096


def read_token(reader: _Reader, token_file: str) -> str:
    """The token file's text, stripped: a regular file of printable text, at most 4 KiB."""
    where = ("server", "token_file")
    try:
        data = read_small_file(token_file, MAX_TOKEN_FILE)
        token = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise reader.fail(where, f"cannot read {token_file}: {reason}") from None
    if not token:
        raise reader.fail(where, f"{token_file} is empty")
    if not token.isprintable():  # a header could never carry it: no request would match
        raise reader.fail(where, f"{token_file} holds control characters or several lines")
    return token


def read_small_file(path: str, limit: int) -> bytes:
    """A regular file's bytes; ValueError if it is not one (a FIFO would block) or too long
    (``/dev/zero`` would never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"longer than {limit} bytes")
    return data


def read_storage(
    reader: _Reader, table: dict[str, Any], env: Mapping[str, str] | None, euid: int | None
) -> StorageConfig:
    path: Path_ = ("storage",)
    reader.check_keys(table, STORAGE_KEYS, path)
    state_dir = read_path(reader, table, "state_dir", path) or default_state_dir(env, euid)
    bucket = reader.convert(table, "bucket", parse_duration, path) or 10.0
    retention = reader.convert(table, "retention", parse_duration, path) or 86400.0
    max_stacks = reader.get(table, "max_stacks", int, path)
    max_stacks = 50_000 if max_stacks is None else max_stacks
    if bucket < 1:
        raise reader.fail((*path, "bucket"), "must be at least 1s")
    if retention < bucket:
        raise reader.fail((*path, "retention"), "must be at least one bucket")
    if retention / bucket > MAX_BUCKETS:
        raise reader.fail((*path, "retention"), f"more than {MAX_BUCKETS} buckets; raise bucket")
    if not 2 <= max_stacks <= 10_000_000:
        raise reader.fail((*path, "max_stacks"), "must be between 2 and 10000000")
    inbox = read_path(reader, table, "inbox", path)
    rollup_after = reader.convert(table, "rollup_after", parse_duration, path)
    rollup = reader.convert(table, "rollup", parse_duration, path) or 600.0
    rollup_after = 1800.0 if rollup_after is None else rollup_after
    if rollup < bucket:
        raise reader.fail((*path, "rollup"), "must be at least one bucket")
    return StorageConfig(state_dir, bucket, retention, max_stacks, inbox, rollup_after, rollup)


def read_profile(reader: _Reader, table: dict[str, Any]) -> dict[str, Any]:
    path: Path_ = ("profile",)
    reader.check_keys(table, PROFILE_KEYS, path)
    defaults: dict[str, Any] = {"frequency": 99, "call_graph": "fp", "backend": "auto"}
    return {**defaults, **read_profile_keys(reader, table, path)}


def read_profile_keys(reader: _Reader, table: Mapping[str, Any], path: Path_) -> dict[str, Any]:
    out: dict[str, Any] = {}
    frequency = reader.get(table, "frequency", int, path)
    if frequency is not None:
        if not 1 <= frequency <= 100_000:
            raise reader.fail((*path, "frequency"), "must be between 1 and 100000 Hz")
        out["frequency"] = frequency
    for key, allowed in (("call_graph", CALL_GRAPHS), ("backend", BACKENDS)):
        value = reader.get(table, key, str, path)
        if value is not None:
            if value not in allowed:
                raise reader.fail((*path, key), f"{value!r} is not one of {', '.join(allowed)}")
            out[key] = value
    return out


def read_targets(reader: _Reader, value: object, profile: dict[str, Any]) -> tuple[TargetSpec, ...]:
    if value is None:
        raise reader.fail(("targets",), "no [[targets]]: nothing to profile")
    if not isinstance(value, list) or not value:
        raise reader.fail(("targets",), "expected one or more [[targets]] tables")
    specs: list[TargetSpec] = []
    for index, item in enumerate(value):
        spec = read_target(reader, reader.table(item, ("targets", index)), index, profile)
        if any(other.name == spec.name for other in specs):
            raise reader.fail(("targets", index, "name"), f"duplicate target name {spec.name!r}")
        specs.append(spec)
    return tuple(specs)


def read_target(
    reader: _Reader, table: dict[str, Any], index: int, profile: dict[str, Any]
) -> TargetSpec:
    path: Path_ = ("targets", index)
    reader.check_keys(table, TARGET_KEYS, path)
    name = reader.get(table, "name", str, path)
    if name is None:
        raise reader.fail((*path, "name"), "missing (every target needs a name)")
    if not SAFE_NAME.fullmatch(name):
        raise reader.fail(
            (*path, "name"), f"{name!r} is not a safe file name (letters, digits, _ . -; ≤ 64)"
        )
    selector = read_selector(reader, table, path)
    options = {**profile, **read_profile_keys(reader, table, path)}
    return TargetSpec(name=name, **selector, **options)


def read_selector(reader: _Reader, table: Mapping[str, Any], path: Path_) -> dict[str, Any]:
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
    text = reader.get(table, key, str, path)
    if key in ("process", "cmdline"):
        try:
            re.compile(text)
        except re.error as err:
            raise reader.fail((*path, key), f"bad regular expression: {err}") from None
    elif not text.strip():
        raise reader.fail((*path, key), "empty unit name")
    return {key: text}


def read_pids(reader: _Reader, value: object, path: Path_) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise reader.fail(path, "expected a non-empty array of process ids")
    for pid in value:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise reader.fail(path, f"{pid!r} is not a process id")
    return tuple(cast(list[int], value))


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
