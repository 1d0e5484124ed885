"""Benchmark `flamed run`: CPU overhead, peak RSS with a full retention, HTTP latency.

    python tests/bench/bench_daemon.py [overhead] [rss] [latency]
        [--short 20] [--long 80] [--clients 50] [--seconds 10] [--unique 0.45]

overhead: runs the daemon on the embedded default's targets (whole machine,
    99 Hz, 10 s buckets) twice, for --short and --long seconds, and reports the
    marginal CPU (daemon and its perf children, from wait4) of the longer run
    over the shorter one as a share of one core, so start-up cancels out.
rss: records two real 10 s buckets of this machine and builds from them a full
    default retention as the daemon leaves it (10 s buckets for the last 40
    minutes, 10-minute roll-ups before), with --unique of each bucket's stacks
    made new (45% were new from one bucket to the next on this busy 2-core VM),
    starts the daemon on it and reports its peak RSS (VmHWM) after loading and
    after merging and rendering 1 m, 1 h and 24 h windows.
latency: on that same state, --clients concurrent clients for --seconds
    each against /metrics and a cached /api/v1/flamegraph, printing p50/p99.

Needs root (perf -a). Prints figures; asserts nothing. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DAY = 86400
BUCKET = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(folder: Path, port: int, retention: str = "24h") -> Path:
    config = folder / "flamed.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nstate_dir = "{folder / "state"}"\n'
        f'bucket = "{BUCKET}s"\nretention = "{retention}"\n'
        '[[targets]]\nname = "system"\nall = true\n'
    )
    return config


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flamed.daemon.cli", "-q", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
    )


def wait_ready(port: int, timeout: float = 300, path: str = "/healthz") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the daemon did not answer {path}")


def stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM, reap, and return user+system CPU seconds of it and its reaped children."""
    proc.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def own_cpu(pid: int) -> float:
    """User+system CPU seconds of the process itself (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_for(seconds: float) -> tuple[float, float, float]:
    """(wall seconds, CPU of the daemon and its children, CPU of the daemon alone)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start(write_config(Path(tmp), port))
        wait_ready(port)
        began = time.monotonic()
        time.sleep(seconds)
        own = own_cpu(proc.pid)
        cpu = stop(proc)
        return time.monotonic() - began, cpu, own


def overhead(short: float, long: float) -> None:
    t1, c1, o1 = run_for(short)
    t2, c2, o2 = run_for(long)
    share, own = (c2 - c1) / (t2 - t1), (o2 - o1) / (t2 - t1)
    print(f"overhead: {short:g}s run {c1:.2f} CPU-s, {long:g}s run {c2:.2f} CPU-s")
    print(
        f"overhead: marginal CPU = {share * 100:.2f}% of one core (target: <= 2%); "
        f"the Python process alone {own * 100:.2f}%, perf record and perf script the rest"
    )


def record_buckets(folder: Path, seconds: float = 25) -> list[bytes]:
    port = free_port()
    proc = start(write_config(folder, port))
    wait_ready(port)
    time.sleep(seconds)
    stop(proc)
    files = sorted((folder / "state" / "system").glob("*.folded.gz"))
    if not files:
        raise SystemExit("no bucket was recorded")
    return [gzip.decompress(path.read_bytes()) for path in files]


def synthetic_bucket(sample: bytes, index: int, unique: float, rng: random.Random) -> list[str]:
    """A real bucket's lines with a share of its stacks made new (as on a busy machine)."""
    lines = sample.decode("utf-8", "surrogateescape").splitlines()
    out = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        stack, _, value = line.rpartition(" ")
        if rng.random() < unique:
            stack += f";unique_{index}_{rng.randrange(1 << 30)}"
        out.append(f"{stack} {value}")
    return out


def write_bucket(target: Path, begin: int, end: int, lines: list[str], samples: int) -> None:
    text = f"# flamed bucket samples={samples}\n" + "\n".join(lines) + "\n"
    name = f"{begin * 1000}-{end * 1000}.folded.gz"
    (target / name).write_bytes(gzip.compress(text.encode("utf-8", "surrogateescape"), 1))


