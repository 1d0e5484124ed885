"""The folded-stack format, the one contract between flamed's stages.

A profile is a mapping from a stack (``frame;frame;frame``, root first) to a
count. Counts are ints from collapsers and may be floats after normalising.
Stacks are ``str``; bytes that are not UTF-8 are kept through the
``surrogateescape`` error handler, so writing a profile gives back the exact
bytes that were read. Text output is sorted bytewise, like the Perl tools.
"""

from __future__ import annotations

from flamed.collapse import speedups

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the start-up cost of typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

OTHER = "[other]"
"""The stack that :func:`top` sums the dropped stacks into."""

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
    """Print a count as the Perl tools do: integers plainly, fractions with 15 digits.

    A fraction that 15 digits do not give back exactly is printed with the
    shortest digits that do, so that writing and reading a profile loses nothing.
    """
    if isinstance(count, int):
        return str(count)
    if count.is_integer():
        return str(int(count))
    short = f"{count:.15g}"
    return short if float(short) == count else repr(count)


def perl_count(count: Count) -> str:
    """Print a count as Perl prints a number: integers plainly, others with 15
    significant digits (``14.2343983248723``), as difffolded.pl writes its sums."""
    if isinstance(count, int):
        return str(count)
    return f"{count:.15g}"


def _first(item: tuple[bytes, Count]) -> bytes:
    return item[0]


def bytewise_key(stack: str) -> bytes:
    """Sort key that orders stacks by their encoded bytes, as ``sort`` in C locale does."""
    return encode(stack)


def sorted_bytes(counts: dict[str, Count]) -> bytes:
    """Folded text of ``counts``, sorted bytewise. Each stack is encoded once, sorted as
    bytes and joined as bytes: making the text and encoding it after the sort copied
    each stack three more times."""
    encoded = [(encode(stack), count) for stack, count in counts.items()]
    encoded.sort(key=_first)
    parts: list[bytes] = []
    add = parts.extend
    for stack, count in encoded:
        add((stack, b" ", format_count(count).encode(), b"\n"))
    return b"".join(parts)


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
        """The text of ``lines()``, each line ending in a newline: written by the C speedups
        where they are used and every stack is ASCII and every count an int, else by
        ``sorted_bytes``."""
        module = speedups.module()
        joined = module.folded_bytes(self.counts) if module is not None else None
        return sorted_bytes(self.counts) if joined is None else joined

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

    A line whose last field is not a number is skipped with one warning. Counts may be
    integers or decimals; repeated stacks are summed. With ``keep_order`` every line is
    also kept in input order, repeats included, in ``in_order`` (for a flame chart).
    ``encoding``: what the text is in (empty: UTF-8); the C reader reads UTF-8 only.
    """

    def __init__(
        self, keep_order: bool = False, native: bool | None = None, encoding: str = ""
    ) -> None:
        import codecs

        from flamed.collapse.common import WarnOnce

        self.warn = WarnOnce()
        self.profile = Folded()
        self.in_order: list[tuple[str, Count]] | None = [] if keep_order else None
        self._pending = b""
        utf8 = not encoding or codecs.lookup(encoding).name == ENCODING
        self._encoding = ENCODING if utf8 else encoding
        self._native = speedups.choose(native) if utf8 else None

    def feed(self, data: bytes) -> None:
        """Read the complete lines; the rest waits for the next chunk. The chunk is read in
        place, not copied: only a line cut by the chunk's start is joined."""
        end = data.rfind(b"\n")
        if end < 0:
            self._pending += data
            return
        start = 0
        if self._pending:
            start = data.find(b"\n") + 1
            self._read(self._pending + data[: start - 1])
        if start <= end:
            self._read(memoryview(data)[start:end])
        self._pending = data[end + 1 :]

    def finish(self) -> Folded:
        self._read(self._pending)
        self._pending = b""
        return self.profile

    def _read(self, data: bytes | memoryview) -> None:
        """Lines split at newlines; with the C speedups, lines whose count is plain digits
        are counted in C and the others come back to ``_read_line`` one by one."""
        if self._native is not None:
            self._native.fold_folded(data, self.profile.counts, self.in_order, self._read_line)
        else:
            self._read_text(str(data, self._encoding, ERRORS))

    def _read_line(self, line: bytes) -> None:
        """A line that the C reader leaves to Python."""
        self._read_text(decode(line))

    def _read_text(self, text: str) -> None:
        add = self.profile.add
        in_order = self.in_order
        for line in text.split("\n"):
            parsed = parse_line(line)
            if parsed is None:
                if line.strip():
                    self.warn("folded line without a count", line)
                continue
            add(*parsed)
            if in_order is not None:
                in_order.append(parsed)


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
    """One ``stack count`` line; None when it has no stack or no valid count.

    The count follows the line's last white-space character (a space or a tab, as
    flamegraph.pl's ``(.*)\\s(COUNT)`` reads it), and only that one character
    separates: a stack may end in spaces (a frame named " " is a frame, as
    flamegraph.pl draws it). A carriage return at the end (CRLF files) is dropped."""
    line = line.rstrip("\r")
    cut = line.rfind(" ")
    tab = line.rfind("\t", cut + 1)  # only a tab after the last space can separate
    if tab > cut:
        cut = tab
    if cut < 1:
        return None
    count = parse_count(line[cut + 1 :])
    return None if count is None else (line[:cut], count)


