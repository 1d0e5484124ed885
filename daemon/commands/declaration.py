"""The command line's parsers as declared, without argparse: argparse is built from them
only when it is needed (help, usage errors, lines the quick parser is unsure of).

A command declares its options on a Declaration exactly as on an argparse parser
(``add_argument``, ``add_mutually_exclusive_group``, ``set_defaults``,
``add_subparsers(...).add_parser(...)``); each call is recorded, in order. The one
definition then serves two readers: ``helpformat.build_argparse`` replays the calls on
argparse, and ``quickparse`` reads them to parse the common lines itself. Importing
argparse, with the ``re``, gettext and locale it brings, cost ~10 ms of every start.
The project's own argparse classes are named by a word (``action="flamed-version"``,
``formatter_class="flamed"``): helpformat.NAMED gives the class.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUPPRESS = "==SUPPRESS=="
"""argparse.SUPPRESS's text (the replay hands argparse its own object: it compares by
identity). tests/daemon/test_quickparse.py checks that they agree."""
USAGE_PROG = "usage_prog"
"""The namespace attribute naming the innermost (sub)command that parsed the line."""


class Call:
    """One recorded call: ``method(*args, **kwargs)``, and the recorder of what it returned
    (a group or the subcommands), whose own calls are replayed on argparse's result."""

    def __init__(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], child: Recorder | None
    ) -> None:
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.child = child


class Recorder:
    """Keeps the calls made on it, in order (helpformat.replay makes them on argparse)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        """The keyword arguments this object was made with (a parser's prog, help...)."""
        self.calls: list[Call] = []

    def record(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append(Call(method, args, kwargs, None))


class Group(Recorder):
    """``add_mutually_exclusive_group()``'s result."""

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        self.record("add_argument", names, kwargs)


class Subcommands(Recorder):
    """``add_subparsers()``'s result: each ``add_parser`` gives the subcommand's Declaration."""

    def add_parser(self, name: str, **kwargs: Any) -> Declaration:
        child = Declaration(**kwargs)
        self.calls.append(Call("add_parser", (name,), kwargs, child))
        return child


class Declaration(Recorder):
    """One parser's declaration: the calls an argparse.ArgumentParser would be given."""

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        self.record("add_argument", names, kwargs)

    def add_mutually_exclusive_group(self, **kwargs: Any) -> Group:
        group = Group(**kwargs)
        self.calls.append(Call("add_mutually_exclusive_group", (), kwargs, group))
        return group

    def set_defaults(self, **kwargs: Any) -> None:
        self.record("set_defaults", (), kwargs)

    def add_subparsers(self, **kwargs: Any) -> Subcommands:
        subcommands = Subcommands(**kwargs)
        self.calls.append(Call("add_subparsers", (), kwargs, subcommands))
        return subcommands


def add_log_flags(parser: Declaration) -> None:
    """``-q``/``-v`` after a command's name too, where inferno's commands take them;
    they mean what ``flamed -q``/``flamed -v`` mean."""
    add = parser.add_argument
    add("-q", "--quiet", action="store_true", default=SUPPRESS, help="errors only")
    add("-v", "--verbose", action="count", default=SUPPRESS, help="log more")
