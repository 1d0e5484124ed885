"""Profile types (issue 19): a target with ``offcpu = true`` has a second, off-CPU profile.

Fake sessions and a fake clock, as in ``test_app.py``: the off-CPU session is the one the
factory is asked for with ``profile="offcpu"``; its chunks count microseconds.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry

from flamed.daemon.app import SERVICE, create_app
from flamed.daemon.config import Config, parse_config
from flamed.daemon.persist import HEADER
from flamed.daemon.service import Service
from tests.daemon.conftest import T0, FakeClock, FakeFactory, make_config, wait_for
from tests.daemon.test_app import Client, MakeClient, start
from tests.daemon.test_export import MakeServer, receiving
from tests.render.pprofread import decode_protobuf

TARGETS = (
    '[[targets]]\nname = "a"\nall = true\noffcpu = true\noffcpu_min_block = "500us"\n\n'
    '[[targets]]\nname = "b"\nprocess = "^b$"\n'
)


def config(state: Path) -> Config:
    return make_config(state, targets=TARGETS)


@pytest.fixture
async def client(
    aiohttp_client: MakeClient, tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> Client:
    client = await start(aiohttp_client, config(tmp_path), factory, clock)
    factory.latest("a").emit(T0 - 20, T0 - 10, "main;work 5\n")
    factory.latest("a", "offcpu").emit(T0 - 20, T0 - 10, "main;read;schedule 250000\n")
    return client


def test_offcpu_is_a_sampler_setting() -> None:
    parsed = make_config(Path("/tmp/x"), targets=TARGETS)
    assert parsed.sampler("a").offcpu and not parsed.sampler("b").offcpu
    assert parsed.sampler("a").offcpu_arguments() == {"profile": "offcpu", "min_block_us": 500}
    assert "profile" not in parsed.sampler("a").arguments()
    text = '[[targets]]\nname = "a"\nall = true\noffcpu_min_block = "20s"\n'
    with pytest.raises(Exception, match=r"offcpu_min_block: must be from 1us to 10s"):
        parse_config(text, "t.toml")


async def test_each_type_has_its_own_window(client: Client, factory: FakeFactory) -> None:
    assert factory.offcpu_sampler["a"] == {"profile": "offcpu", "min_block_us": 500}
    assert "b" not in factory.offcpu_sampler
    cpu = await client.get("/api/v1/folded?target=a&window=5m")
    assert await cpu.text() == "main;work 5\n"
    off = await client.get("/api/v1/folded?target=a&window=5m&type=offcpu")
    assert off.status == 200 and await off.text() == "main;read;schedule 250000\n"
    assert cpu.headers["ETag"] != off.headers["ETag"]
    timeline = await (await client.get("/api/v1/timeline?target=a&type=offcpu")).json()
    assert timeline["type"] == "offcpu" and timeline["buckets"] == [[T0 - 20, T0 - 10, 250000]]
    svg = await (await client.get("/api/v1/flamegraph?target=a&type=offcpu")).text()
    assert "0.250 s off CPU" in svg and "250,000 us" in svg


async def test_bad_or_absent_types(client: Client) -> None:
    paths = ["/api/v1/folded", "/api/v1/flamegraph", "/api/v1/pprof", "/api/v1/profile",
             "/api/v1/timeline", "/api/v1/speedscope", "/api/v1/diff"]  # fmt: skip
    for path in paths:
        unknown = await client.get(f"{path}?target=a&type=wall")
        text = await unknown.text()
        assert unknown.status == 400 and text.count("\n") == 1, (path, text)
        assert text.startswith("type: unknown profile type 'wall' (cpu, offcpu, hotcold)"), text
        absent = await client.get(f"{path}?target=b&type=offcpu")
        text = await absent.text()
        assert absent.status == 404, (path, text)
        assert text == "target 'b' has no offcpu profile (it has: cpu)\n", text
    quick = await client.get("/folded.txt?type=offcpu")
    assert quick.status == 200 and "schedule" in await quick.text()


async def test_hot_and_cold_in_one_graph(client: Client) -> None:
    """CPU samples become microseconds (1e6 / 99 each), off-CPU frames are marked _[o]."""
    both = await client.get("/api/v1/folded?target=a&window=5m&type=hotcold")
    assert await both.text() == "main;work 50505\nmain_[o];read_[o];schedule_[o] 250000\n"
    svg = await (await client.get("/api/v1/flamegraph?target=a&type=hotcold")).text()
    assert "main (50,505 us," in svg and "read (250,000 us," in svg
    assert "0.301 s on CPU and off" in svg
    document = await (await client.get("/api/v1/profile?target=a&type=hotcold")).json()
    assert document["type"] == "hotcold" and document["samples"] == 300505
    for path in ("/api/v1/pprof", "/api/v1/timeline"):
        refused = await client.get(f"{path}?target=a&type=hotcold")
        assert refused.status == 400 and "hotcold is for graphs" in await refused.text()
    absent = await client.get("/api/v1/folded?target=b&type=hotcold")
    assert absent.status == 404 and "has no offcpu profile" in await absent.text()


async def test_targets_list_types_and_the_offcpu_state(
    client: Client, factory: FakeFactory
) -> None:
    a, b = await (await client.get("/api/v1/targets")).json()
    assert a["types"] == ["cpu", "offcpu"] and b["types"] == ["cpu"] and "offcpu" not in b
    assert a["offcpu"]["state"] == "running" and a["offcpu"]["last_error"] is None
    offcpu = factory.latest("a", "offcpu")
    offcpu.status.state = "error"
    offcpu.status.error("off-CPU: bpftrace not found (bpftrace): install it")
    a, _ = await (await client.get("/api/v1/targets")).json()
    assert a["state"] == "running" and a["last_error"] is None  # the CPU profile goes on
    assert a["offcpu"]["state"] == "error"
    assert a["offcpu"]["last_error"] == "off-CPU: bpftrace not found (bpftrace): install it"
    assert (await client.get("/readyz")).status == 200


async def test_pprof_of_offcpu_time(client: Client, pb: ModuleType) -> None:
    response = await client.get("/api/v1/pprof?target=a&type=offcpu")
    profile = decode_protobuf(pb, await response.read())
    assert profile.sample_types == [("off_cpu", "nanoseconds")]
    assert profile.period_type == ("off_cpu", "nanoseconds") and profile.period == 1
    assert [sample["values"] for sample in profile.samples] == [[250_000_000]]
    cpu = decode_protobuf(pb, await (await client.get("/api/v1/pprof?target=a")).read())
    assert cpu.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]


async def test_metrics_count_both(
    aiohttp_client: MakeClient, tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> None:
    registry = CollectorRegistry()
    app = create_app(
        config(tmp_path), session_factory=factory, clock=clock, registry=registry, watch=False
    )
    await aiohttp_client(app)
    await wait_for(lambda: factory.running("a", "b") and not app[SERVICE].loading)
    factory.latest("a").emit(T0 - 20, T0 - 10, "main;work 5\n")
    factory.latest("a", "offcpu").status.state = "running"
    factory.latest("a", "offcpu").emit(T0 - 20, T0 - 10, "main;read 1500000\n")
    blocked = {"target": "a"}
    await wait_for(lambda: registry.get_sample_value("flamed_offcpu_seconds_total", blocked) == 1.5)
    assert registry.get_sample_value("flamed_collapse_samples_total", {"target": "a"}) == 5
    assert registry.get_sample_value("flamed_offcpu_up", {"target": "a"}) == 1
    assert registry.get_sample_value("flamed_offcpu_up", {"target": "b"}) is None


async def test_offcpu_buckets_persist_beside_the_cpu_ones(
    tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> None:
    """CPU files stay where they always were (``state/<target>/``, read as before); off-CPU
    ones go to ``state/<target>/offcpu/``."""
    old = tmp_path / "a" / f"{round((T0 - 40) * 1000)}-{round((T0 - 30) * 1000)}.folded.gz"
    old.parent.mkdir(parents=True)
    old.write_bytes(gzip.compress(f"{HEADER}samples=3\nmain;older 3\n".encode()))
    service = Service(config(tmp_path), session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a", "b") and not service.loading)
    factory.latest("a", "offcpu").emit(T0 - 20, T0 - 10, "main;read 1500000\n")
    await service.writer.flush(5)
    await service.stop()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.gz"))
    new = f"{round((T0 - 20) * 1000)}-{round((T0 - 10) * 1000)}.folded.gz"
    assert files == [f"a/{old.name}", f"a/offcpu/{new}"]

    plain = make_config(tmp_path)  # offcpu no longer asked for: its history still loads
    again = Service(plain, session_factory=FakeFactory(), clock=clock)
    await again.start()
    await wait_for(lambda: not again.loading)
    try:
        assert again.profiles("a") == ["cpu", "offcpu"]
        assert again.windows["a"].buckets[0].samples == 3
        assert again.windows["a/offcpu"].buckets[0].folded().counts == {"main;read": 1500000}
    finally:
        await again.stop()


async def test_a_symlink_for_the_offcpu_folder_is_not_followed(
    tmp_path: Path, factory: FakeFactory, clock: FakeClock
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state" / "a").mkdir(parents=True)
    (tmp_path / "state" / "a" / "offcpu").symlink_to(elsewhere)
    service = Service(config(tmp_path / "state"), session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a", "b") and not service.loading)
    factory.latest("a", "offcpu").emit(T0 - 20, T0 - 10, "main;read 1500000\n")
    await service.writer.flush(5)
    await service.stop()
    assert list(elsewhere.iterdir()) == []


async def test_offcpu_buckets_are_pushed_beside_cpu_ones(
    aiohttp_server: MakeServer,
    aiohttp_client: MakeClient,
    pb: ModuleType,
    tmp_path: Path,
    factory: FakeFactory,
    clock: FakeClock,
) -> None:
    stand_in, exporters = await receiving(aiohttp_server, pb, "parca")
    await start(aiohttp_client, make_config(tmp_path, targets=TARGETS + exporters), factory, clock)
    factory.latest("a", "offcpu").emit(T0 - 20, T0 - 10, "main;read;schedule 250000\n")
    factory.latest("a").emit(T0 - 20, T0 - 10, "main;work 5\n")
    await wait_for(lambda: len(stand_in.received) == 2)
    assert stand_in.violations == []
    by_name = {got.labels["__name__"]: got for got in stand_in.received}
    assert by_name["off_cpu"].folded == {"main;read;schedule": 250_000_000}
    assert by_name["process_cpu"].folded == {"main;work": 5}
