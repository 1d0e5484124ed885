"""The wheel must carry every module: import each from an installed copy, outside the tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCE_FOLDERS = {
    "collapse": "flamed.collapse",
    "render": "flamed.render",
    "collector": "flamed.collector",
    "daemon": "flamed.daemon",
}


def all_module_names() -> list[str]:
    names = []
    for folder, package in SOURCE_FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join((package, *parts)))
    return names


@pytest.mark.slow
def test_wheel_contains_every_module(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    target = tmp_path / "site"
    wheel = next(wheel_dir.glob("flamed-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        scripts = [name for name in archive.namelist() if name.endswith(".data/scripts/flamed")]
        script = archive.read(scripts[0]).decode()
    assert script.startswith("#!python\n")  # pip writes the installing interpreter there
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    names = all_module_names()
    script = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    result = subprocess.run(
        [sys.executable, "-P", "-c", script, *names],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in names:
        module_file = target.joinpath(*name.split(".")).with_suffix(".py")
        package_file = target.joinpath(*name.split("."), "__init__.py")
        assert module_file.exists() or package_file.exists(), name
    assert (target / "flamed" / "collapse" / "py.typed").exists()


def test_collapse_command_does_not_import_aiohttp() -> None:
    script = (
        "import sys\nfrom flamed.daemon.cli import build_parser\nbuild_parser()\n"
        "import flamed.collapse.perf\n"
        "heavy = ('aiohttp', 'prometheus_client', 'watchdog', 'asyncio')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


SLOW_MODULES = (
    "logging", "dataclasses", "typing", "shutil", "pickle", "gzip", "inspect",
    "re", "argparse", "gettext", "locale", "enum", "collections", "functools",
)  # fmt: skip


def loaded_at_start(slow: tuple[str, ...] = SLOW_MODULES) -> set[str]:
    """Which of ``slow`` a bare start of this interpreter has loaded before any code runs:
    not flamed's doing (a default editable install's finder, for one, imports re)."""
    script = f"import sys\nprint(' '.join(m for m in {slow!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(result.stdout.split())


def test_collapse_perf_start_up_imports_only_what_it_uses(tmp_path: Path) -> None:
    """Start-up time counts in every `flamed collapse perf` (and in its benchmark against
    the Perl script): a clean input must not pull in modules that cost milliseconds to
    import and that it does not need (logging is imported at the first warning; argparse,
    with re, gettext and locale, for help and usage errors only)."""
    data = (Path(__file__).parent / "data" / "perf" / "c-burn.txt").read_bytes()
    script = (
        "import sys\nfrom flamed.daemon.cli import main\n"
        "code = main(['collapse', 'perf', '--all', sys.argv[1]])\n"
        f"print(' '.join(m for m in {SLOW_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
    )
    source = tmp_path / "in.txt"
    source.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", script, str(source)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"burn;"), result.stdout[:200]
    assert set(result.stderr.decode().split()) - loaded_at_start() == set()


def test_the_flamed_command_starts_without_importing_re() -> None:
    """The installed `flamed` is daemon/flamed, not a console-script wrapper: pip's wrapper
    imports re (~8 ms, enum with it) before flamed starts."""
    script = Path(sys.executable).with_name("flamed").read_text()
    shebang = script.split("\n", 1)[0]
    assert shebang.startswith("#!/") and "python" in Path(shebang[2:]).name, shebang
    assert "import re" not in script
    assert script.split("\n", 1)[1] == (ROOT / "daemon" / "flamed").read_text().split("\n", 1)[1]
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            str(Path(sys.executable).with_name("flamed")),
            "collapse",
            "perf",
            "--all",
            str(ROOT / "tests" / "data" / "perf" / "c-burn.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert not imported & ({"re", "argparse", "enum"} - loaded_at_start()), sorted(imported)
