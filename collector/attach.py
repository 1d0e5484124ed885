"""HotSpot's attach protocol, spoken by flamed: one command to a running JVM, no jcmd.

``jcmd PID COMMAND`` is itself a JVM (about 0.3 s of CPU and 1 s to start, and
it cannot start at all where W^X memory is denied). What it does is small:

1. find the JVM's attach socket, ``/tmp/.java_pidNSPID`` in the JVM's own root
   and pid namespace (reached here through ``/proc/PID/root``);
2. if there is none yet, start the JVM's attach listener: create
   ``.attach_pidNSPID`` in its working folder (or its ``/tmp``), send it SIGQUIT,
   wait for the socket, remove the file;
3. connect and write ``1\\0jcmd\\0COMMAND\\0\\0\\0`` (protocol 1, the ``jcmd``
   operation and its three arguments); the JVM answers with its status on the
   first line (0: done), then the command's output.

Care taken, since the target may be hostile or not what it seems: SIGQUIT is sent
only to a process that catches it (``SigCgt`` in ``/proc/PID/status``; a JVM
still starting, or run with ``-Xrs``, would be killed by it); the socket must be
a socket owned by the process's user, reached without a symbolic link in the
JVM's ``/tmp``; the attach file is created without following links and removed.
The JVM accepts a peer of its own user or root only, so flamed must run as one
of them (not as the shipped unit's ``flamed`` user, for other users' JVMs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
from pathlib import Path

from flamed.collapse.errors import ProfilerError
from flamed.collector.perfmap import DIR_FLAGS, namespace_pid, process_uid
from flamed.collector.procfs import proc_status

SOCKET_WAIT = 10.0
"""Seconds the JVM gets to open its attach socket after SIGQUIT."""
ANSWER_BYTES = 64 << 10
"""Bytes of the JVM's answer read at most."""
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class AttachError(ProfilerError):
    """The JVM could not be asked (one line saying why)."""


async def jvm_command(proc_root: Path, pid: int, command: str) -> str:
    """Run ``command`` (e.g. ``Compiler.perfmap``) in JVM ``pid``; its output.
    AttachError if the JVM cannot be reached or says it failed."""
    nspid = namespace_pid(proc_root, pid)
    tmp = proc_root / str(pid) / "root" / "tmp"
    socket_path = tmp / f".java_pid{nspid}"
    if not attach_socket(proc_root, pid, socket_path):
        await start_listener(proc_root, pid, nspid, socket_path)
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        writer.write(b"1\0jcmd\0" + command.encode() + b"\0\0\0")
        await writer.drain()
        answer = await reader.read(ANSWER_BYTES)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    status, _, output = answer.decode("utf-8", "replace").partition("\n")
    if status.strip() != "0" or "exception" in output.lower():
        last = output.strip().splitlines()[-1:] or [f"status {status.strip() or 'missing'}"]
        raise AttachError(f"the JVM answered: {last[0][:300]}")
    return output


def attach_socket(proc_root: Path, pid: int, path: Path) -> bool:
    """Is ``path`` the JVM's attach socket (a socket of the process's user, in a /tmp
    that is no symbolic link)?"""
    try:
        if not stat.S_ISDIR(os.lstat(path.parent).st_mode):
            raise AttachError("its /tmp is not a folder (a symbolic link?)")
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != process_uid(proc_root, pid):
        raise AttachError(f"{path.name} is not the JVM's socket")
    return True


def catches_sigquit(proc_root: Path, pid: int) -> bool:
    """Has the process a handler for SIGQUIT (``SigCgt``)? A JVM that has not would die."""
    caught = proc_status(proc_root, pid, "SigCgt")
    try:
        return bool(int(caught, 16) >> (signal.SIGQUIT - 1) & 1)
    except ValueError:
        return False


async def start_listener(proc_root: Path, pid: int, nspid: int, socket_path: Path) -> None:
    """Make the JVM open its attach socket: an attach file, SIGQUIT, wait for the socket."""
    if not catches_sigquit(proc_root, pid):
        raise AttachError("it does not catch SIGQUIT (starting, or -Xrs): not signalled")
    folder, name = attach_file(proc_root, pid, nspid)
    try:
        os.kill(pid, signal.SIGQUIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SOCKET_WAIT
        while not attach_socket(proc_root, pid, socket_path):
            if loop.time() > deadline:
                raise AttachError(f"no attach socket {SOCKET_WAIT:g} s after SIGQUIT")
            await asyncio.sleep(0.05)
    finally:
        if name:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
        os.close(folder)


def attach_file(proc_root: Path, pid: int, nspid: int) -> tuple[int, str]:
    """Create ``.attach_pidNSPID`` in the JVM's working folder, else its /tmp, without
    following links; (the folder's descriptor, the name; "" if another attacher's file
    was there already: it serves the same and is theirs to remove)."""
    name = f".attach_pid{nspid}"
    for where in ("cwd", "root/tmp"):
        try:
            if where == "cwd":
                folder = os.open(proc_root / str(pid) / "cwd", DIR_FLAGS & ~os.O_NOFOLLOW)
            else:
                root = os.open(proc_root / str(pid) / "root", DIR_FLAGS & ~os.O_NOFOLLOW)
                try:
                    folder = os.open("tmp", DIR_FLAGS, dir_fd=root)
                finally:
                    os.close(root)
        except OSError:
            continue
        try:
            os.close(os.open(name, FILE_FLAGS, 0o600, dir_fd=folder))
        except FileExistsError:
            return folder, ""
        except OSError:
            os.close(folder)
            continue
        return folder, name
    raise AttachError("cannot create an attach file in its working folder or /tmp")
