"""The quick parser against argparse, both made from the one declaration of `flamed`'s
command line: whenever the quick parser answers, argparse answers the same."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.daemon.cli import chosen_command, declare
from flamed.daemon.commands.declaration import SUPPRESS, Declaration, Recorder
from flamed.daemon.commands.helpformat import build_argparse
from flamed.daemon.commands.quickparse import quick_parse


def option_strings(recorder: Recorder) -> set[str]:
    """Every option string declared anywhere in the tree, and every subcommand's name."""
    found: set[str] = set()
    for call in recorder.calls:
        if call.method == "add_argument":
            found.update(name for name in call.args if name.startswith("-"))
        if call.method == "add_parser":
            found.add(call.args[0])
        if call.child is not None:
            found |= option_strings(call.child)
    return found


FULL = declare()
DECLARED = sorted(option_strings(FULL))
# Values and traps: what argparse takes as values, and what the quick parser must leave to it.
OTHER = ["4", "0", "-1", "x", "-", "", "a b", "cycles", "in.txt", "--", "-h", "--help"]
OTHER += ["--all=1", "--al", "-qv", "-n4", "--bogus", "--pid=", "-nx", "--version"]


def argparse_namespace(declaration: Declaration, argv: list[str]) -> argparse.Namespace | None:
    """argparse's namespace, or None where it exits (help, version, usage errors)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return build_argparse(declaration).parse_args(argv)
        except SystemExit:
            return None


def check(declaration: Declaration, argv: list[str]) -> bool:
    quick = quick_parse(declaration, argv)
    if quick is None:
        return False
    expected = argparse_namespace(declaration, argv)
    assert expected is not None, f"argparse refuses {argv}, the quick parser took it"
    assert vars(quick) == vars(expected), argv
    return True


def as_cli_declares(argv: list[str]) -> Declaration:
    """The declaration cli.parse_command makes for the line: only the named command's."""
    command = chosen_command(argv)
    return declare(command, argv[argv.index(command) + 1 :] if command else [])


words = st.sampled_from(DECLARED + OTHER)
lines = st.tuples(
    st.lists(st.sampled_from(["-q", "-v", "--verbose", "--quiet"]), max_size=2),
    st.sampled_from(["collapse", "diff-folded", "flamegraph", "record", "export", "run"]),
    st.sampled_from(["perf", "dtrace", "ghcprof", "sample", "guess", "pprof", "x", "-"]),
    st.lists(words, max_size=7),
).map(lambda parts: [*parts[0], parts[1], parts[2], *parts[3]])


@settings(max_examples=600, deadline=None)
@given(lines)
def test_whenever_the_quick_parser_answers_argparse_answers_the_same(argv: list[str]) -> None:
    check(FULL, argv)
    check(as_cli_declares(argv), argv)


# The collapse formats' own options, values and files: most of these lines are accepted.
COLLAPSE_WORDS = [
    word for word in DECLARED if word.startswith("-") and word not in ("--version", "--help")
] + ["4", "in.txt", "-", "cycles"]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["perf", "dtrace", "ghcprof", "sample", "recursive"]),
    st.lists(st.sampled_from(COLLAPSE_WORDS), max_size=6),
)
def test_collapse_lines_agree_with_argparse(name: str, rest: list[str]) -> None:
    argv = ["collapse", name, *rest]
    check(FULL, argv)
    check(as_cli_declares(argv), argv)


COMMON = [
    ["collapse", "perf", "--all", "in.txt"],
    ["collapse", "perf", "in.txt", "--pid", "--tid", "-n", "1"],
    ["-v", "collapse", "perf", "--skip-after", "main", "--skip-after", "f", "-"],
    ["collapse", "perf", "-q", "-v", "-v", "--event-filter", "cycles"],
    ["collapse", "dtrace", "--includeoffset", "-n", "2", "in.txt"],
    ["collapse", "ghcprof", "--ticks", "in.prof"],
    ["collapse", "guess"],
    ["diff-folded", "a.txt", "b.txt"],
    ["export", "pprof", "in.txt"],
]


@pytest.mark.parametrize("argv", COMMON)
def test_the_common_lines_are_parsed_without_argparse(argv: list[str]) -> None:
    assert check(as_cli_declares(argv), argv)
    assert check(FULL, argv)


UNSURE = [
    ["collapse", "perf", "--al", "in.txt"],  # abbreviated
    ["collapse", "perf", "--event-filter=cycles", "in.txt"],
    ["collapse", "perf", "-n2", "in.txt"],
    ["collapse", "perf", "-qv", "in.txt"],
    ["collapse", "perf", "--", "in.txt"],
    ["collapse", "perf", "--bogus"],
    ["collapse", "perf", "-n"],  # value missing
    ["collapse", "perf", "-n", "0"],  # refused by its type
    ["collapse", "perf", "--event-filter", "-x"],
    ["collapse", "perf", "a", "b"],  # one FILE only
    ["collapse", "ghcprof", "--ticks", "--bytes"],  # exclusive
    ["collapse", "perf", "--help"],
    ["--version"],
    ["collapse"],
    [],
]


@pytest.mark.parametrize("argv", UNSURE)
def test_what_the_quick_parser_is_unsure_of_is_argparse_s(argv: list[str]) -> None:
    assert quick_parse(as_cli_declares(argv), argv) is None


def test_suppress_is_argparse_s() -> None:
    assert SUPPRESS == argparse.SUPPRESS
