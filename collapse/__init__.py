"""Collapse profiler output into folded stacks (``frame;frame;frame COUNT``, root first).

Pure parsers: one module per input format, each a streaming collapser with
``feed(chunk: bytes)`` and ``finish() -> Folded``. No I/O beyond the bytes handed in.
"""
