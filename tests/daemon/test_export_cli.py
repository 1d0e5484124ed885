"""``flamed export pprof``: the command line around the pprof encoder, run as a user would."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT, run_flamed
from tests.render.pprofread import decode_protobuf

FOLDED = b"main;parse;lex 3\nmain;parse;read 7\nmain;render 120\nmain 1\n"
EXPECTED = {"main;parse;lex": 3, "main;parse;read": 7, "main;render": 120, "main": 1}


def test_stdin_to_stdout(pb: ModuleType) -> None:
    done = run_flamed("export", "pprof", stdin=FOLDED)
    assert done.returncode == 0, done.stderr
    profile = decode_protobuf(pb, done.stdout)
    assert profile.folded() == EXPECTED
    assert profile.period == round(1e9 / 99)
    assert profile.time_nanos == 0 and profile.duration_nanos == 0


def test_file_options_and_labels(pb: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "in.folded.gz"
    source.write_bytes(gzip.compress(FOLDED))
    done = run_flamed(
        "export", "pprof", "--frequency", "250", "--start", "1700000000.5",
        "--duration", "10", "--label", "host=web1", "--label", "env=prod", str(source),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    profile = decode_protobuf(pb, done.stdout)
    assert profile.folded() == EXPECTED
    assert profile.period == 4_000_000
    assert profile.time_nanos == 1_700_000_000_500_000_000
    assert profile.duration_nanos == 10_000_000_000
    assert profile.samples[0]["labels"] == [("host", "web1"), ("env", "prod")]


def test_output_file(pb: ModuleType, tmp_path: Path) -> None:
    source, out = tmp_path / "in.folded", tmp_path / "out.pb.gz"
    source.write_bytes(FOLDED)
    done = run_flamed("export", "pprof", "-o", str(out), str(source))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert decode_protobuf(pb, out.read_bytes()).folded() == EXPECTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.folded", "out.pb.gz"]


def test_malformed_lines_are_skipped_with_one_warning(pb: ModuleType) -> None:
    done = run_flamed("export", "pprof", stdin=b"garbage\nmain;x 2\nmore garbage\n")
    assert done.returncode == 0
    assert decode_protobuf(pb, done.stdout).folded() == {"main;x": 2}
    assert done.stderr.count(b"WARNING") == 1, done.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--label", "novalue"], 2, b"--label 'novalue': expected KEY=VALUE"),
        (["--frequency", "0"], 2, b"--frequency 0: must be above 0"),
        (["--start", "-5"], 2, b"--start -5: out of range"),
        (["/nonexistent/x.folded"], 1, b"cannot read /nonexistent/x.folded"),
    ],
)
def test_user_errors_are_one_line(args: list[str], code: int, message: bytes) -> None:
    done = run_flamed("export", "pprof", *args, stdin=FOLDED)
    assert done.returncode == code
    assert message in done.stderr
    assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
    assert done.stdout == b""


def test_refuses_to_write_binary_to_a_terminal() -> None:
    main, tty = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flamed.daemon.cli", "export", "pprof"],
            input=FOLDED, stdout=tty, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(tty)
        os.close(main)
    assert done.returncode == 2
    assert b"binary" in done.stderr


def test_export_does_not_import_the_daemon_stack(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from flamed.daemon.cli import main\n"
        "sys.stdout = open(sys.argv[1], 'w')\n"
        "main(['export', 'pprof', '-o', sys.argv[2], sys.argv[3]])\n"
        "heavy = [m for m in ('aiohttp', 'prometheus_client', 'watchdog') if m in sys.modules]\n"
        "sys.stderr.write(repr(heavy))\n"
    )
    source = tmp_path / "in.folded"
    source.write_bytes(FOLDED)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "log"), str(tmp_path / "o.pb.gz"), str(source)],
        capture_output=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith(b"[]"), done.stderr


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_output_files_get_the_mode_a_shell_redirect_gives(
    tmp_path: Path, umask: int, mode: int
) -> None:
    """0666 less the umask, as `> file` gives (it was 0600: with `sudo flamed ... -o`, the
    user could not open their own file), still through a temporary name and a rename."""
    source, out = tmp_path / "in.folded", tmp_path / "out.pb.gz"
    source.write_bytes(FOLDED)
    command = [sys.executable, "-m", "flamed.daemon.cli", "export", "pprof", "-o", str(out)]
    done = subprocess.run([*command, str(source)], capture_output=True, umask=umask, check=False)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o7777 == mode
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.folded", "out.pb.gz"]


@pytest.mark.parametrize(
    "data", [b"", b"\x93\x00 not folded\nnor this\n"], ids=["empty", "garbage"]
)
def test_nothing_to_export_is_one_line_and_exit_1(tmp_path: Path, data: bytes) -> None:
    """An empty or garbage file made an empty profile and exit 0."""
    source, out = tmp_path / "in.folded", tmp_path / "out.pb.gz"
    source.write_bytes(data)
    done = run_flamed("export", "pprof", "-o", str(out), str(source))
    assert done.returncode == 1 and not out.exists()
    last = done.stderr.decode().splitlines()[-1]
    assert last == f"flamed export: no folded stacks in {source}; expected `stack count` lines"
