"""The ``flamed`` command line: one module per command in ``flamed.daemon.commands``.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` (``parser``
is a ``Declaration``: the calls argparse would take, recorded; argparse is built from
it only for help, errors and lines the quick parser leaves to it) and
``run(args) -> int``, and imports nothing heavy at module level (aiohttp and
friends are imported inside ``run``) so ``flamed collapse`` starts fast. A module
that sets ``LAZY_LOGGING = True`` logs only through WarnOnce, and logging is then
configured (and imported) at its first warning.
User errors (``FlamedError``) become one line on stderr and an exit code.
"""

from __future__ import annotations

import gc
import os
import sys

from flamed.collapse.common import TYPE_CHECKING, defer_logging_setup
from flamed.collapse.errors import FlamedError
from flamed.daemon.commands import COMMANDS
from flamed.daemon.commands.declaration import Declaration
from flamed.daemon.commands.quickparse import quick_parse

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from types import ModuleType

DESCRIPTION = """\
flamed: continuous profiling with perf/DTrace and flame graphs.

The collapse and render commands stand in for FlameGraph's stackcollapse-perf.pl,
stackcollapse.pl, difffolded.pl and flamegraph.pl (same formats, same options);
`flamed run` is the always-on daemon that serves them over HTTP.
"""


def load_commands(only: str | None = None) -> list[ModuleType]:
    """The command modules; with ``only``, just that command's (a name as typed)."""
    names = [name for name in COMMANDS if only is None or name.replace("_", "-") == only]
    modules = [f"flamed.daemon.commands.{name}" for name in names]
    for module in modules:
        __import__(module)  # not importlib: importing it (and warnings) cost ~0.4 ms
    return [sys.modules[module] for module in modules]


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the line, if it is one: only its module is imported then
    (start-up time counts in every `flamed collapse`), else all of them, for help."""
    for arg in argv:
        if not arg.startswith("-"):
            known = {name.replace("_", "-") for name in COMMANDS}
            return arg if arg in known else None
    return None


def declare(only: str | None = None, words: Sequence[str] = ()) -> Declaration:
    """The parser of every command, or of ``only``, as declared; ``words`` (what follows
    the command on the line) go to a command module's ``add_arguments_for``, if it has
    one: `collapse` then declares only the named format's parser."""
    parser = Declaration(prog="flamed", description=DESCRIPTION, formatter_class="flamed")
    parser.add_argument("--version", action="flamed-version", help="print the version and exit")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (repeat for debug output)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log errors only, no warnings")
    # Not required here: `flamed --bogus` is about --bogus; a missing command is said in main.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in load_commands(only):
        sub = subparsers.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class="flamed",  # helpformat.HelpFormatter
        )
        add_for = getattr(module, "add_arguments_for", None)
        if add_for is not None:
            add_for(sub, words)
        else:
            module.add_arguments(sub)
        sub.set_defaults(
            handler=module.run,
            lazy_logging=getattr(module, "LAZY_LOGGING", False),
            fast_exit=getattr(module, "FAST_EXIT", False),
        )
    return parser


def build_parser(only: str | None = None, words: Sequence[str] = ()) -> argparse.ArgumentParser:
    """argparse's parser of ``declare(only, words)``."""
    from flamed.daemon.commands.helpformat import build_argparse

    return build_argparse(declare(only, words))


def configure_logging(verbose: int, quiet: bool) -> None:
    import logging

    level = (
        logging.ERROR
        if quiet
        else logging.DEBUG
        if verbose > 1
        else (logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(level=level, format="flamed: %(levelname)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command in this process, which goes on: what the command kept for a fast
    exit is dropped after it."""
    from flamed.daemon.commands.common import KEPT

    try:
        return run_command(sys.argv[1:] if argv is None else list(argv))[0]
    finally:
        KEPT.clear()


def console_main() -> None:
    """The ``flamed`` script. A command whose module sets ``FAST_EXIT = True`` (a one-shot
    conversion that ends holding millions of small objects) exits without tearing the
    interpreter down: freeing them one by one cost ~10% of ``flamed flamegraph``.
    While the command's modules load and its line is parsed, the cyclic garbage collector
    is off: its passes over the new modules' objects, which all stay, cost ~1 ms of every
    start. It is on again before the command runs."""
    gc.disable()
    args = parse_command(sys.argv[1:])
    gc.enable()
    code, fast = run_parsed(args), args.fast_exit
    if fast:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            code = code or 141
        if "logging" in sys.modules:
            sys.modules["logging"].shutdown()
        os._exit(code)
    sys.exit(code)


def run_command(arguments: list[str]) -> tuple[int, bool]:
    """Parse and run one command: its exit status, and whether it allows a fast exit."""
    args = parse_command(arguments)
    return run_parsed(args), args.fast_exit


def parse_command(arguments: list[str]) -> argparse.Namespace:
    """The command line parsed, with the command's handler; usage errors exit (status 2).
    The quick parser reads the common lines; argparse, built from the same declaration,
    the rest (help, errors, anything the quick parser is not sure of)."""
    command = chosen_command(arguments)
    words = arguments[arguments.index(command) + 1 :] if command else []
    declaration = declare(command, words)
    quick = quick_parse(declaration, arguments)
    if quick is not None:
        return quick
    from flamed.daemon.commands.helpformat import build_argparse

    parser = build_argparse(declaration)
    args = parser.parse_args(arguments)
    if args.command is None:
        from flamed.daemon.commands.helpformat import usage_error

        known = ", ".join(name.replace("_", "-") for name in COMMANDS)
        usage_error(parser.prog, f"missing COMMAND: one of {known}")
    return args


def run_parsed(args: argparse.Namespace) -> int:
    if args.lazy_logging:
        defer_logging_setup(lambda: configure_logging(args.verbose, args.quiet))
    else:
        configure_logging(args.verbose, args.quiet)
    try:
        code: int = args.handler(args)
    except FlamedError as err:
        print(f"flamed {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`flamed ... | head`): not an error, stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    console_main()
