"""The web page's profile model (``daemon/assets/profile.js``) under Node.js, against Python.

Random profiles (few names, so functions recur and repeat) go through
``flamed.render.jsonprofile`` into the page's own code; every answer it gives
(the stacks read back, folded runs, each function's self and total, a
comparison, callers and callees, the matched share of a search, zoom paths) is
checked against an independent computation here on the folded stacks.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flamed.collapse.folded import Count, Folded
from flamed.render.jsonprofile import profile_json
from tests.render.test_speedscope import function_counts

ASSETS = Path(__file__).resolve().parents[2] / "daemon" / "assets"
NAMES = ["main", "a", "b", "c", "[unknown]", "d\u00e9j\u00e0", "</script><img onerror=x>"]
NAMES += [f"fn_{n}" for n in range(40)]  # enough for the bigger cases to fill the tables
HARNESS = r"""
const FV = require(process.argv[2]);
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));

// Every node with samples: "name;name;..." (the root's name first when asked) -> [self, base].
function stacksOf(tree, withRoot) {
  const out = {};
  for (let i = 0; i < tree.count; i++) {
    const base = tree.baseSelf ? tree.baseSelf[i] : 0;
    if (!tree.self[i] && !base) {
      continue;
    }
    let path = FV.pathOf(tree, i);
    if (withRoot) {
      path = [tree.names[tree.name[0]]].concat(path);
    }
    const key = path.join(";");
    const have = out[key] || [0, 0];
    out[key] = [have[0] + tree.self[i], have[1] + base];
  }
  return out;
}

// Whether no two nodes of the tree stand for the same path (a merge that missed a node would
// make two).
function unique(tree) {
  const seen = new Set();
  for (let i = 0; i < tree.count; i++) {
    seen.add(FV.pathOf(tree, i).join("\u0000"));
  }
  return seen.size === tree.count;
}

function run(item) {
  const tree = FV.fromJson(item.doc);
  const stats = FV.functionStats(tree);
  const names = {};
  stats.names.forEach((n) => { names[tree.names[n]] = [stats.total[n], stats.self[n]]; });
  const folded = FV.foldRuns(tree, 2);
  const unknown = FV.foldRuns(tree, 4);
  const runs = [];
  for (let i = 0; i < unknown.count; i++) {
    if (unknown.runMax[i]) runs.push([FV.pathOf(unknown, i).join(";"), unknown.runMin[i],
      unknown.runMax[i]]);
  }
  const other = FV.fromJson(item.other);
  const compared = FV.compare(tree, other);
  const fn = tree.names.indexOf(item.fn);
  const marks = FV.matchNames(tree.names, FV.matcher(item.pattern, true));
  let pathsOk = true;
  for (let i = 0; i < tree.count; i++) {
    pathsOk = pathsOk && FV.findPath(tree, FV.pathOf(tree, i)) === i;
  }
  const built = [folded, unknown, compared].concat(fn >= 0 ? [FV.callers(tree, fn),
    FV.callees(tree, fn)] : []);
  return {
    unique: built.every(unique),
    stacks: stacksOf(tree, false),
    total: tree.total[0],
    functions: names,
    folded: stacksOf(folded, false),
    foldedLong: stacksOf(unknown, false),
    runs: runs,
    compared: stacksOf(compared, false),
    comparedTotals: [compared.total[0], compared.baseTotal[0]],
    callers: fn >= 0 ? stacksOf(FV.callers(tree, fn), true) : {},
    callees: fn >= 0 ? stacksOf(FV.callees(tree, fn), true) : {},
    matched: FV.matchedTotal(tree, marks),
    pathsOk: pathsOk,
  };
}

