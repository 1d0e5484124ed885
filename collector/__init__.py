"""Sampling sessions: perf (Linux) and DTrace (macOS) subprocesses, target resolution."""
