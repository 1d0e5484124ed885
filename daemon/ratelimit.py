"""Log lines a remote client or a flapping disk could repeat without end, at most one per kind
every so often."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable


class LogLimiter:
    """Says whether a kind of message may be logged now: once per ``every`` seconds per kind."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        """When each kind was last logged (the kinds are few: error names, operations)."""

    def allow(self, kind: Hashable) -> bool:
        now = self.clock()
        if now - self._last.get(kind, -math.inf) < self.every:
            return False
        self._last[kind] = now
        return True
