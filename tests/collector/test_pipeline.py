"""The perf pipeline's start: whatever ends it early leaves no child running."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from flamed.collector import pipeline


def living_children(marker: str) -> list[int]:
    """Our children whose command line holds ``marker``, zombies left out."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            argv = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and marker.encode() in argv:
            found.append(int(name))
    return found


async def test_a_start_cancelled_after_the_first_child_began_leaves_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon stopping while the start is under way (here, while perf script is being
    spawned, the start's last await) used to leave the children already started running:
    the wrapper's sleep outlived the daemon."""
    spawn = pipeline.spawn
    calls = 0

    async def cancelled_second(*args: object, **kwargs: object) -> asyncio.subprocess.Process:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise asyncio.CancelledError
        return await spawn(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "spawn", cancelled_second)
    argv = ["sleep", "31.5"]
    with pytest.raises(asyncio.CancelledError):
        await pipeline.start_pipeline(argv, argv, lambda data: None, name="t")
    assert calls == 2
    assert living_children("31.5") == []


async def test_output_is_read_on_a_timer_to_its_end_and_kill_closes_it() -> None:
    """perf script's output comes in whole, a read every READ_EVERY seconds, not one per
    write; its end ends ``ended``; ``kill()`` closes what is ours."""
    received: list[bytes] = []
    writer = "for i in $(seq 40); do printf 'line %03d\\n' $i; sleep 0.02; done"
    run = await pipeline.start_pipeline(
        ["sleep", "0"], ["sh", "-c", writer], received.append, name="t"
    )
    await asyncio.wait_for(asyncio.shield(run.ended), timeout=30)
    text = b"".join(received)
    assert text == b"".join(b"line %03d\n" % i for i in range(1, 41))
    assert run.bytes_out == len(text)
    assert len(received) <= 4, f"{len(received)} reads for 0.8 s of writes"
    fd = run.output
    await run.kill()
    assert run.output is None and fd is not None
    with pytest.raises(OSError):
        os.fstat(fd)


class Passing:
    """A mender that changes nothing and keeps the sizes it was fed."""

    def __init__(self) -> None:
        self.fed: list[int] = []

    def feed(self, data: bytes) -> bytes:
        self.fed.append(len(data))
        return data

    def finish(self) -> bytes:
        return b""


async def test_the_relay_holds_one_read_when_perf_script_does_not_read() -> None:
    """Back-pressure through the relay: a reader that takes nothing stops the relay, and the
    writer once the pipes are full (1 MiB each); nothing piles up in flamed."""
    mender = Passing()
    run = await pipeline.start_pipeline(
        ["head", "-c", "100000000", "/dev/zero"], ["sleep", "30"], lambda data: None,
        name="t", mender=mender,
    )  # fmt: skip
    writer = Path(f"/proc/{run.record.pid}/io")
    written = -1
    while written != (written := int(writer.read_text().split("wchar:")[1].split()[0])):
        await asyncio.sleep(0.5)  # until the writer is blocked
    assert run.record.returncode is None
    assert written <= 2 * pipeline.PIPE_SIZE + pipeline.READ_SIZE
    assert sum(mender.fed) <= pipeline.PIPE_SIZE + pipeline.READ_SIZE
    assert max(mender.fed) <= pipeline.READ_SIZE
    await run.kill()
    assert run.record.returncode == run.script.returncode == -9
