"""Inlined frames through addr2line, for ``flamed collapse perf --inline [--context]``.

``perf script --no-inline`` prints one frame per return address; a function the
compiler inlined into its caller does not appear. stackcollapse-perf.pl's
``--inline`` asks ``addr2line -a ADDR -e MODULE -i -f -s -C`` for each frame and
puts the inlined chain in its place (``--context`` adds ``:file.c:12`` to each).
This module does the same, with the same rules:

* frames of JIT maps (``perf-PID.map``), the kernel (``kernel.``) and pseudo
  modules (``[vdso]``, ``[unknown]``) are left as they are;
* where addr2line cannot place the address (a shared library or a
  position-independent executable: perf prints run-time addresses) and perf
  named the symbol (``func+0x1f``), the symbol's address from ``nm MODULE`` plus
  the offset is asked instead;
* an answer of ``??`` keeps perf's own frame.

Unlike the Perl script, which runs addr2line once per distinct address (hours
on a large profile), the addresses of each fed chunk are asked for in one
addr2line run per module, answers are kept in a bounded cache, and each module's
``nm`` table is read once. Answers are kept by address, module and perf's symbol
(the Perl script's by address and module gave the answer for one process to
another that had the module loaded elsewhere). The programs themselves are run by the caller's
``BinaryTools`` (``flamed.collector.binutils``): this module only parses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flamed.collapse.common import TYPE_CHECKING, WarnOnce
from flamed.collapse.folded import decode

if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

# Modules whose frames are not looked up (the Perl script's rule).
SKIP_MODULE = re.compile(r"(perf-\d+.map|kernel\.|\[[^\]]+\])")
FRAME = re.compile(rb"^[ \t]*(\w+)[ \t]*(.+) \((.*)\)$", re.MULTILINE)
SYMBOL_OFFSET = re.compile(r"(.+)\+0x([0-9a-f]+)")
ADDRESS_LINE = re.compile(r"0x[0-9a-fA-F]+")
DISCRIMINATOR = re.compile(r" \(discriminator \S+\)")
FAILED = ("", "??", "??:??:0")
CACHE_LIMIT = 200_000
NM_MODULES = 16  # nm tables kept at once


class BinaryTools(Protocol):
    """Runs binutils for the inliner; each returns the program's standard output."""

    def addr2line(self, module: str, addresses: list[str]) -> bytes:
        """``addr2line -a -i -f -s -C -e MODULE`` with ``addresses`` on its input."""
        ...

    def nm(self, module: str) -> bytes:
        """``nm MODULE``."""
        ...


class Inliner:
    """Resolves ``(pc, raw symbol, module)`` frames to their inlined chains, cached."""

    def __init__(self, tools: BinaryTools, context: bool = False) -> None:
        self.tools = tools
        self.context = context
        self.warn = WarnOnce()
        # (pc, module, perf's symbol) -> frames, "" if none
        self._chains: dict[tuple[str, str, str], str] = {}
        self._symbols: dict[str, dict[str, int]] = {}  # module -> symbol -> address

    def prefetch(self, data: bytes) -> None:
        """Ask, in one addr2line run per module, for every new frame address in ``data``
        (frame lines read as the perf collapser reads them)."""
        wanted: dict[str, dict[str, str]] = {}  # module -> pc -> raw symbol
        for found in FRAME.finditer(data):
            pc, raw, module = (decode(part) for part in found.groups())
            module = module.removesuffix(" (deleted)")
            if (pc, module, raw) not in self._chains and not SKIP_MODULE.search(module):
                wanted.setdefault(module, {})[pc] = raw
        for module, frames in wanted.items():
            self._resolve(module, frames)

    def chain(self, pc: str, raw: str, module: str) -> str | None:
        """The frames (root first, joined by ``;``) for one frame line; None: keep perf's."""
        if SKIP_MODULE.search(module):
            return None
        key = (pc, module, raw)
        if key not in self._chains:
            self._resolve(module, {pc: raw})
        return self._chains.get(key) or None

    def _resolve(self, module: str, frames: dict[str, str]) -> None:
        answers = self._ask(module, list(frames))
        retry: dict[str, str] = {}  # nm-based address -> the pc it stands for
        for pc, raw in frames.items():
            answer = answers.get(int(pc, 16))
            if answer is not None and "??\n??:0" in answer:
                symbol = self._symbol_address(module, raw)
                if symbol is not None:
                    retry[f"0x{symbol:x}"] = pc
                    continue
            self._store((pc, module, raw), answer)
        if retry:
            again = self._ask(module, list(retry))
            for address, pc in retry.items():
                self._store((pc, module, frames[pc]), again.get(int(address, 16)))

    def _ask(self, module: str, addresses: list[str]) -> dict[int, str]:
        """addr2line's answers by address: the lines after each address line."""
        output = decode(self.tools.addr2line(module, addresses))
        answers: dict[int, list[str]] = {}
        current: list[str] | None = None
        for line in output.splitlines():
            if ADDRESS_LINE.fullmatch(line):
                current = answers.setdefault(int(line, 16), [])
            elif current is not None:
                current.append(line)
        return {
            address: "".join(f"{line}\n" for line in lines) for address, lines in answers.items()
        }

    def _symbol_address(self, module: str, raw: str) -> int | None:
        """``func+0x1f`` to the address of ``func`` in ``nm MODULE`` plus 0x1f."""
        found = SYMBOL_OFFSET.fullmatch(raw)
        if found is None:
            return None
        base = self._nm_table(module).get(found.group(1))
        return None if base is None else base + int(found.group(2), 16)

    def _nm_table(self, module: str) -> dict[str, int]:
        table = self._symbols.get(module)
        if table is None:
            if len(self._symbols) >= NM_MODULES:
                self._symbols.clear()
            table = self._symbols[module] = parse_nm(decode(self.tools.nm(module)).splitlines())
        return table

    def _store(self, key: tuple[str, str, str], answer: str | None) -> None:
        chain = "" if answer is None else self._chain(answer)
        if len(self._chains) >= CACHE_LIMIT:
            self._chains.clear()
        self._chains[key] = "" if chain in FAILED else chain

    def _chain(self, answer: str) -> str:
        """addr2line's ``function`` / ``file:line`` pairs, innermost first, to frames root
        first: ``outer;inlined`` (``outer:file.c:3;inlined:file.c:9`` with ``--context``)."""
        lines = [DISCRIMINATOR.sub("", line) for line in answer.splitlines()]
        frames = [
            f"{func}:{where}" if self.context else func
            for func, where in zip(lines[::2], lines[1::2], strict=False)
        ]
        return ";".join(reversed(frames))


def parse_nm(lines: Iterable[str]) -> dict[str, int]:
    """``nm`` lines (``ADDRESS TYPE NAME``) to the first address of each name."""
    table: dict[str, int] = {}
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) == 3 and len(parts[1]) == 1 and parts[2] not in table:
            try:
                table[parts[2]] = int(parts[0], 16)
            except ValueError:
                continue
    return table
