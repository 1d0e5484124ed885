"""py-spy's ``--format raw`` output, as stacks under the process's name.

``py-spy record --format raw`` writes folded stacks, root first, one line per
distinct stack: ``<module> (app.py);main (app.py);work (app.py) 123`` (with
``--nolineno``; without it each file carries ``:LINE``). On standard output it
also says what it does, on lines starting ``py-spy> ``. This reads the stacks,
skips those lines, and puts the process's name first, where perf's stacks have
the command name, so both backends' graphs start alike.
"""

from __future__ import annotations

from flamed.collapse.common import WarnOnce
from flamed.collapse.folded import Folded, decode, parse_line

MESSAGE = b"py-spy> "
MAX_PENDING = 1 << 20
"""A partial line longer than this is dropped (bounds memory on garbage without newlines)."""


class PySpyCollapser:
    """Streaming reader of one py-spy run's output: ``feed()`` chunks, then ``finish()``."""

    def __init__(self, process: str) -> None:
        self.prefix = process.replace(";", ":").replace(" ", "_") or "python"
        self.warn = WarnOnce()
        self.samples = 0
        self.bytes_fed = 0
        self._folded = Folded()
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self.bytes_fed += len(data)
        buffer = self._pending + data
        end = buffer.rfind(b"\n")
        self._pending = buffer[end + 1 :]
        if len(self._pending) > MAX_PENDING:
            self.warn("py-spy line too long", decode(self._pending[:80]))
            self._pending = b""
        if end >= 0:
            self._read(buffer[:end])

    def finish(self) -> Folded:
        if self._pending:
            self._read(self._pending)
            self._pending = b""
        return self._folded

    def _read(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if not line.strip() or line.startswith(MESSAGE):
                continue
            parsed = parse_line(decode(line))
            if parsed is None or not isinstance(parsed[1], int):
                self.warn("unrecognized py-spy line", decode(line))
                continue
            stack, count = parsed[0], parsed[1]
            self._folded.add(f"{self.prefix};{stack}", count)
            self.samples += count
