"""``flamed export speedscope``: the command line around the speedscope encoder, run as a user
would (the file format itself is checked against speedscope in tests/render/)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.conftest import run_flamed
from tests.render.test_speedscope import samples_of

FOLDED = b"main;parse;lex 3\nmain;parse;read 7\nmain;render 120\nmain 1\n"
EXPECTED = {"main;parse;lex": 3, "main;parse;read": 7, "main;render": 120, "main": 1}


def test_stdin_to_stdout() -> None:
    done = run_flamed("export", "speedscope", stdin=FOLDED)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert samples_of(document) == EXPECTED
    assert document["name"] == "stdin" and document["exporter"].startswith("flamed ")


def test_a_gzipped_file_to_an_output_file_named_after_it(tmp_path: Path) -> None:
    source, out = tmp_path / "web.folded.gz", tmp_path / "web.speedscope.json"
    source.write_bytes(gzip.compress(FOLDED))
    done = run_flamed("export", "speedscope", "-o", str(out), str(source))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    document = json.loads(out.read_bytes())
    assert samples_of(document) == EXPECTED and document["name"] == "web.folded.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name, out.name]


def test_the_name_option() -> None:
    done = run_flamed("export", "speedscope", "--name", "nginx, 5 minutes", stdin=FOLDED)
    assert json.loads(done.stdout)["profiles"][0]["name"] == "nginx, 5 minutes"


def test_a_missing_file_is_one_line() -> None:
    done = run_flamed("export", "speedscope", "/nonexistent/x.folded")
    assert done.returncode != 0 and done.stdout == b""
    assert done.stderr.count(b"\n") == 1 and b"/nonexistent/x.folded" in done.stderr
