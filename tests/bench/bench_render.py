"""Benchmark `flamed flamegraph` against flamegraph.pl, whole process, time and memory.

    python tests/bench/bench_render.py [--megabytes 33] [--runs 7] [--input FILE]

Generates (once, kept in tests/bench/out/) 33 MB of folded stacks shaped like a
real profile: about 40k distinct stacks, 4 to 60 frames deep, walked through a
random call tree, so that stacks share prefixes as real ones do. It prints
flamed's peak RSS, then runs `flamed flamegraph FILE > SVG` with default options
against inferno-flamegraph (INFERNO_DIR) and flamegraph.pl (FLAMEGRAPH_DIR),
their runs alternating: medians, flamed's time over each reference's, and
whether each drew the same frames (the titles of every frame; flamegraph.pl's
must match).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from tests.bench.timing import compare, inferno_command, perl_command  # noqa: E402

OUT = HERE / "out"
TITLE_RE = re.compile(rb"<title>(.*?)</title>")
TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None

WORDS = [
    "alloc",
    "buffer",
    "cache",
    "channel",
    "codec",
    "commit",
    "compact",
    "decode",
    "dispatch",
    "encode",
    "event",
    "fetch",
    "flush",
    "frame",
    "handle",
    "hash",
    "index",
    "inflate",
    "invoke",
    "journal",
    "lookup",
    "merge",
    "parse",
    "poll",
    "queue",
    "read",
    "reduce",
    "render",
    "resolve",
    "scan",
    "schedule",
    "serialize",
    "socket",
    "sort",
    "split",
    "stream",
    "sync",
    "table",
    "task",
    "thread",
    "tree",
    "update",
    "validate",
    "visit",
    "wait",
    "write",
]


def make_names(rng: random.Random, count: int) -> list[str]:
    names = []
    for index in range(count):
        module = rng.choice(WORDS)
        function = "".join(rng.sample(WORDS, 2))
        names.append(f"a{index % 17}::{module[:4]}::{function}{index}")
    return names


def generate(path: Path, megabytes: float, seed: int = 4) -> None:
    """Distinct stacks 4 to 60 frames deep from a random call tree, until the file reaches
    the size (33 MB: about 40k stacks)."""
    rng = random.Random(seed)
    names = make_names(rng, 4000)
    children: dict[tuple[str, ...], list[str]] = {}
    seen: set[str] = set()
    target = int(megabytes * 1024 * 1024)
    size = 0
    lines = []
    while size < target:
        stack: list[str] = [f"worker-{rng.randrange(8)}"]
        for _ in range(rng.randint(3, 59)):
            key = tuple(stack[-2:])
            options = children.get(key)
            if options is None:
                options = children[key] = rng.sample(names, rng.randint(1, 4))
            stack.append(rng.choice(options))
        text = ";".join(stack)
        if text in seen:
            continue
        seen.add(text)
        line = f"{text} {int(rng.paretovariate(1.2) * 3)}\n"
        lines.append(line)
        size += len(line)
    rng.shuffle(lines)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines), "utf-8")
    os.replace(tmp, path)


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    output: bytes


def measure(command: list[str], output: Path) -> Run:
    """Wall time and peak RSS of one whole process.

    The peak RSS comes from GNU time (``/usr/bin/time -f %M``): a child forked
    straight from this big Python process would inherit its high-water mark,
    which survives exec, so wait4's figure would be ours, not the child's.
    """
    rss_file = output.with_suffix(".rss")
    timed = [TIME, "-f", "%M %U %S", "-o", str(rss_file), *command] if TIME else command
    with open(output, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(timed, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed with status {process.returncode}")
    if TIME:
        peak, user, system = rss_file.read_text().split()[-3:]
        peak_kib, cpu = int(peak), float(user) + float(system)
    else:
        peak_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, peak_kib / 1024, output.read_bytes())


def flamed_command() -> list[str]:
    script = Path(sys.executable).with_name("flamed")
    if script.exists():
        return [str(script), "flamegraph"]
    found = shutil.which("flamed")
    if found:
        return [found, "flamegraph"]
    return [sys.executable, "-m", "flamed.daemon.cli", "flamegraph"]


def titles(svg: bytes) -> Counter[bytes]:
    return Counter(TITLE_RE.findall(svg))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=33, help="size of the profile (33)")
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (7)")
    parser.add_argument("--input", type=Path, help="a folded file instead of the generated one")
    args = parser.parse_args()

    path = args.input or OUT / f"render-{args.megabytes:g}mb.folded"
    if not path.exists():
        started = time.perf_counter()
        generate(path, args.megabytes)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s")
    data = path.read_bytes()
    stacks = data.count(b"\n")
    print(
        f"input: {path} ({len(data) / 2**20:.1f} MiB, {stacks} stacks, "
        f"{data.count(b';') + stacks} frames)"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    ours = measure([*flamed_command(), str(path)], OUT / "render-flamed.svg")
    frames = len(titles(ours.output))
    print(f"flamed flamegraph: peak RSS {ours.peak_rss_mib:.0f} MiB, {frames} frames")
    timings = compare(
        ["flamegraph", str(path)],
        {
            "inferno": inferno_command("inferno-flamegraph", [str(path)]),
            "perl": perl_command("flamegraph.pl", [str(path)]),
        },
        args.runs,
        check_output=False,
    )
    same = True
    for name in ("perl", "inferno"):
        if name in timings:
            alike = titles(timings["flamed"].output) == titles(timings[name].output)
            print(f"  same frames as {name}: {'yes' if alike else 'NO'}")
            same = same and (alike or name == "inferno")  # flamegraph.pl's frames must match
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