process.stdout.write(JSON.stringify(cases.map(run)));
"""


def random_profile(rng: random.Random, most: int = 25) -> Folded:
    counts: dict[str, Count] = {}
    for _ in range(rng.randint(1, most)):
        depth = rng.randint(1, 9)
        frames = [rng.choice(NAMES[:4]) if rng.random() < 0.8 else rng.choice(NAMES)]
        while len(frames) < depth:  # runs of one name, as [unknown] chains are
            frames.append(frames[-1] if rng.random() < 0.35 else rng.choice(NAMES))
        stack = ";".join(frames)
        counts[stack] = counts.get(stack, 0) + rng.randint(1, 50)
    return Folded(counts)


def collapse_repeats(stack: str) -> str:
    frames = stack.split(";")
    return ";".join(f for n, f in enumerate(frames) if n == 0 or frames[n - 1] != f)


def summed(pairs: Iterator[tuple[str, Count]]) -> dict[str, Count]:
    out: dict[str, Count] = {}
    for key, value in pairs:
        out[key] = out.get(key, 0) + value
    return out


def callers_of(folded: Folded, name: str) -> dict[str, Count]:
    def upward() -> Iterator[tuple[str, Count]]:
        for stack, count in folded.items():
            frames = stack.split(";")
            if name in frames:
                yield ";".join(reversed(frames[: frames.index(name) + 1])), count

    return summed(upward())


def callees_of(folded: Folded, name: str) -> dict[str, Count]:
    def downward() -> Iterator[tuple[str, Count]]:
        for stack, count in folded.items():
            frames = stack.split(";")
            if name in frames:
                yield ";".join(frames[frames.index(name) :]), count

    return summed(downward())


def selves(result: dict[str, list[float]]) -> dict[str, float]:
    return {key: value[0] for key, value in result.items() if value[0]}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (apt-get install nodejs)")
    script = tmp_path_factory.mktemp("model") / "harness.js"
    script.write_text(HARNESS, encoding="utf-8")
    return script


def run_model(node: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["node", str(node), str(ASSETS / "profile.js")],
        input=json.dumps(cases).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def test_the_model_agrees_with_the_stacks(node: Path) -> None:
    rng = random.Random(15)
    profiles = [(random_profile(rng), random_profile(rng)) for _ in range(80)]
    profiles += [(random_profile(rng, 4000), random_profile(rng, 4000)) for _ in range(3)]
    cases = [
        {
            "doc": json.loads(profile_json(one)),
            "other": json.loads(profile_json(two)),
            "fn": rng.choice(NAMES[:5]),
            "pattern": rng.choice(["^a$", "B", "unknown", "d.j", "zzz"]),
        }
        for one, two in profiles
    ]
    for (one, two), case, result in zip(profiles, cases, run_model(node, cases), strict=True):
        assert selves(result["stacks"]) == one.counts
        assert result["total"] == one.total()
        expected = {name: list(pair) for name, pair in function_counts(one).items()}
        assert result["functions"] == expected
        assert selves(result["folded"]) == summed(
            (collapse_repeats(stack), count) for stack, count in one.items()
        )
        pairs = {s: [one.counts.get(s, 0), two.counts.get(s, 0)] for s in {*one, *two}}
        assert result["compared"] == pairs
        assert result["comparedTotals"] == [one.total(), two.total()]
        assert selves(result["callers"]) == callers_of(one, case["fn"])
        assert selves(result["callees"]) == callees_of(one, case["fn"])
        regex = re.compile(case["pattern"], re.IGNORECASE)
        hits = (c for s, c in one.items() if any(regex.search(f) for f in s.split(";")))
        assert result["matched"] == sum(hits)
        assert result["pathsOk"] and result["unique"]


def test_a_deep_unknown_chain_folds_into_one_marked_frame(node: Path) -> None:
    chain = ";".join(["[unknown]"] * 127)
    profile = Folded(
        {
            f"mystery;{chain};leaf": 3,
            "mystery;[unknown];[unknown];short": 2,  # part of the long run's first frames
            "other;[unknown];[unknown];[unknown];end": 1,  # a run of 3: kept as it is
            "main;work": 500,
        }
    )
    case = {"doc": json.loads(profile_json(profile)), "other": json.loads(profile_json(Folded()))}
    (result,) = run_model(node, [{**case, "fn": "work", "pattern": "x"}])
    assert result["runs"] == [["mystery;[unknown]", 127, 127]]
    assert selves(result["foldedLong"]) == {
        "mystery;[unknown];leaf": 3,
        "mystery;[unknown];short": 2,
        "other;[unknown];[unknown];[unknown];end": 1,
        "main;work": 500,
    }
    assert selves(result["stacks"]) == profile.counts  # the data itself is unchanged
