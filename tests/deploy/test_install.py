"""deploy/install.sh in staging mode (--root / DESTDIR): files, modes, idempotence, uninstall.

Every run puts fake `systemctl`, package managers and user tools first on PATH;
each records its call, and the tests assert that staging never called one.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

INSTALL = ROOT / "deploy" / "install.sh"
FORBIDDEN = ("systemctl", "apt-get", "dnf", "useradd", "userdel", "systemd-sysusers", "perf")

UNIT = "etc/systemd/system/flamed.service"
SYSUSERS = "etc/sysusers.d/flamed.conf"
CONFIG = "etc/flamed/flamed.toml"
LINK = "usr/local/bin/flamed"
EXPECTED_FILES = {UNIT: 0o644, SYSUSERS: 0o644, CONFIG: 0o644}
EXPECTED_DIRS = {"etc/flamed": 0o755, "etc/sysusers.d": 0o755, "usr/local/bin": 0o755}


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """A folder of fake system commands that log their calls to `calls.log` and fail."""
    folder = tmp_path / "fakebin"
    folder.mkdir()
    for name in FORBIDDEN:
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/calls.log"\nexit 1\n')
        script.chmod(0o755)
    return folder


def run_install(
    fakes: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    path = f"{fakes}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    inherited = {key: value for key, value in os.environ.items() if key != "DESTDIR"}
    full_env = {**inherited, "PATH": path, **(env or {})}
    result = subprocess.run(
        ["bash", str(INSTALL), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def no_system_calls(fakes: Path) -> None:
    log = fakes.parent / "calls.log"
    assert not log.exists(), f"staging called system tools:\n{log.read_text()}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def tree(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every file and symlink under root: relative path -> (mode, content or link target)."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = (0, os.readlink(path))
        elif path.is_file():
            out[rel] = (mode(path), path.read_bytes())
    return out


def test_staging_writes_every_file_with_its_mode(tmp_path: Path, fakes: Path) -> None:
    root = tmp_path / "root"
    run_install(fakes, "--root", str(root), "--no-venv")
    no_system_calls(fakes)
    files = tree(root)
    assert set(files) == {*EXPECTED_FILES, LINK}
    for rel, want in EXPECTED_FILES.items():
        assert files[rel][0] == want, f"{rel}: {oct(files[rel][0])}"
    for rel, want in EXPECTED_DIRS.items():
        assert mode(root / rel) == want, rel
    assert files[UNIT][1] == (ROOT / "systemd" / "flamed.service").read_bytes()
    assert files[SYSUSERS][1] == (ROOT / "systemd" / "flamed.sysusers").read_bytes()
    assert files[CONFIG][1] == (ROOT / "deploy" / "flamed.toml").read_bytes()
    assert files[LINK][1] == "/opt/flamed/venv/bin/flamed"


def test_destdir_is_the_same_as_root(tmp_path: Path, fakes: Path) -> None:
    by_flag, by_env = tmp_path / "a", tmp_path / "b"
    run_install(fakes, "--root", str(by_flag), "--no-venv")
    run_install(fakes, "--no-venv", env={"DESTDIR": str(by_env)})
    no_system_calls(fakes)
    assert tree(by_flag) == tree(by_env)


def test_staging_twice_changes_nothing_and_keeps_the_config(tmp_path: Path, fakes: Path) -> None:
    root = tmp_path / "root"
    run_install(fakes, "--root", str(root), "--no-venv")
    edited = "[server]\nlisten = '127.0.0.1:9999'\n"
    (root / CONFIG).write_text(edited)
    (root / UNIT).chmod(0o600)
    before = tree(root)
    second = run_install(fakes, "--root", str(root), "--no-venv")
    no_system_calls(fakes)
    assert f"kept {root}/etc/flamed/flamed.toml" in second.stdout
    assert (root / CONFIG).read_text() == edited
    assert mode(root / UNIT) == 0o644
    after = tree(root)
    after[UNIT] = (0o600, after[UNIT][1])
    assert after == before


def test_prefix_is_written_into_the_unit(tmp_path: Path, fakes: Path) -> None:
    root = tmp_path / "root"
    run_install(fakes, "--root", str(root), "--no-venv", "--prefix", "/srv/flamed")
    unit = (root / UNIT).read_text()
    assert "ExecStart=/srv/flamed/venv/bin/flamed run" in unit
    assert "ExecStartPre=/srv/flamed/venv/bin/flamed check-config" in unit
    assert "/opt/flamed" not in unit
    assert os.readlink(root / LINK) == "/srv/flamed/venv/bin/flamed"


def test_uninstall_keeps_config_and_state_until_purge(tmp_path: Path, fakes: Path) -> None:
    root = tmp_path / "root"
    run_install(fakes, "--root", str(root), "--no-venv")
    bucket = root / "var/lib/flamed/system/0000001700000000.folded.gz"
    bucket.parent.mkdir(parents=True)
    bucket.write_bytes(b"state")
    (root / "opt/flamed/venv/bin").mkdir(parents=True)

    run_install(fakes, "--root", str(root), "--uninstall")
    assert set(tree(root)) == {CONFIG, str(bucket.relative_to(root))}
    assert not (root / "opt/flamed").exists()

    run_install(fakes, "--root", str(root), "--uninstall")  # again: nothing left to do
    run_install(fakes, "--root", str(root), "--uninstall", "--purge")
    no_system_calls(fakes)
    assert tree(root) == {}
    assert not (root / "etc/flamed").exists() and not (root / "var/lib/flamed").exists()


def test_uninstall_leaves_a_foreign_command_alone(tmp_path: Path, fakes: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    os.symlink("/usr/bin/true", root / LINK)
    run_install(fakes, "--root", str(root), "--uninstall")
    assert os.readlink(root / LINK) == "/usr/bin/true"


@pytest.mark.parametrize(
    "args", [("--purge",), ("--frobnicate",), ("--prefix", "relative/path", "--no-venv")]
)
def test_bad_arguments_are_refused(tmp_path: Path, fakes: Path, args: tuple[str, ...]) -> None:
    root = tmp_path / "root"
    result = run_install(fakes, "--root", str(root), *args, check=False)
    assert result.returncode != 0
    assert "error:" in result.stderr
    assert tree(root) == {}


@pytest.mark.parametrize("option", ["--root", "--prefix", "--source", "--python", "--pip-arg"])
def test_an_option_without_its_value_is_one_line(tmp_path: Path, fakes: Path, option: str) -> None:
    """`--root` alone gave bash's own `line 83: 2: --root needs a directory`."""
    result = run_install(fakes, "--no-venv", option, check=False)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert lines == [f"install.sh: error: {option} needs a value (see install.sh --help)"], lines


