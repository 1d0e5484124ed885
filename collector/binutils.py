"""addr2line and nm for ``flamed collapse perf --inline``: bounded, with a deadline.

The inliner (``flamed.collapse.inline``) parses; this runs the programs. Each is
looked up on PATH once (never in the current directory); every run has a
deadline and a cap on what it may print, so a huge or hostile binary cannot
hang the collapse or fill memory. A run that fails gives what it printed, and
the frames it did not answer keep perf's names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

from flamed.collapse.errors import UsageError

TIMEOUT = 120.0  # seconds per run
OUTPUT_LIMIT = 256 << 20  # bytes read from one run


def find_program(name: str) -> str:
    """``name`` on PATH, ignoring relative PATH entries (the current directory)."""
    path = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if os.path.isabs(entry)
    )
    found = shutil.which(name, path=path)
    if found is None:
        raise UsageError(f"--inline needs {name} (binutils) on PATH")
    return found


class Binutils:
    """Runs addr2line and nm for the inliner (``flamed.collapse.inline.BinaryTools``)."""

    def __init__(self, timeout: float = TIMEOUT, limit: int = OUTPUT_LIMIT) -> None:
        self.addr2line_path = find_program("addr2line")
        self.nm_path = find_program("nm")
        self.timeout = timeout
        self.limit = limit

    def addr2line(self, module: str, addresses: list[str]) -> bytes:
        argv = [self.addr2line_path, "-a", "-i", "-f", "-s", "-C", "-e", module]
        return self.run(argv, "".join(f"{address}\n" for address in addresses).encode())

    def nm(self, module: str) -> bytes:
        return self.run([self.nm_path, "--", module], b"")

    def run(self, argv: list[str], stdin: bytes) -> bytes:
        """Standard output of ``argv`` fed ``stdin``: at most ``limit`` bytes, killed at
        the deadline; standard error is dropped (a missing module is only a miss)."""
        try:
            child = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except OSError:
            return b""
        timer = threading.Timer(self.timeout, child.kill)
        writer = threading.Thread(target=feed, args=(child, stdin), daemon=True)
        timer.start()
        writer.start()
        try:
            assert child.stdout is not None
            output = child.stdout.read(self.limit)
            if child.stdout.read(1):
                child.kill()  # over the cap: what was read is answer enough
        finally:
            timer.cancel()
            child.stdout.close()  # type: ignore[union-attr]
            child.wait()
            writer.join()
        return output


def feed(child: subprocess.Popen[bytes], data: bytes) -> None:
    """Write ``data`` to the child's input and close it (a thread: the child answers as
    it reads, so writing everything first could fill both pipes)."""
    assert child.stdin is not None
    try:
        child.stdin.write(data)
        child.stdin.close()
    except OSError:
        pass  # the child exited or was killed
