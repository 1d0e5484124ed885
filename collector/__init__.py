"""Sampling sessions: perf (Linux) and DTrace (macOS) subprocesses, target resolution.

``create_session(spec, bucket_seconds=…, spool_dir=…, on_chunk=…)`` builds the
session for a ``TargetSpec``; ``await session.run()`` samples until
``await session.stop()``, handing each bucket to ``on_chunk`` as a ``Chunk``.
"""

from flamed.collector.base import Chunk, ChunkSink, Session, SessionStatus, TargetSpec
from flamed.collector.sessions import create_session

__all__ = ["Chunk", "ChunkSink", "Session", "SessionStatus", "TargetSpec", "create_session"]