def read_folded(data: bytes) -> Folded:
    """Parse a whole folded text."""
    collapser = FoldedCollapser()
    collapser.feed(data)
    return collapser.finish()


def is_applicable(head: bytes) -> bool | None:
    """Does this look like folded stacks (``frame;frame COUNT`` lines)? None: need more input.

    Yes when the first complete lines (up to ten, at least one) are all
    ``stack count`` lines that start with a frame, not with white space.
    """
    lines = [line for line in decode(head).split("\n")[:-1] if line.strip()]
    for line in lines[:10]:
        if line[:1].isspace() or parse_line(line) is None:
            return False
    if lines:
        return True
    return None if len(head) < 64 * 1024 else False


def merge(profiles: Iterable[Folded]) -> Folded:
    """The sum of several profiles, as a new profile (the inputs are left alone)."""
    merged = Folded()
    for profile in profiles:
        merged.update(profile)
    return merged


def diff(before: Folded, after: Folded) -> Folded:
    """``after - before`` per stack, for every stack of either (0 where they are equal)."""
    counts: dict[str, Count] = {stack: -count for stack, count in before.items()}
    for stack, count in after.items():
        counts[stack] = counts.get(stack, 0) + count
    return Folded(counts)


def paired(
    before: Folded, after: Folded, normalize: bool = False
) -> dict[str, tuple[Count, Count]]:
    """Every stack of either profile with its two counts (0 where absent), as difffolded.pl.

    With ``normalize`` the first counts are scaled to the second profile's total
    and truncated to integers, as difffolded.pl -n does.
    """
    total1, total2 = before.total(), after.total()
    scale = normalize and total1 != total2 and total1 != 0
    pairs: dict[str, tuple[Count, Count]] = {}
    for stack in (*before.counts, *after.counts):
        if stack in pairs:
            continue
        count1 = before.counts.get(stack, 0)
        if scale:
            count1 = _scaled(count1, total1, total2)
        pairs[stack] = (count1, after.counts.get(stack, 0))
    return pairs


def _scaled(count: Count, total1: Count, total2: Count) -> int:
    """``int(count * total2 / total1)``, exact for integers."""
    if isinstance(count, int) and isinstance(total1, int) and isinstance(total2, int):
        scaled = abs(count * total2) // abs(total1)
        return scaled if (count * total2 >= 0) == (total1 > 0) else -scaled
    return int(count * total2 / total1)


def format_pairs(pairs: dict[str, tuple[Count, Count]]) -> bytes:
    """``stack count1 count2`` lines, sorted bytewise, counts as difffolded.pl prints them."""
    lines = [
        f"{stack} {perl_count(one)} {perl_count(two)}\n"
        for stack, (one, two) in sorted(pairs.items(), key=lambda item: bytewise_key(item[0]))
    ]
    return encode("".join(lines))


HEX_ADDRESS = r"0x[0-9a-fA-F]+"


def strip_hex(profile: Folded) -> Folded:
    """Replace every hex address ``0x…`` in the stacks by ``0x...``; stacks that meet are summed."""
    import re  # only here: start-up time counts in every command

    hex_address = re.compile(HEX_ADDRESS)
    stripped = Folded()
    for stack, count in profile.items():
        stripped.add(hex_address.sub("0x...", stack), count)
    return stripped


def top(profile: Folded, n: int, other: str = OTHER) -> Folded:
    """The ``n`` stacks with the largest counts, and the rest summed into one ``other`` stack.

    Ties are broken bytewise by stack, so the result does not depend on the
    order stacks were added. A stack already named ``other`` is always summed,
    so ``top`` of ``top`` gives the same profile. The total is kept.
    """
    if n < 0:
        raise ValueError(f"top: n must be >= 0, not {n}")
    ranked = sorted(
        ((stack, count) for stack, count in profile.items() if stack != other),
        key=lambda item: (-item[1], bytewise_key(item[0])),
    )
    if len(ranked) <= n:
        return Folded(dict(profile.counts))
    kept = Folded(dict(ranked[:n]))
    rest = profile.counts.get(other, 0) + sum(count for _, count in ranked[n:])
    kept.counts[other] = rest
    return kept
