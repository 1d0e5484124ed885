"""npm packages for tests that check our output with another project's own reader.

A package is installed once into a folder the caller keeps (pytest's cache);
the test skips, saying why, where Node.js, npm or the npm registry cannot be
reached. CI installs ``nodejs`` and ``npm`` (``.ci/run``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_TIMEOUT = 180


def npm_package(folder: Path, name: str, version: str) -> Path:
    """``node_modules/NAME`` under ``folder``, installing ``NAME@VERSION`` there if needed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed (apt-get install nodejs npm)")
    package = folder / "node_modules" / name
    if (package / "package.json").is_file():
        return package
    command = ["npm", "install", "--no-audit", "--no-fund", "--fetch-retries=1"]
    command += ["--prefix", str(folder), f"{name}@{version}"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=INSTALL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install {name} timed out: is the npm registry reachable?")
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").splitlines()
        said = [line for line in lines if "error" in line and "complete log" not in line][:2]
        pytest.skip(f"npm install {name} failed (registry unreachable?): {said}")
    return package
