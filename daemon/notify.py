"""systemd's notification protocol, in a few lines of our own.

A message is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
Without that variable every call does nothing, so the daemon runs the same
outside systemd. ``$WATCHDOG_USEC`` (for our pid, per ``$WATCHDOG_PID``) asks
for ``WATCHDOG=1`` more often than that; we send it at half the period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("flamed.daemon.notify")


class Notifier:
    """Sends sd_notify datagrams; a no-op when not under systemd."""

    def __init__(self, env: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = watchdog_interval(env, os.getpid() if pid is None else pid)
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines (keyword names upper-cased); True when sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={one_line(value)}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a receiver that does not read (a hung
                # manager, a test harness) fills its queue, and a blocking send would
                # then stop the whole daemon. A message that does not fit is dropped.
                sock.setblocking(False)
                sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError as err:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self.address, err.strerror or err)
                self._failed = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(ready="1", status=status)

    def status(self, status: str) -> bool:
        return self.notify(status=status)

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(stopping="1", status=status)

    async def watchdog(self) -> None:
        """Ping the watchdog at half its period until cancelled (returns at once if off)."""
        interval = self.watchdog_interval
        if interval is None or self.address is None:
            return
        while True:
            self.notify(watchdog="1")
            await asyncio.sleep(interval)


def socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Half of $WATCHDOG_USEC in seconds, when it is meant for ``pid``."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    owner = env.get("WATCHDOG_PID")
    if usec <= 0 or (owner and owner.strip() != str(pid)):
        return None
    return usec / 2_000_000


def one_line(value: str) -> str:
    return " ".join(str(value).split())
