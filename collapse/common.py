"""Pieces every collapser shares: the streaming protocol and once-per-kind warnings.

Nothing here imports logging until the first warning: start-up time counts in
every ``flamed collapse``, and most inputs have nothing to warn about.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing: start-up time counts in every
# `flamed collapse` (collections.abc's too: it imports collections). At run time the
# protocols below are plain classes.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import re
    from collections.abc import Callable
    from typing import Any, ClassVar, Protocol

    from flamed.collapse.folded import Folded
else:
    Protocol = object

LOGGER_NAME = "flamed.collapse"
# re.ASCII and re.MULTILINE for LazyPatterns.SOURCES, without importing re (~8 ms of every
# start, enum included); tests/collapse/test_common.py checks that they agree.
ASCII = 256
MULTILINE = 8
_deferred_setup: list[Callable[[], None]] = []


_retired: list[list[object]] = []


def retire_into(kept: list[object] | None) -> None:
    """Where ``retire`` puts what collapsers let go of: ``kept``, a list a one-shot command
    drops only when its process ends (by ``os._exit``, which frees no object), or, with
    None, nowhere (it is freed at once: a daemon's collapsers)."""
    _retired[:] = [] if kept is None else [kept]


def retire(caches: object) -> None:
    """Let go of a collapser's caches (None: it has none) at ``finish()``: freed now, or
    kept for the end of a one-shot process (see ``retire_into``): freeing perf's C caches
    of a 31 MB input, entry by entry, cost 12-30 ms of a process that was about to end."""
    if _retired and caches is not None:
        _retired[0].append(caches)


def defer_logging_setup(setup: Callable[[], None]) -> None:
    """Call ``setup`` (which configures logging) before the first warning, not now:
    a command that logs only through WarnOnce then never imports logging."""
    _deferred_setup[:] = [setup]


class Collapser(Protocol):
    """A streaming parser: feed it chunks split anywhere, then ask for the profile."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> Folded: ...


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """The logger ``name``, logging configured first if that was deferred: modules that
    warn only now and then call this when they warn, and do not import logging."""
    while _deferred_setup:
        _deferred_setup.pop()()
    import logging

    return logging.getLogger(name)


class LazyPatterns:
    """Regular expressions compiled at their first use, not at import: `flamed collapse perf`
    folds with the C speedups, which need none of perf.py's, and compiling them all cost
    ~1.5 ms of every start. A subclass declares each pattern's name and type and gives
    SOURCES (name -> (pattern, flags)); an instance compiles each one when it is first
    asked for and keeps it as an attribute, so later uses cost a plain attribute read."""

    SOURCES: ClassVar[dict[str, tuple[str | bytes, int]]] = {}

    def __getattr__(self, name: str) -> re.Pattern[Any]:
        try:
            source, flags = self.SOURCES[name]
        except KeyError:
            raise AttributeError(name) from None
        import re

        pattern = re.compile(source, flags)
        setattr(self, name, pattern)
        return pattern


class WarnOnce:
    """Logs one warning per kind of problem and counts every occurrence.

    A malformed line never aborts a collapse: it is skipped, counted under its
    kind, and the first one of each kind is logged with the offending text.
    ``logger``: a logger, or the name of one to get at the first warning.
    """

    def __init__(self, logger: logging.Logger | str = LOGGER_NAME) -> None:
        self._logger = logger
        self.counts: dict[str, int] = {}

    @property
    def logger(self) -> logging.Logger:
        """Where warnings go: the given logger, else ``flamed.collapse``."""
        logger = self._logger
        if isinstance(logger, str):
            logger = self._logger = get_logger(logger)
        return logger

    def __call__(self, kind: str, detail: str = "") -> None:
        seen = self.counts.get(kind, 0)
        self.counts[kind] = seen + 1
        if not seen:
            shown = printable(detail)
            self.logger.warning("%s: '%s' (further ones are skipped silently)", kind, shown)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


SHOWN_CHARS = 80
"""Characters of an offending line a warning shows."""


def printable(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` as a terminal can show it, at most ``limit`` characters shown: undecodable
    bytes (kept as surrogates) as ``\\xNN``, control characters as Python writes them;
    printable text, any script, as it is."""
    if text[:limit].isprintable():
        return text if len(text) <= limit else text[:limit] + "..."
    shown: list[str] = []
    size = 0
    for char in text:
        piece = char if char.isprintable() else escape(char)
        size += len(piece)
        if size > limit:
            return "".join(shown) + "..."
        shown.append(piece)
    return "".join(shown)


def escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]
