"""systemd/flamed.service: `systemd-analyze verify` clean, exposure <= 2.5, perf still works.

`systemd-analyze verify` insists that every Exec*= binary exists. The unit
starts /opt/flamed/venv/bin/flamed, which exists only after deploy/install.sh
ran, so the clean check verifies a copy whose only change is that path,
pointing at a stub executable in tmp_path; a second test verifies the unit as
shipped and accepts only complaints about that one missing binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "flamed.service"
SYSUSERS = ROOT / "systemd" / "flamed.sysusers"
BINARY = "/opt/flamed/venv/bin/flamed"
MAX_EXPOSURE = 2.5
PERF_CAPS = {"CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_SYSLOG"}

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(path: Path = UNIT) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, repeated keys kept in order (sections ignored)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(key: str) -> str:
    values = directives().get(key, [])
    assert len(values) == 1, f"{key}= should appear once, found {values}"
    return values[0]


def analyze(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def unit_with_stub_binary(tmp_path: Path) -> Path:
    stub = tmp_path / "bin" / "flamed"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert BINARY in text
    copy = tmp_path / "flamed.service"
    copy.write_text(text.replace(BINARY, str(stub)), encoding="utf-8")
    return copy


@needs_analyze
def test_verify_is_clean_once_the_binary_exists(tmp_path: Path) -> None:
    copy = unit_with_stub_binary(tmp_path)
    result = analyze("verify", str(copy))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    ours = [line for line in output.splitlines() if "flamed" in line]
    assert ours == [], output


@needs_analyze
def test_verify_of_the_shipped_unit_only_misses_the_installed_binary() -> None:
    result = analyze("verify", str(UNIT))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    others = [line for line in lines if BINARY not in line]
    assert others == [], "\n".join(lines)


def exposure_of(output: str) -> float:
    pattern = r"Overall exposure level for flamed\.service:\s*([0-9]+(?:\.[0-9]+)?)"
    match = re.search(pattern, output)
    assert match, f"no overall exposure in:\n{output}"
    return float(match.group(1))


@needs_analyze
def test_security_exposure_is_at_most_2_5() -> None:
    result = analyze("security", "--offline=true", "systemd/flamed.service")
    score = exposure_of(result.stdout + result.stderr)
    print(f"systemd-analyze security --offline=true systemd/flamed.service: {score}")
    assert score <= MAX_EXPOSURE, result.stdout


def test_exposure_parser_reads_the_figure() -> None:
    sample = "✗ PrivateNetwork= 0.5\n\n→ Overall exposure level for flamed.service: 9.6 UNSAFE\n"
    assert exposure_of(sample) == 9.6


def test_service_contract() -> None:
    assert one("Type") == "notify"
    assert one("User") == "flamed"
    assert one("StateDirectory") == "flamed"
    assert one("ConfigurationDirectory") == "flamed"
    assert one("Restart") == "on-failure"
    assert one("ExecReload").split() == ["/bin/kill", "-HUP", "$MAINPID"]
    start = one("ExecStart").split()
    assert start[:2] == [BINARY, "run"]
    assert start[start.index("--config") + 1] == "/etc/flamed/flamed.toml"
    assert one("ExecStartPre").split() == [BINARY, "check-config", "/etc/flamed/flamed.toml"]
    assert re.fullmatch(r"[1-9][0-9]*(s|min)", one("WatchdogSec"))
    assert re.fullmatch(r"[1-9][0-9]*s", one("RestartSec"))
    assert int(one("StartLimitBurst")) >= 3
    assert one("KillMode") == "control-group"


def test_only_the_capabilities_perf_needs() -> None:
    assert set(one("AmbientCapabilities").split()) == PERF_CAPS
    assert set(one("CapabilityBoundingSet").split()) == PERF_CAPS
    assert one("NoNewPrivileges") == "yes"


def test_no_directive_that_breaks_perf() -> None:
    found = directives()
    assert found.get("ProtectProc", ["default"])[-1] in ("default", "ptraceable")
    assert found.get("ProcSubset", ["all"])[-1] == "all"
    # ProtectKernelTunables=yes makes /proc/kallsyms inaccessible (no kernel symbols);
    # ProtectKernelLogs=yes drops CAP_SYSLOG; PrivateUsers=yes confines the capabilities.
    for key in ("ProtectKernelTunables", "ProtectKernelLogs", "PrivateUsers", "PrivateNetwork"):
        assert found.get(key, ["no"])[-1] in ("no", "false"), key
    assert "AF_UNIX" in one("RestrictAddressFamilies").split()


def expand_syscalls(names: list[str]) -> set[str]:
    """Syscall names, with @groups expanded by `systemd-analyze syscall-filter`."""
    out: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            out.add(name)
            continue
        listing = analyze("syscall-filter", name).stdout
        for line in listing.splitlines()[1:]:
            token = line.strip().split(" ")[0]
            if token and not token.startswith("#"):
                out |= expand_syscalls([token]) if token.startswith("@") else {token}
    return out


@needs_analyze
def test_syscall_filter_still_allows_what_perf_and_python_need() -> None:
    allowed: set[str] = set()
    denied: set[str] = set()
    for value in directives()["SystemCallFilter"]:
        if value.startswith("~"):
            denied |= expand_syscalls(value[1:].split())
        else:
            allowed |= expand_syscalls(value.split())
    effective = allowed - denied
    needed = {"perf_event_open", "mmap", "ioctl", "openat", "read", "write", "poll", "epoll_wait"}
    needed |= {"clone", "execve", "wait4", "kill", "socket", "bind", "listen", "sendmsg"}
    assert needed <= effective, needed - effective
    assert "init_module" not in effective and "reboot" not in effective


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_creates_an_unprivileged_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    entry = (tmp_path / "etc" / "passwd").read_text(encoding="utf-8").strip().split(":")
    assert entry[0] == "flamed"
    assert 0 < int(entry[2]) < 1000
    assert entry[5] == "/var/lib/flamed"
    assert entry[6].endswith("nologin")


def setpriv_command(caps: set[str]) -> list[str]:
    """Run as nobody with exactly `caps` (ambient, as the unit grants them), no new privileges."""
    names = ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in sorted(caps))])
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    return [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        f"--inh-caps={names}",
        f"--ambient-caps={names}",
        f"--bounding-set={names}",
        "--no-new-privs",
    ]


PERF_PIPELINE = (
    "perf record -e cpu-clock -F 199 -a -g -o - -- sleep 1 2>/dev/null"
    " | perf script -i - -F comm,ip,sym,dso 2>/dev/null"
)


def run_as_service_user(caps: set[str]) -> subprocess.CompletedProcess[str]:
    command = [*setpriv_command(caps), "/bin/sh", "-c", PERF_PIPELINE]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent"}
    return subprocess.run(
        command, cwd="/", env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.perf
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed")
def test_the_unit_capabilities_are_enough_for_whole_machine_perf() -> None:
    caps = set(one("AmbientCapabilities").split())
    result = run_as_service_user(caps)
    kernel = [line for line in result.stdout.splitlines() if "[kernel.kallsyms]" in line]
    named = [line for line in kernel if "[unknown]" not in line]
    assert named, f"no named kernel frames as nobody with {sorted(caps)}:\n{result.stdout[:2000]}"
    paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip())
    if paranoid >= 1:  # the control: without the capabilities the same run must fail
        assert run_as_service_user(set()).stdout.strip() == ""


# -- the daemon under the unit's conditions -------------------------------------------------------

SYSTEM_PYTHON = Path("/usr/bin/python3")


def system_python_can_make_venvs() -> bool:
    check = "import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))"
    if not SYSTEM_PYTHON.exists():
        return False
    result = subprocess.run([str(SYSTEM_PYTHON), "-c", check], capture_output=True, check=False)
    return result.returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stage_venv(where: Path) -> Path:
    """deploy/install.sh --root, with the system Python (the service user cannot enter /root)."""
    source = where / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("collapse", "render", "collector", "daemon"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    root = where / "root"
    command = [str(ROOT / "deploy" / "install.sh"), "--root", str(root), "--source", str(source)]
    command += ["--python", str(SYSTEM_PYTHON)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return root / "opt" / "flamed" / "venv" / "bin" / "flamed"


def receive(sock: socket.socket, wanted: str, deadline: float) -> list[str]:
    """Datagrams from the notify socket until one contains `wanted` (or time runs out)."""
    seen: list[str] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(message)
        if wanted in message.splitlines():
            return seen
    raise AssertionError(f"no {wanted} from the daemon; got {seen}")


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


@pytest.mark.perf
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed")
@pytest.mark.skipif(not system_python_can_make_venvs(), reason="/usr/bin/python3 >= 3.11 with venv")
def test_the_daemon_runs_as_an_unprivileged_user_with_the_unit_s_capabilities() -> None:
    """What the unit sets up, minus systemd: uid nobody, ambient caps, sd_notify, watchdog."""
    where = Path(tempfile.mkdtemp(prefix="flamed-unit-", dir="/tmp"))
    try:
        where.chmod(0o755)  # the service user must reach the venv and its config
        run_daemon(where, stage_venv(where))
    finally:
        shutil.rmtree(where, ignore_errors=True)


def run_daemon(where: Path, flamed: Path) -> None:
    state, port = where / "state", free_port()
    state.mkdir()
    os.chown(state, 65534, 65534)
    config = where / "flamed.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nstate_dir = "{state}"\n'
        'bucket = "2s"\nretention = "1m"\n[[targets]]\nname = "system"\nall = true\n'
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(where / "notify"))
        (where / "notify").chmod(0o777)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent"}
        env |= {"NOTIFY_SOCKET": str(where / "notify"), "WATCHDOG_USEC": "2000000"}
        caps = set(one("AmbientCapabilities").split())
        command = [*setpriv_command(caps), str(flamed), "run", "--config", str(config)]
        with subprocess.Popen(command, env=env, cwd="/", stderr=subprocess.PIPE) as daemon:
            try:
                check_running_daemon(notify, port, state)
            finally:
                daemon.terminate()
                _, stderr = daemon.communicate(timeout=60)
            assert daemon.returncode == 0, stderr.decode()
        receive(notify, "STOPPING=1", time.monotonic() + 5)


def check_running_daemon(notify: socket.socket, port: int, state: Path) -> None:
    receive(notify, "READY=1", time.monotonic() + 60)
    receive(notify, "WATCHDOG=1", time.monotonic() + 10)
    assert get(port, "/readyz")[0] == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (target,) = json.loads(get(port, "/api/v1/targets")[1])
        if target["samples_last_minute"] > 0 and list(state.glob("system/*")):
            break
        time.sleep(1)
    assert target["state"] == "running" and target["samples_last_minute"] > 0, target
    status, folded = get(port, "/api/v1/folded?target=system&window=1m")
    assert status == 200 and folded.strip(), folded[:500]
    files = list(state.glob("system/*"))
    assert files and all(path.stat().st_uid == 65534 for path in files)


# -- the off-CPU drop-in -------------------------------------------------------------------------

DROP_IN = ROOT / "systemd" / "offcpu.conf"


def test_the_offcpu_drop_in_adds_only_what_bpftrace_needs() -> None:
    """Root (bpftrace 0.17 runs only as root), CAP_BPF, the bpf() call; nothing else."""
    given = directives(DROP_IN)
    assert given == {
        "User": ["root"],
        "Group": ["root"],
        "AmbientCapabilities": ["CAP_BPF"],
        "CapabilityBoundingSet": ["CAP_BPF"],
        "SystemCallFilter": ["bpf"],
    }


@needs_analyze
def test_the_drop_in_keeps_the_exposure_low_and_allows_bpf(tmp_path: Path) -> None:
    """The default unit's score is the test above's; with the drop-in (as installed) it
    stays within the same bound, and bpf() is allowed."""
    units = tmp_path / "etc" / "systemd" / "system"
    (units / "flamed.service.d").mkdir(parents=True)
    shutil.copy2(UNIT, units / "flamed.service")
    shutil.copy2(DROP_IN, units / "flamed.service.d" / "offcpu.conf")
    result = analyze("security", "--offline=true", f"--root={tmp_path}", "flamed.service")
    output = result.stdout + result.stderr
    score = exposure_of(output)
    print(f"systemd-analyze security with systemd/offcpu.conf: {score}")
    assert score <= MAX_EXPOSURE, output
    assert "Service runs as root user" in output and "e.g. bpf is allowed" in output


def bpftrace_as_root_with(caps: set[str]) -> str:
    """The off-CPU program run by root holding only ``caps`` (bounding set and inherited),
    no new privileges, as the unit with the drop-in runs it: bpftrace's output and error."""
    from flamed.collector.offcpu import program
    from flamed.collector.targets import Resolution

    bpftrace = shutil.which("bpftrace")
    if bpftrace is None or os.geteuid() != 0:
        pytest.skip("needs bpftrace and root")
    names = ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in sorted(caps))])
    setpriv = [shutil.which("setpriv") or "setpriv", f"--inh-caps={names}"]
    setpriv += [f"--bounding-set={names}", "--no-new-privs"]
    text = program(Resolution("all"), Path("/sys/fs/cgroup"), 1, 300)
    text += "\ninterval:ms:1000 { exit(); }\n"
    done = subprocess.run(
        [*setpriv, bpftrace, "-e", text], capture_output=True, text=True, timeout=120, check=False
    )
    return done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_the_drop_in_capabilities_are_enough_for_bpftrace() -> None:
    from flamed.collector.offcpu import tracefs_missing
    from flamed.collector.runner import TRACEFS

    if tracefs_missing(TRACEFS):
        pytest.skip("tracefs is not mounted")
    caps = set(one("AmbientCapabilities").split()) | set(directives(DROP_IN)["AmbientCapabilities"])
    output = bpftrace_as_root_with(caps)
    assert "__schedule" in output, output[-2000:]
    refused = bpftrace_as_root_with(caps - {"CAP_BPF"})  # the control
    assert "__schedule" not in refused and "Operation not permitted" in refused, refused[-2000:]
