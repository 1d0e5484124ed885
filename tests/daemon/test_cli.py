"""The ``flamed`` command line's own behaviour: usage errors are one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_main_drops_what_a_one_shot_command_kept(tmp_path: Path) -> None:
    """`flamed flamegraph` keeps its large objects for the fast exit to drop; main(), which
    runs commands in a process that goes on, drops them after each command."""
    folded = tmp_path / "in.folded"
    folded.write_text("a;b 3\na;c 1\n")
    script = (
        "import io, sys\n"
        "from flamed.daemon.cli import main\n"
        "from flamed.daemon.commands.common import KEPT\n"
        "sys.stdout = io.TextIOWrapper(io.BytesIO())\n"
        "code = main(['flamegraph', sys.argv[1]])\n"
        "sys.stderr.write(f'{code} {len(KEPT)}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folded)], capture_output=True, check=False, timeout=60
    )
    assert done.stderr.decode() == "0 0"


def test_the_garbage_collector_is_on_again_when_the_command_runs() -> None:
    """`flamed` turns the cyclic garbage collector off while the command's modules load and
    its line is parsed (start-up time), and on again before the command runs: `flamed run`
    is a daemon."""
    script = (
        "import gc, os, sys\n"
        "from flamed.daemon import cli\n"
        "from flamed.daemon.commands import check_config\n"
        "check_config.run = lambda args: os.write(2, b'on' if gc.isenabled() else b'off') and 0\n"
        "sys.argv = ['flamed', 'check-config', 'flamed.toml']\n"
        "cli.console_main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=False, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, b"on")
