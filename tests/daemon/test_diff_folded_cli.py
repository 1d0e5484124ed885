"""``flamed diff-folded``: the reference corpus byte for byte, fractions, bad lines, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.conftest import conformance_dir, run_flamed

OPTIONS = {"default": [], "n": ["-n"], "s": ["-s"]}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_conformance(option: str) -> None:
    folder = conformance_dir("diff")
    result = run_flamed(
        "diff-folded", *OPTIONS[option], str(folder / "before.folded"), str(folder / "after.folded")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (folder / f"before-after.{option}.diff").read_bytes()


def test_long_options_and_stdin(tmp_path: Path) -> None:
    folder = conformance_dir("diff")
    before = (folder / "before.folded").read_bytes()
    result = run_flamed(
        "diff-folded",
        "--normalize",
        "--strip-hex",
        "-",
        str(folder / "after.folded"),
        stdin=before,
    )
    assert result.returncode == 0, result.stderr
    short = run_flamed(
        "diff-folded", "-ns", str(folder / "before.folded"), str(folder / "after.folded")
    )
    assert result.stdout == short.stdout != b""


def test_fractions_are_kept_and_output_sorted_bytewise(tmp_path: Path) -> None:
    one = tmp_path / "one.folded"
    two = tmp_path / "two.folded.gz"
    one.write_bytes(b"b;\xc3\xa9 1.5\nB;x 2\nb;\xc3\xa9 0.25\n")
    two.write_bytes(gzip.compress(b"a 3\nB;x 0.5\n"))
    result = run_flamed("diff-folded", str(one), str(two))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"B;x 2 0.5\na 0 3\nb;\xc3\xa9 1.75 0\n"


def test_fractions_print_with_15_significant_digits_as_perl(tmp_path: Path) -> None:
    """The expected bytes are what `perl difffolded.pl one.folded two.folded | sort` printed
    for these two files (FlameGraph 41fee1f): Perl prints a sum with %.15g."""
    one = tmp_path / "one.folded"
    two = tmp_path / "two.folded"
    one.write_bytes(b"a;b 1.1\na;b 13.134398324872284\nc 0.1\nc 0.2\n")
    two.write_bytes(b"a;b 2.5\nc 3\nbig 123456789012345678\n")
    result = run_flamed("diff-folded", str(one), str(two))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a;b 14.2343983248723 2.5\nbig 0 123456789012345678\nc 0.3 3\n"


def test_bad_lines_warn_once_and_are_skipped(tmp_path: Path) -> None:
    one = tmp_path / "one.folded"
    two = tmp_path / "two.folded"
    one.write_bytes(b"a;b 2\nno count\nanother bad line\n\n")
    two.write_bytes(b"a;b 3\nthird bad\n")
    result = run_flamed("diff-folded", str(one), str(two))
    assert result.returncode == 0
    assert result.stdout == b"a;b 2 3\n"
    warnings = [line for line in result.stderr.decode().splitlines() if "without a count" in line]
    assert len(warnings) == 1


def test_missing_file_is_one_line_and_nonzero(tmp_path: Path) -> None:
    result = run_flamed("diff-folded", str(tmp_path / "absent"), str(tmp_path / "absent2"))
    assert result.returncode != 0
    assert result.stdout == b""
    assert len(result.stderr.decode().strip().splitlines()) == 1
    assert "absent" in result.stderr.decode()


def test_two_files_are_required() -> None:
    result = run_flamed("diff-folded", "only-one")
    assert result.returncode == 2
    assert result.stdout == b""