def fill_retention(
    folder: Path, samples: list[bytes], now: float, unique: float
) -> tuple[int, int, int]:
    """24 h of buckets as a daemon leaves them: 10 s ones for the last 40 minutes
    (roll-up after 30m, one 10-minute roll-up period of lag), 10-minute roll-ups before.
    Returns (files, stacks per 10 s bucket, stacks per roll-up)."""
    target = folder / "state" / "system"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    rng = random.Random(1)
    end = int(now) // 600 * 600
    fine_from = end - 2400
    files, fine_stacks, coarse_stacks = 0, 0, 0
    for begin in range(end - DAY + 600, fine_from, 600):
        merged: dict[str, int] = {}
        for index in range(60):
            for line in synthetic_bucket(samples[index % len(samples)], begin + index, unique, rng):
                stack, _, value = line.rpartition(" ")
                merged[stack] = merged.get(stack, 0) + int(value)
        ranked = sorted(merged.items(), key=lambda item: -item[1])
        kept, rest = ranked[:49_999], sum(count for _, count in ranked[49_999:])
        lines = [f"{stack} {count}" for stack, count in kept] + (
            [f"[other] {rest}"] if rest else []
        )
        write_bucket(target, begin, begin + 600, lines, 60_000)
        files, coarse_stacks = files + 1, len(lines)
    for index, begin in enumerate(range(fine_from, int(now) - BUCKET, BUCKET)):
        lines = synthetic_bucket(samples[index % len(samples)], begin, unique, rng)
        write_bucket(target, begin, begin + BUCKET, lines, 1000)
        files, fine_stacks = files + 1, len(lines)
    return files, fine_stacks, coarse_stacks


def fetch(port: int, path: str) -> tuple[float, int]:
    began = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=600) as response:
        size = len(response.read())
    return time.perf_counter() - began, size


def rss_and_latency(
    do_rss: bool, do_latency: bool, clients: int, seconds: float, unique: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        samples = record_buckets(folder)
        files, fine, coarse = fill_retention(folder, samples, time.time(), unique)
        size = sum(p.stat().st_size for p in (folder / "state" / "system").iterdir()) >> 20
        print(
            f"rss: 24 h of state: {files} files, {size} MiB on disk; a 10 s bucket holds "
            f"{fine} stacks ({unique:.0%} new each time), a 10-minute roll-up {coarse}"
        )
        port = free_port()
        began = time.monotonic()
        proc = start(write_config(folder, port))
        wait_ready(port)
        print(f"rss: listening after {time.monotonic() - began:.1f}s")
        wait_ready(port, path="/readyz")
        print(f"rss: windows loaded (ready) after {time.monotonic() - began:.1f}s")
        try:
            print(f"rss: peak RSS after loading: {hwm_mib(proc.pid):.0f} MiB")
            for window in ("1m", "1h", "24h"):
                for kind in ("folded", "flamegraph"):
                    took, size = fetch(port, f"/api/v1/{kind}?target=system&window={window}")
                    print(f"rss: {kind} {window}: {took * 1000:.0f} ms, {size} bytes")
            print(f"rss: peak RSS after 1 h and 24 h queries: {hwm_mib(proc.pid):.0f} MiB")
            if do_latency:
                asyncio.run(load(port, clients, seconds))
                print(f"latency: peak RSS after the load: {hwm_mib(proc.pid):.0f} MiB")
        finally:
            stop(proc)


async def load(port: int, clients: int, seconds: float) -> None:
    for path in ("/metrics", "/api/v1/flamegraph?target=system&window=1m"):
        fetch(port, path)  # warm the cache
        if shutil.which("wrk"):
            run_wrk(f"http://127.0.0.1:{port}{path}", clients, seconds)
            continue
        times = await hammer(f"http://127.0.0.1:{port}{path}", clients, seconds)
        p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
        print(
            f"latency: {path}: {len(times)} requests by {clients} clients in {seconds:g}s, "
            f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (target: p99 < 50 ms)"
        )


def run_wrk(url: str, clients: int, seconds: float) -> None:
    """Debian's wrk (2 threads), with the gzip a browser or Grafana would ask for."""
    argv = ["wrk", "-t2", f"-c{clients}", f"-d{seconds:g}s", "--latency"]
    argv += ["-H", "Accept-Encoding: gzip", url]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    wanted = ("50%", "99%", "Requests/sec", "Non-2xx", "Socket errors")
    found = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith(wanted)]
    print(f"latency (wrk, {clients} connections, {seconds:g}s): {url}: " + "; ".join(found))


async def hammer(url: str, clients: int, seconds: float) -> list[float]:
    """Latencies of ``clients`` concurrent loops of GETs for ``seconds``, sorted."""
    import aiohttp

    times: list[float] = []
    codes: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                async with http.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                    await response.read()
                    codes[response.status] = codes.get(response.status, 0) + 1
                times.append(time.perf_counter() - began)

        await asyncio.gather(*(client() for _ in range(clients)))
    if set(codes) != {200}:
        print(f"latency: status codes {codes}")
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="*", default=["overhead", "rss", "latency"])
    parser.add_argument("--short", type=float, default=20)
    parser.add_argument("--long", type=float, default=80)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--unique", type=float, default=0.45, help="share of new stacks per bucket (measured: 0.45)"
    )
    args = parser.parse_args()
    if "overhead" in args.what:
        overhead(args.short, args.long)
    if "rss" in args.what or "latency" in args.what:
        what = args.what
        rss_and_latency("rss" in what, "latency" in what, args.clients, args.seconds, args.unique)


if __name__ == "__main__":
    main()
