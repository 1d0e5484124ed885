"""The unit under a real systemd: boot this machine's OS in systemd-nspawn and install flamed.

`systemd-nspawn --directory=/ --volatile=yes` boots the host's /usr with an empty
/etc (here a folder of the test's) and no network. A script inside runs
`deploy/install.sh` in its real (non-staging) mode, then checks what the unit
promises: Type=notify start, the watchdog, the `flamed` user with exactly the
three capabilities, perf sampling with named kernel frames through the whole
sandbox (system call filter, MemoryDenyWriteExecute=, ProtectProc=...), the
state directory, Node's JIT frames named under PrivateTmp=, `systemctl reload`,
the live security score, and `install.sh --uninstall`. The venv is built
beforehand, on the host, in a private mount namespace where /opt is a temporary
folder, so the container needs no network and the host's /opt is untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.jit import LATE_JS
from tests.conftest import ROOT
from tests.systemd.test_unit import PERF_CAPS, SYSTEM_PYTHON, system_python_can_make_venvs

NSPAWN = shutil.which("systemd-nspawn")
UNSHARE = shutil.which("unshare")

pytestmark = [
    pytest.mark.perf,
    pytest.mark.slow,
    pytest.mark.skipif(NSPAWN is None, reason="systemd-nspawn (Debian's systemd-container)"),
    pytest.mark.skipif(UNSHARE is None, reason="unshare (util-linux) is missing"),
    pytest.mark.skipif(os.geteuid() != 0, reason="booting a container needs root"),
    pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed"),
    pytest.mark.skipif(not system_python_can_make_venvs(), reason="/usr/bin/python3 with venv"),
]

TARGET = """\
[Unit]
Description=flamed end-to-end check
Requires=basic.target flamed-e2e.service
After=basic.target
"""

SERVICE = """\
[Unit]
Description=flamed end-to-end script
After=basic.target
[Service]
Type=oneshot
ExecStart=/bin/bash /ns/e2e.sh
StandardOutput=file:/ns-out/trace.log
StandardError=inherit
ExecStopPost=/bin/systemctl --no-block poweroff
"""

# Writes KEY=VALUE lines to /ns-out/result; the test reads them after the container stops.
SCRIPT = r"""
exec 2>&1
set -x
out=/ns-out/result
say() { printf '%s=%s\n' "$1" "$2" >> "$out"; }
m() { curl -s http://127.0.0.1:9797/metrics | sed -n "s/^$1 //p"; }
cp -r /ns/src /root/src
bash /root/src/deploy/install.sh --no-venv --no-perf; say install_rc $?
for _ in $(seq 1 60); do curl -sf http://127.0.0.1:9797/readyz >/dev/null && break; sleep 1; done
say readyz "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9797/readyz)"
for _ in $(seq 1 60); do
    [ "$(m 'flamed_collapse_samples_total{target="system"}')" != "" ] &&
    [ "$(m 'flamed_collapse_samples_total{target="system"}')" != "0.0" ] && break
    sleep 1
done
sleep 2
show() { systemctl show flamed -p "$1" --value; }
say state "$(show ActiveState)/$(show SubState)"
pid=$(systemctl show flamed -p MainPID --value)
first=$(systemctl show flamed -p WatchdogTimestampMonotonic --value)
sleep 16  # WatchdogSec=30s: the daemon pings every 15 s
second=$(systemctl show flamed -p WatchdogTimestampMonotonic --value)
say watchdog_pinged "$([ "$second" -gt "$first" ] && echo yes || echo "no ($first $second)")"
say user "$(stat -c %U /proc/$pid)"
say cap_eff "$(sed -n 's/^CapEff:\t//p' /proc/$pid/status)"
say cap_amb "$(sed -n 's/^CapAmb:\t//p' /proc/$pid/status)"
for _ in $(seq 1 20); do  # perf may be between a restart and the next start: look again
    users=$(ps -o user= --ppid "$pid" | sort -u | tr '\n' ' ')
    [ -n "$users" ] && break
    sleep 0.5
done
say child_users "$users"
say samples "$(m 'flamed_collapse_samples_total{target="system"}')"
api=http://127.0.0.1:9797/api/v1
curl -s "$api/folded?target=system&window=5m" > /ns-out/folded.txt
kernel='entry_SYSCALL\|do_syscall_64\|asm_sysvec\|cpuidle\|default_idle'
say kernel_frames "$(grep -c "$kernel" /ns-out/folded.txt)"
say svg "$(curl -s -o /dev/null -w '%{http_code}' "$api/flamegraph?target=system&window=5m")"
# Node's perf map is in the container's /tmp; the unit's PrivateTmp= hides it from perf.
mkfifo /root/node.in
sleep 600 > /root/node.in &
(cd /root && exec node --perf-basic-prof --no-turbo-inlining /ns/late.js 300) \
    < /root/node.in > /root/node.out &
js() { curl -s "$api/folded?target=system&window=1m" | grep -c "JS:\*$1"; }
for _ in $(seq 1 60); do [ "$(js earlyLeaf)" != 0 ] && break; sleep 1; done
echo go > /root/node.in  # it compiles lateLeaf now
for _ in $(seq 1 60); do [ "$(js lateLeaf)" != 0 ] && break; sleep 1; done
curl -s "$api/folded?target=system&window=1m" | grep 'node;' > /ns-out/node.txt
say node_early "$(grep -c 'JS:\*earlyLeaf' /ns-out/node.txt)"
say node_late "$(grep -c 'JS:\*lateLeaf' /ns-out/node.txt)"
say node_private_tmp "$(systemctl show flamed -p PrivateTmp --value)"
say state_dir "$(stat -c '%U:%a' /var/lib/flamed)"
score='s/.*Overall exposure level for flamed.service: \([0-9.]*\).*/\1/p'
say security "$(systemd-analyze security flamed | sed -n "$score")"
bash /root/src/deploy/install.sh --no-venv --no-perf; say reinstall_rc $?
say reinstall_state "$(show ActiveState)/$(show SubState)"
say reload_rc "$(systemctl reload flamed; echo $?)"
sleep 2
say reload_ok "$(m 'flamed_config_reloads_total{result="success"}')"
say after_reload "$(systemctl show flamed -p ActiveState --value)"
bash /root/src/deploy/install.sh --uninstall; say uninstall_rc $?
say unit_after "$(systemctl show flamed -p LoadState --value)"
say kept "$(ls /etc/flamed/flamed.toml)"
say venv_after "$(ls /opt/flamed/venv 2>&1 >/dev/null | grep -c 'No such')"
bash /root/src/deploy/install.sh --uninstall --purge; say purge_rc $?
left=$(ls -d /etc/flamed /var/lib/flamed 2>/dev/null | wc -l)
say purged "$left/$(getent passwd flamed | wc -l)"
journalctl -u flamed --no-pager | tail -40
say done yes
"""


def copy_sources(dest: Path) -> None:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in ("collapse", "render", "collector", "daemon", "systemd", "deploy"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)


def build_venv(where: Path) -> None:
    """/opt/flamed/venv as the container will see it, built in where/opt (host /opt untouched)."""
    (where / "opt").mkdir()
    inner = (
        'set -e; mount --make-rprivate /; mount --bind "$1/opt" /opt; '
        '"$2" -m venv /opt/flamed/venv; /opt/flamed/venv/bin/pip install -q "$1/build-src"'
    )
    copy_sources(where / "build-src")
    assert UNSHARE is not None
    subprocess.run(
        [UNSHARE, "-m", "sh", "-c", inner, "sh", str(where), str(SYSTEM_PYTHON)],
        check=True,
        capture_output=True,
        timeout=600,
    )


def prepare(where: Path) -> None:
    copy_sources(where / "src")
    units = where / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    (units / "flamedtest.target").write_text(TARGET)
    (units / "flamed-e2e.service").write_text(SERVICE)
    (where / "e2e.sh").write_text(SCRIPT)
    shutil.copy2(LATE_JS, where / "late.js")
    (where / "out").mkdir()


def boot(where: Path) -> subprocess.CompletedProcess[str]:
    assert NSPAWN is not None
    command = [
        NSPAWN,
        "--directory=/",
        "--volatile=yes",
        "--boot",
        "--private-network",
        "--register=no",
        "--keep-unit",
        "--console=pipe",
        "--capability=CAP_PERFMON,CAP_SYSLOG",
        "--system-call-filter=perf_event_open",
        f"--bind={where}/etc:/etc",
        f"--bind={where}/opt:/opt",
        f"--bind-ro={where}:/ns",
        f"--bind={where}/out:/ns-out",
        "--",
        "systemd.unit=flamedtest.target",
    ]
    return subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, str]]:
    where = Path(tempfile.mkdtemp(prefix="flamed-nspawn-", dir="/tmp"))
    try:
        build_venv(where)
        prepare(where)
        console = boot(where)
        result_file = where / "out" / "result"
        trace = where / "out" / "trace.log"
        found: dict[str, str] = {}
        if result_file.exists():
            for line in result_file.read_text().splitlines():
                key, _, value = line.partition("=")
                found[key] = value.strip()
        found["_trace"] = trace.read_text()[-6000:] if trace.exists() else console.stdout[-6000:]
        yield found
    finally:
        shutil.rmtree(where, ignore_errors=True)


def check(results: dict[str, str], key: str) -> str:
    assert results.get("done") == "yes", results["_trace"]
    assert key in results, results["_trace"]
    return results[key]


def test_install_starts_the_notify_service(results: dict[str, str]) -> None:
    assert check(results, "install_rc") == "0"
    assert check(results, "readyz") == "200"
    assert check(results, "state") == "active/running"
    assert check(results, "watchdog_pinged") == "yes"


def test_it_runs_as_flamed_with_exactly_perf_s_capabilities(results: dict[str, str]) -> None:
    assert check(results, "user") == "flamed"
    assert check(results, "child_users").split() == ["flamed"], results["_trace"]  # perf
    bits = sum(1 << number for number in (38, 19, 34))  # PERFMON, SYS_PTRACE, SYSLOG
    assert len(PERF_CAPS) == 3
    assert int(check(results, "cap_eff"), 16) == bits
    assert int(check(results, "cap_amb"), 16) == bits


def test_perf_samples_with_kernel_symbols_inside_the_sandbox(results: dict[str, str]) -> None:
    assert float(check(results, "samples")) > 0
    assert int(check(results, "kernel_frames")) > 0
    assert check(results, "svg") == "200"
    assert check(results, "state_dir") == "flamed:750"


def test_node_functions_are_named_through_private_tmp(results: dict[str, str]) -> None:
    """flamed reads Node's map through /proc/PID/root: the unit's perf cannot see it."""
    assert check(results, "node_private_tmp") == "yes"
    assert int(check(results, "node_early")) > 0, results["_trace"]
    assert int(check(results, "node_late")) > 0, results["_trace"]


def test_installing_again_keeps_it_running(results: dict[str, str]) -> None:
    assert check(results, "reinstall_rc") == "0"
    assert check(results, "reinstall_state") == "active/running"


def test_live_security_score_and_reload(results: dict[str, str]) -> None:
    assert float(check(results, "security")) <= 2.5
    assert check(results, "reload_rc") == "0"
    assert float(check(results, "reload_ok")) >= 1
    assert check(results, "after_reload") == "active"


def test_uninstall_removes_the_unit_and_keeps_the_config(results: dict[str, str]) -> None:
    assert check(results, "uninstall_rc") == "0"
    assert check(results, "unit_after") == "not-found"
    assert check(results, "kept") == "/etc/flamed/flamed.toml"
    assert check(results, "venv_after") == "1"
    assert check(results, "purge_rc") == "0"
    assert check(results, "purged") == "0/0"  # no config, no state, no user
