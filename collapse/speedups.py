"""The optional C speedups and whether they are used.

Two compiled modules, ``flamed.collapse._speedups`` (the loops of the perf, DTrace and
folded-text readers) and ``flamed.render._speedups`` (the flame graph's layout and SVG
loops),
beside the pure-Python code, which is complete and is the reference. They are
used when they were built (a C compiler and Python's headers at install time)
unless ``FLAMED_NO_EXTENSIONS=1`` is set.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the start-up cost of typing
if TYPE_CHECKING:
    from types import ModuleType

DISABLE_VARIABLE = "FLAMED_NO_EXTENSIONS"
COLLAPSE = "flamed.collapse._speedups"
RENDER = "flamed.render._speedups"


def built(name: str = COLLAPSE) -> ModuleType | None:
    """The C module ``name`` if it was built, whatever the environment says."""
    try:
        __import__(name)  # not importlib: importing it (and warnings) cost ~0.4 ms at start
    except ImportError:
        return None
    return sys.modules[name]


def disabled() -> bool:
    return os.environ.get(DISABLE_VARIABLE, "") not in ("", "0")


def module(name: str = COLLAPSE) -> ModuleType | None:
    """The C module to use: None when it was not built or ``FLAMED_NO_EXTENSIONS=1``."""
    return None if disabled() else built(name)


def choose(native: bool | None) -> ModuleType | None:
    """The collapse C module a collapser asked for: ``native`` None: as ``module()``;
    False: none; True: it must have been built (RuntimeError if not)."""
    if native is False:
        return None
    found = built() if native else module()
    if native and found is None:
        raise RuntimeError(f"the C speedups ({COLLAPSE}) were not built")
    return found


def describe(names: tuple[str, ...] = (COLLAPSE, RENDER)) -> str:
    """Which path the code of these C modules takes, for ``--version`` and ``--help``."""
    if disabled():
        return f"pure Python, {DISABLE_VARIABLE}=1 is set"
    missing = [name for name in names if built(name) is None]
    if len(missing) == len(names):
        return "pure Python, the C speedups were not built"
    if missing:
        return f"C speedups, but {', '.join(missing)} not built"
    return "C speedups"
