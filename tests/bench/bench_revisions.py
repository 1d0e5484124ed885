"""Time the pure-Python path of two source trees of flamed, their runs alternating.

    git archive main | tar -x -C /tmp/before
    FLAMED_BENCH_PERF=/work/refs/data/diverse-40s.txt \\
        python tests/bench/bench_revisions.py --before /tmp/before [--after .] [--runs 7]

Each tree (a checkout: collapse/, render/, collector/, daemon/) is put first on
PYTHONPATH as the ``flamed`` namespace, and every command runs with
FLAMED_NO_EXTENSIONS=1: the pure-Python code of one revision against the
other's, on the inputs of bench_perf.py, bench_dtrace.py and bench_render.py
(make them first). It prints each median and after / before (below 1.0: faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from tests.bench.timing import Timings, alternate  # noqa: E402

PACKAGES = ("collapse", "render", "collector", "daemon")
RUN = "import sys; from flamed.daemon.cli import main; sys.exit(main(sys.argv[1:]))"


def namespace(tree: Path, into: Path) -> Path:
    """A folder whose ``flamed/`` holds the tree's packages (symbolic links)."""
    (into / "flamed").mkdir(parents=True)
    for package in PACKAGES:
        (into / "flamed" / package).symlink_to(tree.resolve() / package)
    return into


def cases() -> list[list[str]]:
    out = HERE / "out"
    found: list[list[str]] = []
    diverse = os.environ.get("FLAMED_BENCH_PERF")
    if diverse:
        found.append(["collapse", "perf", diverse])
    found.append(["collapse", "perf", "--all", str(out / "example-perf-stacks.txt")])
    found.append(["collapse", "dtrace", str(out / "example-dtrace-stacks-16MB.txt")])
    found.append(["flamegraph", str(out / "render-33mb.folded")])
    return [case for case in found if Path(case[-1]).exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the older source tree")
    parser.add_argument("--after", type=Path, default=HERE.parents[1], help="the newer one")
    parser.add_argument("--runs", type=int, default=7, help="runs of each (7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            name: str(namespace(tree, Path(tmp) / name))
            for name, tree in (("before", args.before), ("after", args.after))
        }
        for case in cases():
            timings = {
                name: Timings(
                    [sys.executable, "-c", RUN, *case],
                    {"PYTHONPATH": path, "FLAMED_NO_EXTENSIONS": "1"},
                )
                for name, path in paths.items()
            }
            alternate(timings, args.runs)
            before, after = timings["before"], timings["after"]
            same = "same output" if before.output == after.output else "OUTPUT DIFFERS"
            print(
                f"{' '.join(case[:-1])} {Path(case[-1]).name}: before {before.median:.3f} s, "
                f"after {after.median:.3f} s, after / before {after.median / before.median:.2f}"
                f" ({same})"
            )


if __name__ == "__main__":
    main()
