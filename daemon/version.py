"""flamed's version, looked up only when asked (importlib.metadata is slow to import)."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("flamed")
    except PackageNotFoundError:
        return "unknown"
