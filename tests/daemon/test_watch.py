"""The watchers: an edited config file reloads; files dropped in the inbox are folded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from flamed.daemon.app import METRICS, SERVICE, create_app
from flamed.daemon.config import load_config
from flamed.daemon.service import RELOAD_SETTLE
from tests.daemon.conftest import TWO_TARGETS, FakeFactory, wait_for
from tests.daemon.test_service import THIRD, reloads, write_config


async def test_editing_the_file_reloads(tmp_path: Path, factory: FakeFactory) -> None:
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS)
    app = create_app(
        load_config(str(path)),
        session_factory=factory,
        config_path=str(path),
        registry=CollectorRegistry(),
    )
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    service = app[SERVICE]
    try:
        replacement = tmp_path / "new.toml"
        write_config(replacement, tmp_path / "state", TWO_TARGETS + THIRD)
        os.replace(replacement, path)  # as editors save
        await wait_for(lambda: "c" in service.targets)
        with path.open("a") as out:
            out.write('[[targets]]\nname = "d"\npids = [1]\n')
        await wait_for(lambda: "d" in service.targets)
        # Reading the file for a reload must not itself look like a change.
        settled = reloads(app[METRICS], "success")
        await asyncio.sleep(10 * RELOAD_SETTLE)
        assert reloads(app[METRICS], "success") == settled
    finally:
        await runner.cleanup()


async def test_inbox_folds_files_into_the_named_target(
    tmp_path: Path, factory: FakeFactory
) -> None:
    inbox = tmp_path / "inbox"
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS, storage=f"inbox = {str(inbox)!r}")
    inbox.mkdir()
    (inbox / "b.folded").write_text("early;file 2\n")  # present at start: taken at start
    app = create_app(load_config(str(path)), session_factory=factory, registry=CollectorRegistry())
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    service = app[SERVICE]
    try:
        await wait_for(lambda: service.windows["b"].buckets != [])
        partial = inbox / "a.tmp"
        partial.write_text("main;f 3\nmain;g 1\n")
        await asyncio.sleep(0.3)
        assert service.windows["a"].buckets == [] and partial.exists()
        os.replace(partial, inbox / "a.folded")
        await wait_for(lambda: service.windows["a"].buckets != [])
        await wait_for(lambda: not (inbox / "a.folded").exists())
        window = service.windows["a"]
        merged = window.merge(window.select(0, 2e10))
        assert merged.counts == {"main;f": 3, "main;g": 1}
        (inbox / "nobody.folded").write_text("x 1\n")
        await wait_for(lambda: (inbox / "nobody.folded.rejected").exists())
        perf_text = "prog 1/1 1.0: 1 cpu-clock:\n\tffff f1 (/bin/prog)\n\tffff main (/bin/prog)\n\n"
        (inbox / "b.perf.txt").write_text(perf_text)
        await wait_for(lambda: not (inbox / "b.perf.txt").exists())
        wb = service.windows["b"]
        assert wb.merge(wb.select(0, 2e10)).counts == {"early;file": 2, "prog;main;f1": 1}
    finally:
        await runner.cleanup()