def test_staged_messages_name_the_staged_paths(tmp_path: Path, fakes: Path) -> None:
    """`--root DIR` said "wrote /etc/systemd/system/flamed.service": it wrote DIR/etc/..."""
    root = tmp_path / "root"
    out = run_install(fakes, "--root", str(root), "--no-venv").stdout
    for rel in (UNIT, SYSUSERS, CONFIG):
        assert f"wrote {root}/{rel}\n" in out, out
    assert f"wrote /{UNIT}" not in out
    again = run_install(fakes, "--root", str(root), "--no-venv").stdout
    assert f"kept {root}/{CONFIG}" in again, again
    gone = run_install(fakes, "--root", str(root), "--uninstall").stdout
    assert f"removed {root}/{UNIT}" in gone, gone


def test_the_sysusers_file_names_where_it_is_installed() -> None:
    text = (ROOT / "systemd" / "flamed.sysusers").read_text()
    assert f"/{SYSUSERS}" in text and "/usr/lib/sysusers.d/flamed.conf;" not in text


def test_help_names_every_option(fakes: Path) -> None:
    text = run_install(fakes, "--help").stdout
    for option in ("--root", "--prefix", "--source", "--no-venv", "--uninstall", "--purge"):
        assert option in text
    # what --root is for, and which interpreter the venv gets (ProtectHome=yes hides /root)
    assert "for inspection or packaging" in text and "create it on the target" in text
    assert "default /usr/bin/python3" in text


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    result = subprocess.run(
        ["shellcheck", str(INSTALL)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout


def copy_sources(dest: Path) -> Path:
    """The package's sources, alone, so pip builds outside the shared working tree."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in ("collapse", "render", "collector", "daemon"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.mark.slow
def test_staging_with_a_virtual_environment(tmp_path: Path, fakes: Path) -> None:
    """The venv is made by /usr/bin/python3, not by the `python3` first on PATH (pyenv's
    under /root, which the unit's ProtectHome=yes hides from the service)."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3")
    shim = fakes / "python3"
    shim.write_text(f'#!/bin/sh\necho "python3 $*" >> "{tmp_path}/calls.log"\nexit 1\n')
    shim.chmod(0o755)
    root = tmp_path / "root"
    source = copy_sources(tmp_path / "src")
    result = run_install(fakes, "--root", str(root), "--source", str(source))
    no_system_calls(fakes)
    config = (root / "opt/flamed/venv/pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in config, config
    assert "create it on the target" in result.stdout, result.stdout
    flamed = root / "opt/flamed/venv/bin/flamed"
    assert mode(flamed) & 0o111 and not mode(flamed) & 0o022
    result = subprocess.run(
        [str(flamed), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "collapse" in result.stdout, result.stderr
    run_install(fakes, "--root", str(root), "--uninstall")
    assert not (root / "opt").exists() or not any((root / "opt").iterdir())


# -- the example config the installer writes ---------------------------------------------------

CONTRACT_KEYS = {  # issue 6's configuration contract, plus [server] max_renders
    "server": {"listen", "token_file", "max_renders"},
    "storage": {"state_dir", "bucket", "retention", "max_stacks", "inbox"},
    "profile": {"frequency", "call_graph", "backend"},
    "targets": {"name", "all", "pids", "process", "cmdline", "unit", "frequency"},
}


def example_text() -> str:
    return (ROOT / "deploy" / "flamed.toml").read_text(encoding="utf-8")


def test_the_example_config_shows_every_option() -> None:
    text = example_text()
    for table, keys in CONTRACT_KEYS.items():
        assert f"[{table}]" in text or f"[[{table}]]" in text, table
        for key in keys:
            assert re.search(rf"^#?\s*{key}\s*=", text, re.MULTILINE), f"{table}.{key}"


def uncommented_example() -> str:
    """The example with every commented `key = value` line switched on (first target only)."""
    lines = []
    for line in example_text().split("[[targets]]")[0].splitlines():
        match = re.fullmatch(r"#\s*(\w+\s*=\s*.+)", line)
        lines.append(match.group(1) if match else line)
    return "\n".join(lines) + '\n[[targets]]\nname = "system"\nall = true\n'


def test_the_example_config_is_valid_as_shipped_and_with_every_option_on(tmp_path: Path) -> None:
    config = pytest.importorskip("flamed.daemon.config", reason="the daemon's config module")
    shipped = config.load_config(str(ROOT / "deploy" / "flamed.toml"))
    assert [target.name for target in shipped.targets] == ["system"]
    token = tmp_path / "token"
    token.write_text("secret\n")
    text = uncommented_example().replace("/etc/flamed/token", str(token))
    text = re.sub(r'listen = "\[::1\]:9797"\n', "", text)  # the alternative spelling
    everything = config.parse_config(text, "flamed.toml (all options on)")
    assert everything.server.token == "secret"
    assert everything.storage.inbox == "/var/lib/flamed/inbox"
