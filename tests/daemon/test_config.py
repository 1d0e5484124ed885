"""The config contract: defaults, every refusal names file, line, key and reason."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from flamed.collapse.errors import ConfigError
from flamed.collector.base import TargetSpec
from flamed.daemon.config import (
    DEFAULT_SOURCE,
    SamplerConfig,
    ServerConfig,
    StorageConfig,
    default_state_dir,
    load_config,
    parse_config,
    parse_listen,
)
from flamed.daemon.export import endpoint, request_headers
from flamed.daemon.exporter_config import ExporterConfig
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
    (replace_line('bucket = "5s"', 'bucket = "2h"'), ":6: storage.bucket: must be at most 1h"),
    (
        replace_line('retention = "2h"', 'retention = "400d"'),
        ":7: storage.retention: must be at most 366d",
    ),
    (
        replace_line("frequency = 49", 'frequency = 49\nperf_path = "bin/perf"'),
        ":12: profile.perf_path: 'bin/perf': give an absolute path or a name on PATH",
    ),
    (
        replace_line("frequency = 49", 'frequency = 49\nevent = "cycles -a"'),
        ":12: profile.event: 'cycles -a' is not a perf event name",
    ),
    (
        replace_line("frequency = 199", "frequency = 199\nmmap_pages = 100"),
        ":21: targets[1].mmap_pages: 100 is not a power of two",
    ),
    (
        replace_line("frequency = 199", "frequency = 199\nmmap_pages = 0"),
        ":21: targets[1].mmap_pages: must be between 1 and 65536 pages",
    ),
    (
        replace_line("frequency = 199", 'frequency = 199\njava_perfmap = "yes"'),
        ":21: targets[1].java_perfmap: expected true or false, got a string",
    ),
    (
        replace_line("frequency = 199", 'frequency = 199\nbackend = "pyspy"'),
        ":21: targets[1].backend: 'pyspy' is not one of auto, perf, dtrace, py-spy",
    ),
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


ZERO_AND_ABSURD = [
    # (the line replaced, its replacement, what check-config must say after FILE:LINE: )
    ('bucket = "5s"', 'bucket = "0s"', "6: storage.bucket: must be at least 1s"),
    ('retention = "2h"', 'retention = "0s"', "7: storage.retention: must be at least one bucket"),
    ('listen = "127.0.0.1:9999"', "max_renders = 0", "2: server.max_renders: must be between 1"),
    ("max_stacks = 1000", "max_stacks = -5", "8: storage.max_stacks: must be between 2"),
    ('retention = "2h"', 'memory = "1s"', "7: storage.memory: must be at least one bucket"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), ZERO_AND_ABSURD, ids=[n for _, n, _ in ZERO_AND_ABSURD]
)
def test_check_config_refuses_zero_and_absurd_values(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    """Refused, never silently replaced by a default (``bucket = "0s"`` ran as 10 s)."""
    bad = tmp_path / "bad.toml"
    bad.write_text(replace_line(old, new))
    done = run_flamed("check-config", str(bad))
    assert done.returncode == 1, done.stdout
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and f"{bad}:{expected}" in lines[0], lines


def test_allowed_hosts() -> None:
    base = '[storage]\nstate_dir = "/s"\n[[targets]]\nname = "x"\nall = true\n'
    config = parse_config('[server]\nallowed_hosts = ["Flamed.Example.com", "box."]\n' + base)
    assert config.server.allowed_hosts == ("flamed.example.com", "box")
    for bad, reason in (
        ('"http://x.example"', "not a host name"),
        ('"x.example:9797"', "not a host name"),
        ('""', "not a host name"),
        ('"*"', "not a host name"),
        ("1", "expected a string"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config(f"[server]\nallowed_hosts = [{bad}]\n{base}", "t.toml")
        assert str(caught.value).startswith("t.toml:2: server.allowed_hosts: "), caught.value
        assert reason in str(caught.value)
    with pytest.raises(ConfigError, match="expected an array"):
        parse_config(f'[server]\nallowed_hosts = "x"\n{base}', "t.toml")


def test_absent_keys_take_the_dataclass_defaults() -> None:
    minimal = parse_config('[storage]\nstate_dir = "/s"\n[[targets]]\nname = "x"\nall = true\n')
    assert minimal.server == ServerConfig()
    assert minimal.storage == StorageConfig("/s")
    assert minimal.targets == (TargetSpec("x", all=True),)
    assert minimal.sampler("x") == SamplerConfig() and minimal.samplers == {}


def test_jit_switches_go_to_the_session_of_their_target() -> None:
    text = replace_line("frequency = 49", "frequency = 49\npython_view = true")
    db_lines = "frequency = 199\njava_perfmap = true\nperf_maps = false"
    text = text.replace("frequency = 199", db_lines)
    config = parse_config(text.replace("pids = [1, 2]", 'pids = [1, 2]\nbackend = "py-spy"'))
    assert config.sampler("system").arguments() == {"python_view": True}
    db = {"python_view": True, "java_perfmap": True, "perf_maps": False}
    assert config.sampler("db").arguments() == db
    one_off = TargetSpec("one.off", pids=(1, 2), frequency=49, backend="py-spy")
    assert config.target("one.off") == one_off


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


# -- [[exporters]] ----------------------------------------------------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings and integers: TOML spells them as JSON does


def parse_exporters(
    tables: list[dict[str, Any]], source: str, hostname: str = "h1"
) -> tuple[ExporterConfig, ...]:
    """The exporters of a document with one target, ``web``, and these [[exporters]] tables."""
    text = '[storage]\nstate_dir = "/tmp/s"\n[[targets]]\nname = "web"\nall = true\n'
    for table in tables:
        text += "\n[[exporters]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
    return parse_config(text, source, hostname=lambda: hostname).exporters


def test_parse_a_full_config(tmp_path: Path) -> None:
    raw = [
        {
            "name": "grafana-cloud",
            "kind": "pyroscope",
            "url": "https://profiles-prod-001.grafana.net",
            "user": "123456",
            "password_file": secret(tmp_path, "pw", "glc_abc\n"),
            "tenant": "t1",
            "labels": {"env": "prod"},
            "targets": ["web"],
            "profiles": ["offcpu"],
            "queue": 10,
            "timeout": "10s",
            "max_age": "30m",
        },
        {"kind": "parca", "url": "http://parca:7070", "token_file": secret(tmp_path, "t", "tok")},
    ]
    one, two = parse_exporters(raw, "f.toml")
    assert one.name == "grafana-cloud" and one.password == "glc_abc" and one.user == "123456"
    assert one.labels == (("hostname", "h1"), ("env", "prod"))
    assert (one.queue, one.timeout, one.max_age, one.targets) == (10, 10.0, 1800.0, ("web",))
    assert endpoint(one) == "https://profiles-prod-001.grafana.net/push.v1.PusherService/Push"
    basic = "Basic " + base64.b64encode(b"123456:glc_abc").decode()
    assert request_headers(one)["Authorization"] == basic
    assert request_headers(one)["X-Scope-OrgID"] == "t1"
    assert "glc_abc" not in repr(one)
    assert one.profiles == ("offcpu",) and two.profiles == ("cpu", "offcpu")
    assert two.name == "parca" and two.token == "tok" and two.max_age == 3600.0
    assert endpoint(two) == "http://parca:7070/api/profiles/writeraw"
    assert request_headers(two)["Authorization"] == "Bearer tok"
    assert "Connect-Protocol-Version" not in request_headers(two)
    assert parse_exporters([], "f.toml") == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "http://x"}, "exporters[0].kind: missing"),
        ({"kind": "jaeger", "url": "http://x"}, "exporters[0].kind: 'jaeger' is not one of"),
        ({"kind": "parca"}, "exporters[0].url: missing"),
        ({"kind": "parca", "url": "ftp://x"}, "exporters[0].url: 'ftp://x' is not an http"),
        ({"kind": "parca", "url": "http://x?a=1"}, "exporters[0].url: 'http://x?a=1': give the"),
        ({"kind": "parca", "url": "http://x", "colour": 1}, "exporters[0].colour: unknown key"),
        ({"kind": "parca", "url": "http://x", "user": "u"}, "exporters[0].password_file: missing"),
        ({"kind": "parca", "url": "http://x", "password_file": "/p"}, "exporters[0].user: missing"),
        (
            {"kind": "parca", "url": "http://x", "token_file": "/nonexistent/t"},
            "exporters[0].token_file: cannot read /nonexistent/t",
        ),
        ({"kind": "parca", "url": "http://x", "labels": {"9x": "a"}}, "exporters[0].labels: '9x'"),
        (
            {"kind": "parca", "url": "http://x", "labels": {"__n": "a"}},
            "exporters[0].labels: '__n'",
        ),
        (
            {"kind": "parca", "url": "http://x", "labels": {"a": 1}},
            "exporters[0].labels: a: expected",
        ),
        ({"kind": "parca", "url": "http://x", "queue": 0}, "exporters[0].queue: must be between"),
        ({"kind": "parca", "url": "http://x", "timeout": "soon"}, "exporters[0].timeout: 'soon'"),
        (
            {"kind": "parca", "url": "http://x", "targets": ["nope"]},
            "exporters[0].targets: no target",
        ),
        ({"kind": "parca", "url": "http://x", "tenant": ""}, "exporters[0].tenant: must be"),
        (
            {"kind": "parca", "url": "http://x", "profiles": ["wall"]},
            'exporters[0].profiles: expected a non-empty array of "cpu", "offcpu"',
        ),
        (
            {"kind": "parca", "url": "http://x", "profiles": []},
            "exporters[0].profiles: expected a non-empty array",
        ),
        (
            {"kind": "pyroscope", "url": "http://x", "max_age": "2h"},
            "exporters[0].max_age: pyroscope refuses profiles older than 3600s",
        ),
    ],
)
def test_parse_refusals_name_file_key_and_reason(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_exporters([table], "/etc/flamed.toml")
    assert re.match(rf"/etc/flamed\.toml:\d+: {re.escape(message)}", str(caught.value)), caught


def test_parse_refuses_both_auths_duplicates_and_non_tables(tmp_path: Path) -> None:
    pw, tok = secret(tmp_path, "pw", "p"), secret(tmp_path, "tok", "t")
    both = {"kind": "parca", "url": "http://x", "user": "u", "password_file": pw, "token_file": tok}
    with pytest.raises(ConfigError, match=r"exporters\[0\]\.token_file: give basic auth"):
        parse_exporters([both], "f")
    twice = [{"kind": "parca", "url": "http://x"}, {"kind": "parca", "url": "http://y"}]
    with pytest.raises(ConfigError, match=r"exporters\[1\]\.name: duplicate exporter name 'parca'"):
        parse_exporters(twice, "f")
    inline = '[storage]\nstate_dir = "/s"\n[[targets]]\nname = "w"\nall = true\n'
    with pytest.raises(ConfigError, match=r"f:\d+: exporters: expected \[\[exporters\]\] tables"):
        parse_config('exporters = { kind = "parca" }\n' + inline, "f")
    empty = secret(tmp_path, "empty", "\n")
    with pytest.raises(ConfigError, match="must hold one non-empty line"):
        parse_exporters([{"kind": "parca", "url": "http://x", "token_file": empty}], "f")


def test_exporter_refusals_name_the_line_of_the_key_or_table() -> None:
    text = (
        '[storage]\nstate_dir = "/s"\n[[targets]]\nname = "web"\nall = true\n\n'
        '[[exporters]]\nkind = "parca"\nurl = "http://x"\n\n'
        '[[exporters]]\nkind = "parca"\nname = "two"\nurl = "http://x"\nqueue = 0\n'
    )
    with pytest.raises(ConfigError, match=r"^f\.toml:15: exporters\[1\]\.queue: must be between"):
        parse_config(text, "f.toml")
    no_url = text.replace('url = "http://x"\n', "")
    with pytest.raises(ConfigError, match=r"^f\.toml:7: exporters\[0\]\.url: missing"):
        parse_config(no_url, "f.toml")


def secret(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_config_refuses_bad_exporters_with_file_and_line(tmp_path: Path) -> None:
    from tests.daemon.conftest import make_config

    bad = '[[targets]]\nname = "a"\nall = true\n\n[[exporters]]\nkind = "parca"\nurl = "ftp://x"\n'
    with pytest.raises(ConfigError, match=r"test\.toml:\d+: exporters\[0\]\.url: 'ftp://x'"):
        make_config(tmp_path, targets=bad)


def test_check_config_warns_what_offcpu_lacks(tmp_path: Path) -> None:
    """Off-CPU profiles need bpftrace, root and tracefs: a missing one is a warning (the
    config is still good: the target's CPU profile runs)."""
    good = tmp_path / "offcpu.toml"
    good.write_text(
        f'[storage]\nstate_dir = {str(tmp_path)!r}\n[[targets]]\nname = "a"\nall = true\n'
        'offcpu = true\nbpftrace_path = "/nonexistent/bpftrace"\n'
    )
    done = run_flamed("check-config", str(good))
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.decode().strip().splitlines()
    assert any(
        line.startswith(f"flamed: WARNING: {good}: target a: off-CPU: bpftrace not found")
        for line in warnings
    ), warnings
    good.write_text(good.read_text().replace("offcpu = true", "offcpu = false"))
    assert run_flamed("check-config", str(good)).stderr == b""
