"""Parse the common command lines without argparse, from the same Declaration.

``quick_parse(declaration, argv)`` gives the namespace argparse would give, or None
when it is not sure, and argparse (built from that declaration) then parses the line:
help, usage errors and their exit codes stay argparse's. It is sure of lines made of
whole option strings as declared (``--pid``, ``-n 4``), option values that do not start
with ``-``, and positionals (one run per parser, ``-`` included), for actions store,
store_true, store_false, store_const, count and append, with ``type`` (a function of
the text alone), ``choices``, ``dest``, ``default``, ``required``, mutually exclusive
groups, ``set_defaults`` and subcommands. Anything else — an abbreviated option,
``--opt=value``, ``-abc``, ``--``, an unknown option, a missing or dash-led value, two
options of one exclusive group, a missing subcommand, a value its type refuses — is
argparse's. tests/daemon/test_quickparse.py checks, over generated lines, that
whenever it answers, argparse answers the same.
"""

from __future__ import annotations

from flamed.daemon.commands.declaration import SUPPRESS, USAGE_PROG

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Callable, Sequence
    from typing import Any

    from flamed.daemon.commands.declaration import Declaration, Recorder
else:

    class Namespace:
        """argparse.Namespace's equivalent: attributes, equal when their values are."""

        def __init__(self, **kwargs: object) -> None:
            self.__dict__.update(kwargs)

        def __eq__(self, other: object) -> bool:
            return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

        def __repr__(self) -> str:
            return f"Namespace({vars(self)!r})"


VALUE_ACTIONS = ("store", "append")
FLAG_ACTIONS = ("store_true", "store_false", "store_const", "count")
OTHER_ARGPARSE_ACTIONS = ("append_const", "extend", "help", "version", "parsers")
PARSER_KEYS = {"prog", "description", "epilog", "help", "formatter_class"}
ARGUMENT_KEYS = {"action", "dest", "default", "type", "help", "metavar", "const"}
ARGUMENT_KEYS |= {"nargs", "required", "choices"}


class Unsure(Exception):
    """The line, or the declaration, is argparse's to parse."""


class Argument:
    """One declared argument, as argparse reads its add_argument call."""

    def __init__(self, names: tuple[str, ...], kwargs: dict[str, Any], group: object) -> None:
        if not names or not set(kwargs) <= ARGUMENT_KEYS:
            raise Unsure
        self.names = names
        self.group = group
        self.positional = not names[0].startswith("-")
        action = kwargs.get("action") or "store"
        if not isinstance(action, str) or action in OTHER_ARGPARSE_ACTIONS:
            raise Unsure
        # None: the project's own action (helpformat.NAMED: --version), argparse's to take.
        self.action: str | None = action if action in VALUE_ACTIONS + FLAG_ACTIONS else None
        self.nargs = kwargs.get("nargs")
        if self.nargs not in ((None, "?") if self.positional else (None,)):
            raise Unsure
        self.dest: str = names[0] if self.positional else kwargs.get("dest") or option_dest(names)
        self.const = {"store_true": True, "store_false": False}.get(action, kwargs.get("const"))
        self.default: Any = kwargs.get(
            "default", {"store_true": False, "store_false": True}.get(action)
        )
        self.explicit_default = "default" in kwargs
        self.type: Callable[[str], Any] | None = kwargs.get("type")
        self.choices = kwargs.get("choices")
        self.required = bool(kwargs.get("required")) or (self.positional and self.nargs is None)
        if self.positional and self.action != "store":
            raise Unsure

    def value(self, text: str) -> Any:
        """The text as argparse converts and checks it; Unsure where argparse would fail."""
        try:
            value = text if self.type is None else self.type(text)
        except Exception:
            raise Unsure from None
        if self.choices is not None and value not in self.choices:
            raise Unsure
        return value

    def take(self, namespace: dict[str, Any], text: str) -> None:
        """Do what the action does with ``text`` (a flag's is ignored)."""
        if self.action == "store":
            namespace[self.dest] = self.value(text)
        elif self.action == "append":
            items = namespace.get(self.dest)
            if items is not None and type(items) is not list:
                raise Unsure  # argparse copies other kinds with the copy module
            namespace[self.dest] = [*(items or ()), self.value(text)]
        elif self.action == "count":
            count = namespace.get(self.dest)
            if count is not None and type(count) is not int:
                raise Unsure
            namespace[self.dest] = (count or 0) + 1
        elif self.action in FLAG_ACTIONS:
            namespace[self.dest] = self.const
        else:
            raise Unsure  # the project's own actions (--version) are argparse's


def option_dest(names: tuple[str, ...]) -> str:
    """argparse's dest of an option: its first long name (else its first), dashes to _."""
    long_names = [name for name in names if name.startswith("--")]
    return (long_names or list(names))[0].lstrip("-").replace("-", "_")


