"""The one error hierarchy of flamed.

Every error a user can cause (a missing file, a bad option, a bad config) is a
``FlamedError``. The command line prints its message on one line and exits with
``exit_code``; the daemon logs it. ``OSError`` is converted at the boundary with
``raise ... from``. Anything else escaping is a bug and may show a traceback.
"""

from __future__ import annotations


class FlamedError(Exception):
    """Base of every error flamed reports to a user as one line."""

    exit_code = 1


class UsageError(FlamedError):
    """Bad command-line arguments or option values."""

    exit_code = 2


class InputError(FlamedError):
    """An input that cannot be read or understood as a whole (a missing file, unknown format)."""


class ConfigError(FlamedError):
    """A configuration file that is refused; the message names file, key and reason."""


class ProfilerError(FlamedError):
    """perf or DTrace is missing, not permitted, or failed."""
