"""The layers and the no-cycle rule of pyproject.toml's import-linter contracts hold.

CI runs ``lint-imports`` itself; this runs it under plain ``pytest`` too, and
shows that a forbidden import (even one inside a function) breaks it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not LINT.exists():
        pytest.skip(f"{LINT} is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    done = lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_lazy_upward_import_breaks_them(tmp_path: Path) -> None:
    """A copy of the tree where the store imports the service inside a function."""
    for folder in ("collapse", "render", "collector", "daemon"):
        shutil.copytree(ROOT / folder, tmp_path / "flamed" / folder)
    store = tmp_path / "flamed" / "daemon" / "store.py"
    store.write_text(store.read_text() + "\n\ndef f():\n    import flamed.daemon.service\n")
    done = lint(tmp_path, {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "flamed.daemon.store is not allowed to import flamed.daemon.service" in done.stdout
