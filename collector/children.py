"""Child processes: each in its own process group, behind the parent-death guard, reaped.

``spawn`` starts a long-running sampler (dtrace) with asyncio; ``stop_group``
asks a child to finish with a signal and kills its group past a timeout. The
perf pipeline (``pipeline.py``) starts its two children the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping

log = logging.getLogger("flamed.collector")


def death_wrapper(
    platform: str = sys.platform, which: Callable[[str], str | None] = shutil.which
) -> tuple[str, ...]:
    """A command prefix that gives the child PR_SET_PDEATHSIG=SIGKILL, so it dies with flamed.

    util-linux's ``setpriv --pdeathsig KILL`` sets it and then execs the real
    command (same pid). Setting it in the child with ``preexec_fn`` would be
    unsafe in a threaded parent. The signal fires when the thread that forked
    the child ends: children are always started from the event loop's thread.
    Empty (no guard) off Linux, without setpriv, or where setpriv cannot run:
    under the hardened systemd unit it fails ("activate capabilities: Operation
    not permitted", it re-applies a capability bounding set it may not touch);
    there ``KillMode=control-group`` takes perf down with the daemon instead.
    """
    if not platform.startswith("linux"):
        return ()
    setpriv = which("setpriv")
    if not setpriv:
        return ()
    prefix = (setpriv, "--pdeathsig", "KILL", "--")
    return prefix if wrapper_works(prefix) else ()


@functools.cache
def wrapper_works(prefix: tuple[str, ...]) -> bool:
    """Does ``prefix true`` run here? Asked once per process."""
    try:
        done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()
        log.info("no parent-death guard for children: %s", reason)
    return done.returncode == 0


async def spawn(
    argv: list[str],
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    wrapper: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> asyncio.subprocess.Process:
    """Start ``argv`` (behind ``wrapper``) in a new process group with stderr piped, in
    ``env`` (None: ours); stdin and stdout are /dev/null unless given.

    OSError propagates. A start cancelled half-way still kills the child's whole group and
    reaps it: asyncio's own clean-up would kill only the child, leaving what it started.
    """
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *wrapper,
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
            stdout=asyncio.subprocess.DEVNULL if stdout is None else stdout,
            stderr=asyncio.subprocess.PIPE,
            process_group=0,
            env=env,
            pass_fds=pass_fds,
        )
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        await _kill_when_started(starting)
        raise


async def _kill_when_started(starting: asyncio.Future[asyncio.subprocess.Process]) -> None:
    try:
        proc = await starting
    except OSError:
        return
    kill_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def kill_group(pid: int, sig: int) -> None:
    """Signal a child's whole process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop_group(
    proc: asyncio.subprocess.Process, sig: int = signal.SIGINT, timeout: float = 10.0
) -> int:
    """Send ``sig`` to the child's group, wait up to ``timeout``, then SIGKILL; return its code.

    The caller must keep draining the child's pipes meanwhile (a reader task).
    """
    if proc.returncode is None:
        kill_group(proc.pid, sig)
        try:
            async with asyncio.timeout(timeout):
                return await proc.wait()
        except TimeoutError:
            pass
    kill_group(proc.pid, signal.SIGKILL)
    return await proc.wait()
