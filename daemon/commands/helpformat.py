"""How every ``flamed`` command prints its help and its usage errors (the top-level parser's
and each command's)."""

from __future__ import annotations

import argparse
import os
import sys

from flamed.daemon.commands.declaration import SUPPRESS, USAGE_PROG, Declaration, Recorder

# typing.TYPE_CHECKING without importing typing: start-up time counts in every command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse, with every usage error on one line, naming the (sub)command whose usage
    was wrong: ``flamed flamegraph: --width: invalid int value: 'abc' (see flamed
    flamegraph --help)``, exit 2, instead of the whole usage text (subcommands' parsers
    are made of the same class)."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message.removeprefix("argument "))

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if not hasattr(parsed, USAGE_PROG):  # an inner command's parser set it first
            setattr(parsed, USAGE_PROG, self.prog)
        return parsed, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Arguments no parser knew are blamed on the innermost command, not on ``flamed``."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            usage_error(getattr(parsed, USAGE_PROG), f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def usage_error(prog: str, message: str) -> NoReturn:
    """One line on stderr and exit status 2, as argparse gives usage errors."""
    sys.stderr.write(f"{prog}: {message} (see {prog} --help)\n")
    raise SystemExit(2)


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


class VersionAction(argparse.Action):
    """``flamed --version``, looked up only when asked: importlib.metadata is slow to import."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help")))

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from flamed.collapse.speedups import describe
        from flamed.daemon.version import version

        print(f"flamed {version()} ({describe()})")
        parser.exit()


NAMED: dict[tuple[str, str], object] = {
    ("action", "flamed-version"): VersionAction,
    ("formatter_class", "flamed"): HelpFormatter,
}
"""The project's own argparse classes, named in declarations by these words (a
declaration does not import argparse, of which they are made): (keyword, word) -> class."""


def build_argparse(declaration: Declaration) -> OneLineParser:
    """The argparse parser a Declaration describes."""
    parser = OneLineParser(**argparse_kwargs(declaration.kwargs))
    replay(declaration, parser)
    return parser


def replay(recorder: Recorder, target: Any) -> None:
    """Make each recorded call on ``target`` (argparse's object), then the calls recorded
    on what it returned (a group, the subcommands, a subcommand's parser) on argparse's."""
    for call in recorder.calls:
        result = getattr(target, call.method)(*call.args, **argparse_kwargs(call.kwargs))
        if call.child is not None:
            replay(call.child, result)


def argparse_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A recorded call's keyword arguments for argparse: argparse's own SUPPRESS object
    (it compares by identity), the project's classes for the words that name them."""
    return {key: argparse_value(key, value) for key, value in kwargs.items()}


def argparse_value(key: str, value: object) -> object:
    if not isinstance(value, str):
        return value
    if value == SUPPRESS:
        return argparse.SUPPRESS
    return NAMED.get((key, value), value)
