"""How every ``flamed`` command prints its help (the top-level parser's and each command's)."""

from __future__ import annotations

import argparse
import os


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, told the terminal's width: left to find it, argparse
    imports shutil, and every parser builds formatters even when no help is shown."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24) -> None:
        super().__init__(prog, indent_increment, max_help_position, terminal_width() - 2)


def terminal_width() -> int:
    """$COLUMNS, else the width of the terminal on stdout, else 80 (as shutil has it)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size().columns or 80
    except (ValueError, OSError):
        return 80


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    """``-q``/``-v`` after a command's name too, where inferno's commands take them;
    they mean what ``flamed -q``/``flamed -v`` mean."""
    add = parser.add_argument
    add("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="errors only")
    add("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more")
