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
