"""Reading a parsed TOML document table by table, with errors that say where.

``TableReader`` checks keys and types and converts values; every refusal is a
one-line ``ConfigError``: ``FILE:LINE: dotted.key: reason``. The line is found
by looking for the key inside its table (or the table's header) in the text;
without the text (or the key) the message names the file only. Absent keys
read as None, so the caller leaves the dataclass field's default in place.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from flamed.collapse.errors import ConfigError
from flamed.daemon.timerange import parse_duration

KeyPath = tuple[str | int, ...]
T = TypeVar("T")

MAX_SECRET_FILE = 4096
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TableReader:
    """Walks one parsed document; ``source`` names it in messages, ``text`` gives the lines."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    def fail(self, path: KeyPath, reason: str) -> ConfigError:
        line = self.find_line(path)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {dotted(path)}: {reason}")

    # -- structure ---------------------------------------------------------------------------

    def table(self, value: object, path: KeyPath) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {type_name(value)}")
        return value

    def tables(self, value: object, path: KeyPath, what: str) -> list[dict[str, Any]]:
        """An array of tables (``[[what]]``); None reads as none."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"expected [[{what}]] tables")
        return [self.table(item, (*path, index)) for index, item in enumerate(value)]

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], path: KeyPath) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key (allowed: {', '.join(allowed)})")

    # -- values ------------------------------------------------------------------------------

    def get(self, table: Mapping[str, Any], key: str, kind: type[T], path: KeyPath) -> T | None:
        value = table.get(key)
        if value is None:
            return None
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail((*path, key), f"expected {kind_name(kind)}, got {type_name(value)}")
        return cast(T, value)

    def convert(
        self, table: Mapping[str, Any], key: str, parse: Callable[[str], T], path: KeyPath
    ) -> T | None:
        """A string turned into something else by ``parse`` (whose ValueError is the reason)."""
        text = self.get(table, key, str, path)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as err:
            raise self.fail((*path, key), str(err)) from None

    def integer(
        self, table: Mapping[str, Any], key: str, path: KeyPath, low: int, high: int, unit: str = ""
    ) -> int | None:
        value = self.get(table, key, int, path)
        if value is not None and not low <= value <= high:
            raise self.fail((*path, key), f"must be between {low} and {high}{unit}")
        return value

    def choice(
        self, table: Mapping[str, Any], key: str, allowed: tuple[str, ...], path: KeyPath
    ) -> str | None:
        value = self.get(table, key, str, path)
        if value is not None and value not in allowed:
            raise self.fail((*path, key), f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def duration(
        self, table: Mapping[str, Any], key: str, path: KeyPath, most: float
    ) -> float | None:
        """A duration string, more than zero and at most ``most`` seconds."""
        seconds = self.convert(table, key, parse_duration, path)
        if seconds is not None and not 0 < seconds <= most:
            raise self.fail((*path, key), f"must be more than zero and at most {most:g}s")
        return seconds

    def name(self, table: Mapping[str, Any], path: KeyPath, default: str | None = None) -> str:
        """``name``: it names a folder, a query parameter and metric labels."""
        name = self.get(table, "name", str, path) or default
        if name is None:
            raise self.fail((*path, "name"), "missing (every target needs a name)")
        if not SAFE_NAME.fullmatch(name):
            reason = f"{name!r} is not a safe file name (letters, digits, _ . -; ≤ 64)"
            raise self.fail((*path, "name"), reason)
        return name

    def path(self, table: Mapping[str, Any], key: str, path: KeyPath) -> str | None:
        """A file or folder name: a NUL byte (which no path can hold) is refused here, not later."""
        value = self.get(table, key, str, path)
        if value is not None and "\0" in value:
            raise self.fail((*path, key), "a path cannot contain a NUL character")
        return value

    def secret(self, table: Mapping[str, Any], key: str, path: KeyPath) -> tuple[str, str] | None:
        """(file name, its one line) for a key naming a file that holds a secret."""
        file = self.path(table, key, path)
        if file is None:
            return None
        try:
            text = read_small_file(file, MAX_SECRET_FILE).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError, ValueError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise self.fail((*path, key), f"cannot read {file}: {reason}") from None
        if not text or not text.isprintable():  # a header could never carry it
            raise self.fail((*path, key), f"{file} must hold one non-empty line of printable text")
        return file, text

    # -- where a key is written --------------------------------------------------------------

    def find_line(self, path: KeyPath) -> int | None:
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
        later = (n for n in range(begin + 1, len(self.lines)) if self.lines[n].lstrip()[:1] == "[")
        return begin, next(later, len(self.lines))


def given(**values: object) -> dict[str, Any]:
    """The keyword arguments that were set: the rest keep their dataclass defaults."""
    return {key: value for key, value in values.items() if value is not None}


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


def dotted(path: KeyPath) -> str:
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
