"""The ``flamed`` command line's own behaviour: usage errors are one line, exit 2."""

from __future__ import annotations

import pytest

from tests.conftest import run_flamed

USAGE_ERRORS = [
    (
        ["flamegraph", "--width", "abc"],
        "flamed flamegraph: --width: invalid int value: 'abc' (see flamed flamegraph --help)",
    ),
    (
        ["collapse", "perf", "--bogus"],
        "flamed collapse perf: unrecognized arguments: --bogus (see flamed collapse perf --help)",
    ),
    (
        ["check-config", "a", "b"],
        "flamed check-config: unrecognized arguments: b (see flamed check-config --help)",
    ),
    (["--bogus"], "flamed: unrecognized arguments: --bogus (see flamed --help)"),
    ([], "flamed: missing COMMAND: one of collapse, diff-folded, flamegraph, record, run, "),
    (["nosuch"], "flamed: COMMAND: invalid choice: 'nosuch' (choose from "),
    (["collapse"], "flamed collapse: the following arguments are required: FORMAT (see "),
    (
        ["collapse", "bogus"],
        "flamed collapse: FORMAT: invalid choice: 'bogus' (choose from "
        "'perf', 'dtrace', 'recursive', 'sample', 'xctrace', 'vtune', 'vsprof', 'ghcprof', ",
    ),
    (["diff-folded", "--nope", "a", "b"], "flamed diff-folded: unrecognized arguments: --nope"),
    (["record", "-d", "1"], "flamed record: one of the arguments -p/--pid --process "),
    (["record", "-a", "-F"], "flamed record: -F/--frequency: expected one argument (see "),
    (["export", "pprof", "--frequency", "x"], "flamed export pprof: -F/--frequency: invalid "),
    (["run", "--nope"], "flamed run: unrecognized arguments: --nope (see flamed run --help)"),
]


@pytest.mark.parametrize(
    ("argv", "expected"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS]
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], expected: str) -> None:
    done = run_flamed(*argv)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith(expected), err
    assert "usage:" not in err and done.stdout == b""


def test_help_and_version_still_work() -> None:
    for argv in (["--help"], ["flamegraph", "--help"], ["collapse", "perf", "--help"]):
        done = run_flamed(*argv)
        assert done.returncode == 0 and b"usage: flamed" in done.stdout, argv
    done = run_flamed("--version")
    assert done.returncode == 0 and done.stdout.startswith(b"flamed ")
