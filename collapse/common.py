"""Pieces every collapser shares: the streaming protocol and once-per-kind warnings."""

from __future__ import annotations

import logging
from typing import Protocol

from flamed.collapse.folded import Folded

log = logging.getLogger("flamed.collapse")


class Collapser(Protocol):
    """A streaming parser: feed it chunks split anywhere, then ask for the profile."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> Folded: ...


class WarnOnce:
    """Logs one warning per kind of problem and counts every occurrence.

    A malformed line never aborts a collapse: it is skipped, counted under its
    kind, and the first one of each kind is logged with the offending text.
    """

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str, detail: str = "") -> None:
        seen = self.counts.get(kind, 0)
        self.counts[kind] = seen + 1
        if not seen:
            shown = detail if len(detail) <= 200 else detail[:200] + "..."
            self.logger.warning("%s: %r (further ones are skipped silently)", kind, shown)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
