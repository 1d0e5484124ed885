"""The folded-stack format, the one contract between flamed's stages.

A profile is a mapping from a stack (``frame;frame;frame``, root first) to a
count. Counts are ints from collapsers and may be floats after normalising.
Stacks are ``str``; bytes that are not UTF-8 are kept through the
``surrogateescape`` error handler, so writing a profile gives back the exact
bytes that were read. Text output is sorted bytewise, like the Perl tools.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

Count = int | float

ENCODING = "utf-8"
ERRORS = "surrogateescape"


def decode(data: bytes) -> str:
    """Bytes to text, keeping invalid UTF-8 as lone surrogates (round-trips)."""
    return data.decode(ENCODING, ERRORS)


def encode(text: str) -> bytes:
    """The inverse of :func:`decode`."""
    return text.encode(ENCODING, ERRORS)


def format_count(count: Count) -> str:
    """Print a count as the Perl tools do: integers plainly, fractions with 15 digits."""
    if isinstance(count, int):
        return str(count)
    if count.is_integer():
        return str(int(count))
    return f"{count:.15g}"


def bytewise_key(stack: str) -> bytes:
    """Sort key that orders stacks by their encoded bytes, as ``sort`` in C locale does."""
    return encode(stack)


class Folded:
    """Stack -> count, with the operations every stage needs."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict[str, Count] | None = None) -> None:
        self.counts: dict[str, Count] = counts if counts is not None else {}

    def add(self, stack: str, count: Count = 1) -> None:
        counts = self.counts
        counts[stack] = counts.get(stack, 0) + count

    def update(self, other: Folded) -> None:
        """Merge ``other`` into this profile, in place."""
        counts = self.counts
        for stack, count in other.counts.items():
            counts[stack] = counts.get(stack, 0) + count

    def total(self) -> Count:
        return sum(self.counts.values())

    def items(self) -> Iterable[tuple[str, Count]]:
        return self.counts.items()

    def sorted_items(self) -> list[tuple[str, Count]]:
        return sorted(self.counts.items(), key=lambda item: bytewise_key(item[0]))

    def lines(self) -> Iterator[str]:
        """Folded text lines, sorted bytewise, without newlines."""
        for stack, count in self.sorted_items():
            yield f"{stack} {format_count(count)}"

    def to_bytes(self) -> bytes:
        text = "".join(line + "\n" for line in self.lines())
        return encode(text)

    def write(self, stream: BinaryIO) -> None:
        stream.write(self.to_bytes())

    def __len__(self) -> int:
        return len(self.counts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def __contains__(self, stack: object) -> bool:
        return stack in self.counts

    def __getitem__(self, stack: str) -> Count:
        return self.counts[stack]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Folded) and self.counts == other.counts

    def __repr__(self) -> str:
        return f"Folded({len(self.counts)} stacks, total={self.total()})"


class FoldedCollapser:
    """Reads folded text (``stack count`` per line) in chunks; the same streaming interface.

    A line whose last field is not a number is skipped with one warning.
    Counts may be integers or decimals; repeated stacks are summed.
    """

    def __init__(self) -> None:
        from flamed.collapse.common import WarnOnce

        self.warn = WarnOnce()
        self.profile = Folded()
        self._pending = b""

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data
        end = buffer.rfind(b"\n")
        if end < 0:
            self._pending = buffer
            return
        self._pending = buffer[end + 1 :]
        self._read(decode(buffer[:end]))

    def finish(self) -> Folded:
        self._read(decode(self._pending))
        self._pending = b""
        return self.profile

    def _read(self, text: str) -> None:
        add = self.profile.add
        for line in text.split("\n"):
            parsed = parse_line(line)
            if parsed is None:
                if line.strip():
                    self.warn("folded line without a count", line)
                continue
            add(*parsed)


def parse_count(text: str) -> Count | None:
    """``12`` -> 12, ``1.5`` -> 1.5, anything else -> None."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def parse_line(line: str) -> tuple[str, Count] | None:
    """One ``stack count`` line; None when it has no stack or no valid count."""
    stack, _, count_text = line.rstrip("\r").rpartition(" ")
    stack = stack.rstrip(" ")
    if not stack:
        return None
    count = parse_count(count_text)
    return None if count is None else (stack, count)


def read_folded(data: bytes) -> Folded:
    """Parse a whole folded text."""
    collapser = FoldedCollapser()
    collapser.feed(data)
    return collapser.finish()