class Table:
    """What a Declaration's calls declare, as argparse would hold them."""

    def __init__(self, declaration: Recorder, prog: str) -> None:
        if not set(declaration.kwargs) <= PARSER_KEYS:
            raise Unsure
        self.prog = prog
        self.arguments: list[Argument] = []
        self.defaults: dict[str, Any] = {}
        self.group_required: dict[int, bool] = {}
        self.subcommands: dict[str, Declaration] = {}
        self.subcommand_dest = SUPPRESS
        self.has_subcommands = False
        self.read(declaration, None)
        self.options = {name: arg for arg in self.arguments for name in arg.names}
        self.positionals = [arg for arg in self.arguments if arg.positional]
        if self.has_subcommands and self.positionals:
            raise Unsure

    def read(self, recorder: Recorder, group: object) -> None:
        for call in recorder.calls:
            if call.method == "add_argument":
                self.add(Argument(call.args, call.kwargs, group))
            elif call.method == "add_mutually_exclusive_group" and call.child is not None:
                if not set(call.kwargs) <= {"required"}:
                    raise Unsure
                self.group_required[id(call.child)] = bool(call.kwargs.get("required"))
                self.read(call.child, id(call.child))
            elif call.method == "set_defaults":
                self.defaults.update(call.kwargs)
                for arg in self.arguments:
                    if arg.dest in call.kwargs:
                        arg.default = call.kwargs[arg.dest]
            elif call.method == "add_subparsers" and call.child is not None:
                self.add_subcommands(call.kwargs, call.child)
            else:
                raise Unsure

    def add(self, arg: Argument) -> None:
        if not arg.explicit_default and arg.dest in self.defaults:
            arg.default = self.defaults[arg.dest]
        self.arguments.append(arg)

    def add_subcommands(self, kwargs: dict[str, Any], subcommands: Recorder) -> None:
        if self.has_subcommands or not set(kwargs) <= {"dest", "metavar", "required", "help"}:
            raise Unsure
        self.has_subcommands = True
        self.subcommand_dest = kwargs.get("dest", SUPPRESS)
        for call in subcommands.calls:
            if call.method != "add_parser" or call.child is None or "prog" in call.kwargs:
                raise Unsure
            self.subcommands[call.args[0]] = call.child  # type: ignore[assignment]

    def defaults_into(self, namespace: dict[str, Any]) -> None:
        """argparse's first step: each action's default, then set_defaults' others."""
        actions = [(arg.dest, arg.default) for arg in self.arguments]
        if self.has_subcommands:
            actions.append((self.subcommand_dest, None))
        for dest, default in actions:
            if dest != SUPPRESS and dest not in namespace and default != SUPPRESS:
                namespace[dest] = default
        for dest, default in self.defaults.items():
            namespace.setdefault(dest, default)


def quick_parse(declaration: Declaration, argv: Sequence[str]) -> Namespace | None:
    """argparse's namespace for ``argv``, or None where argparse should parse it."""
    namespace: dict[str, Any] = {}
    prog = declaration.kwargs.get("prog")  # argparse's default, argv[0]'s name, is not read
    try:
        if not isinstance(prog, str):
            raise Unsure
        parse_into(declaration, prog, list(argv), namespace)
    except Unsure:
        return None
    return Namespace(**namespace)


def parse_into(
    declaration: Recorder, prog: str, words: list[str], namespace: dict[str, Any]
) -> None:
    """Parse ``words`` with one parser into ``namespace``, a subcommand's line with its."""
    table = Table(declaration, prog)
    table.defaults_into(namespace)
    seen: list[Argument] = []
    filled = 0  # positionals given
    run_over = False  # a positional, then an option: positionals after that are unsure
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("-") and word != "-":
            arg = table.options.get(word)
            if arg is None or conflicts(arg, seen):
                raise Unsure
            text = word
            if arg.action in VALUE_ACTIONS:
                index += 1
                if index == len(words) or words[index].startswith("-"):
                    raise Unsure
                text = words[index]
            arg.take(namespace, text)
            seen.append(arg)
            run_over = filled > 0
        elif table.has_subcommands:
            subcommand(table, word, words[index + 1 :], namespace)
            break
        else:
            if run_over or filled == len(table.positionals):
                raise Unsure
            arg = table.positionals[filled]
            arg.take(namespace, word)
            seen.append(arg)
            filled += 1
        index += 1
    else:
        if table.has_subcommands:
            raise Unsure  # no subcommand: argparse's error, or cli's
    finish(table, seen, namespace)


def conflicts(arg: Argument, seen: list[Argument]) -> bool:
    """Another option of ``arg``'s mutually exclusive group was given."""
    return arg.group is not None and any(
        other.group == arg.group and other is not arg for other in seen
    )


def subcommand(table: Table, name: str, words: list[str], namespace: dict[str, Any]) -> None:
    """argparse's subparsers action: the rest of the line is the subcommand's; what its
    parser sets goes over the namespace."""
    child = table.subcommands.get(name)
    if child is None:
        raise Unsure
    if table.subcommand_dest != SUPPRESS:
        namespace[table.subcommand_dest] = name
    inner: dict[str, Any] = {}
    parse_into(child, f"{table.prog} {name}", words, inner)
    namespace.update(inner)


def finish(table: Table, seen: list[Argument], namespace: dict[str, Any]) -> None:
    """The end of argparse's parse: positionals left take their default, required ones
    and required groups must be there, string defaults go through their type."""
    for arg in table.positionals[sum(arg.positional for arg in seen) :]:
        if arg.required or arg.default == SUPPRESS:
            raise Unsure
        default = arg.default
        namespace[arg.dest] = arg.value(default) if isinstance(default, str) else default
        seen.append(arg)
    for arg in table.arguments:
        if arg.required and arg not in seen:
            raise Unsure
        current = namespace.get(arg.dest, namespace)  # namespace: no value
        if arg not in seen and isinstance(arg.default, str) and current is arg.default:
            namespace[arg.dest] = arg.value(current)  # argparse types a default given as text
    for group, required in table.group_required.items():
        if required and not any(arg.group == group for arg in seen):
            raise Unsure
    namespace.setdefault(USAGE_PROG, table.prog)
