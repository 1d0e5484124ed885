"""The optional C speedups (``flamed.collapse._speedups``) and whether they are used.

The pure-Python collapsers are complete and are the reference; the C module only
runs their hot loops faster. It is used when it was built (a C compiler and
Python's headers at install time) unless ``FLAMED_NO_EXTENSIONS=1`` is set.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the start-up cost of typing
if TYPE_CHECKING:
    from types import ModuleType

DISABLE_VARIABLE = "FLAMED_NO_EXTENSIONS"


def built() -> ModuleType | None:
    """The C module if it was built, whatever the environment says."""
    try:
        from flamed.collapse import _speedups
    except ImportError:
        return None
    return _speedups


def disabled() -> bool:
    return os.environ.get(DISABLE_VARIABLE, "") not in ("", "0")


def module() -> ModuleType | None:
    """The C module to use: None when it was not built or ``FLAMED_NO_EXTENSIONS=1``."""
    return None if disabled() else built()


def describe() -> str:
    """Which path the collapsers take, for ``--version`` and ``--help``."""
    if disabled():
        return f"pure Python ({DISABLE_VARIABLE}=1)"
    if built() is None:
        return "pure Python (the C speedups were not built)"
    return "C speedups"
