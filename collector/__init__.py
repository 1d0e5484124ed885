"""Sampling sessions: perf (Linux) and DTrace (macOS) subprocesses, target resolution.

``create_session(spec, bucket_seconds=…, on_chunk=…)`` builds the
session for a ``TargetSpec``; ``await session.run()`` samples until
``await session.stop()``, handing each bucket to ``on_chunk`` as a ``Chunk``.
``create_session`` is imported on first use, so that importing the contract
(``flamed.collector.base``) stays cheap for the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flamed.collector.base import Chunk, ChunkSink, Session, SessionStatus, TargetSpec

if TYPE_CHECKING:
    from flamed.collector.sessions import create_session

__all__ = ["Chunk", "ChunkSink", "Session", "SessionStatus", "TargetSpec", "create_session"]


def __getattr__(name: str) -> Any:
    if name == "create_session":
        from flamed.collector.sessions import create_session

        return create_session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
