"""The config contract: defaults, every refusal names file, line, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamed.collapse.errors import ConfigError
from flamed.daemon.config import (
    DEFAULT_SOURCE,
    default_state_dir,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
    parse_listen,
)
from tests.conftest import ROOT, run_flamed

GOOD = """\
[server]
listen = "127.0.0.1:9999"

[storage]
state_dir = "/tmp/flamed-test"
bucket = "5s"
retention = "2h"
max_stacks = 1000

[profile]
frequency = 49

[[targets]]
name = "system"
all = true

[[targets]]
name = "db"
process = "^postgres$"
frequency = 199
call_graph = "dwarf"

[[targets]]
name = "one.off"
pids = [1, 2]
"""


def test_embedded_default_profiles_the_whole_machine() -> None:
    config = load_config(None, env={}, euid=0)
    assert config.source == DEFAULT_SOURCE
    assert config.server.listen == "127.0.0.1:9797"
    assert config.storage.state_dir == "/var/lib/flamed"
    assert config.storage.bucket == 10 and config.storage.retention == 86400
    assert config.storage.max_stacks == 50000
    (spec,) = config.targets
    assert spec.name == "system" and spec.all and spec.frequency == 99
    assert spec.call_graph == "fp" and spec.backend == "auto"


def test_a_full_config_and_profile_overrides() -> None:
    config = parse_config(GOOD, "good.toml")
    assert (config.server.host, config.server.port) == ("127.0.0.1", 9999)
    assert config.storage.bucket == 5 and config.storage.retention == 7200
    system, db, one = config.targets
    assert system.frequency == 49 and system.call_graph == "fp"
    assert db.process == "^postgres$" and db.frequency == 199 and db.call_graph == "dwarf"
    assert one.pids == (1, 2)


def test_the_shipped_example_config_is_valid() -> None:
    example = ROOT / "deploy" / "flamed.toml"
    if not example.is_file():
        pytest.skip("deploy/flamed.toml is not in this tree")
    config = load_config(str(example))
    assert [spec.name for spec in config.targets] == ["system"]


def test_state_dir_defaults() -> None:
    assert default_state_dir({"STATE_DIRECTORY": "/s/a:/s/b"}, 0) == "/s/a"
    assert default_state_dir({}, 0) == "/var/lib/flamed"
    assert default_state_dir({}, 1000, "/home/u") == "/home/u/.local/state/flamed"
    assert default_state_dir({"XDG_STATE_HOME": "/x"}, 1000, "/home/u") == "/x/flamed"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("24h", 86400), ("1h30m", 5400), ("250ms", 0.25), ("7d", 604800)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "5 m", "1x", "-5s", "10s5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (60, 300, 86400, 90, 2.5)] == [
        "1m",
        "5m",
        "1d",
        "90s",
        "2.5s",
    ]


def test_listen_addresses() -> None:
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:9797") == ("::1", 9797)
    assert parse_listen("localhost:1") == ("localhost", 1)
    for bad in ("9797", "host:", "host:99999", "a b:1"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def replace_line(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


REFUSALS = [
    # (config text, expected message start after "bad.toml")
    (replace_line('bucket = "5s"', 'bucket = "5s"\nbukcet = 1'), ":7: storage.bukcet: unknown key"),
    (
        replace_line('bucket = "5s"', "bucket = 5"),
        ":6: storage.bucket: expected a string, got an integer",
    ),
    (
        replace_line('bucket = "5s"', 'bucket = "5 s"'),
        ":6: storage.bucket: '5 s' is not a duration",
    ),
    (
        replace_line('retention = "2h"', 'retention = "1s"'),
        ":7: storage.retention: must be at least",
    ),
    (
        replace_line("max_stacks = 1000", "max_stacks = 1"),
        ":8: storage.max_stacks: must be between",
    ),
    (
        replace_line('"127.0.0.1:9999"', '"nowhere"'),
        ":2: server.listen: 'nowhere' is not host:port",
    ),
    (
        replace_line('"^postgres$"', '"(unclosed"'),
        ":19: targets[1].process: bad regular expression",
    ),
    (replace_line('name = "db"', 'name = "system"'), ":18: targets[1].name: duplicate target name"),
    (
        replace_line('name = "db"', 'name = "../etc"'),
        ":18: targets[1].name: '../etc' is not a safe",
    ),
    (
        replace_line('call_graph = "dwarf"', 'call_graph = "lbrx"'),
        ":21: targets[1].call_graph: 'lbrx'",
    ),
    (
        replace_line("frequency = 199", "frequency = 0"),
        ":20: targets[1].frequency: must be between",
    ),
    (
        replace_line("frequency = 49", 'frequency = "49"'),
        ":11: profile.frequency: expected an integer",
    ),
    (
        replace_line("pids = [1, 2]", 'pids = [1, "x"]'),
        ":25: targets[2].pids: 'x' is not a process id",
    ),
    (
        replace_line("all = true", 'all = true\nunit = "x.service"'),
        ":13: targets[0]: conflicting keys",
    ),
    (replace_line("all = true", "frequency = 5"), ":13: targets[0]: missing: set exactly one"),
    (replace_line("all = true", "all = false"), ":15: targets[0].all: only `all = true`"),
    (replace_line("[profile]", "[profiel]"), ":10: profiel: unknown key"),
    (replace_line('listen = "127.0.0.1:9999"', 'listen = "127.0.0.1:9999'), ": invalid TOML: "),
    ("[server]\n", ": targets: no [[targets]]"),
]


@pytest.mark.parametrize(("text", "expected"), REFUSALS, ids=[e for _, e in REFUSALS])
def test_refusals_name_file_line_key_and_reason(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bad.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("bad.toml" + expected), message


def test_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    text = GOOD.replace("[storage]", f"token_file = {str(token)!r}\n\n[storage]")
    assert parse_config(text, "t.toml").server.token == "s3cret"
    missing = GOOD.replace("[storage]", f"token_file = {str(tmp_path / 'no')!r}\n[storage]")
    with pytest.raises(ConfigError, match=r"^t.toml:4: server.token_file: cannot read"):
        parse_config(missing, "t.toml")


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "absent.toml"))


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    done = run_flamed("check-config", str(good))
    assert done.returncode == 0, done.stderr
    assert b"ok: 3 target(s) (system, db, one.off)" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"^postgres$"', '"(x"'))
    done = run_flamed("check-config", str(bad))
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and f"{bad}:19: targets[1].process: bad regular expression" in lines[0]
