"""Two independent pprof decoders for the tests, both reduced to one plain summary.

1. Python ``protobuf`` with ``profile.proto`` compiled here by ``grpcio-tools``.
   The schema below is written from the public definition of pprof's
   ``perftools.profiles`` messages (field names and numbers as published).
2. The npm package ``pprof-format`` run by the machine's Node.js. It is
   installed into pytest's cache folder at run time; tests skip, saying why,
   where Node.js or the npm registry cannot be reached.
"""

from __future__ import annotations

import gzip
import importlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.npm import npm_package

PROTO_NAME = "flamed_test_profile.proto"
PROFILE_PROTO = """\
syntax = "proto3";

package perftools.profiles;

message Profile {
  repeated ValueType sample_type = 1;
  repeated Sample sample = 2;
  repeated Mapping mapping = 3;
  repeated Location location = 4;
  repeated Function function = 5;
  repeated string string_table = 6;
  int64 drop_frames = 7;
  int64 keep_frames = 8;
  int64 time_nanos = 9;
  int64 duration_nanos = 10;
  ValueType period_type = 11;
  int64 period = 12;
  repeated int64 comment = 13;
  int64 default_sample_type = 14;
  int64 doc_url = 15;
}

message ValueType {
  int64 type = 1;
  int64 unit = 2;
}

message Sample {
  repeated uint64 location_id = 1;
  repeated int64 value = 2;
  repeated Label label = 3;
}

message Label {
  int64 key = 1;
  int64 str = 2;
  int64 num = 3;
  int64 num_unit = 4;
}

message Mapping {
  uint64 id = 1;
  uint64 memory_start = 2;
  uint64 memory_limit = 3;
  uint64 file_offset = 4;
  int64 filename = 5;
  int64 build_id = 6;
  bool has_functions = 7;
  bool has_filenames = 8;
  bool has_line_numbers = 9;
  bool has_inline_frames = 10;
}

message Location {
  uint64 id = 1;
  uint64 mapping_id = 2;
  uint64 address = 3;
  repeated Line line = 4;
  bool is_folded = 5;
}

message Line {
  uint64 function_id = 1;
  int64 line = 2;
  int64 column = 3;
}

message Function {
  uint64 id = 1;
  int64 name = 2;
  int64 system_name = 3;
  int64 filename = 4;
  int64 start_line = 5;
}
"""

NODE_DECODER = """\
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';

const n = (v) => Number(v);
// int64 fields exactly: pprof-format hands large ones back as unsigned bigints
const i64 = (v) => BigInt.asIntN(64, BigInt(v)).toString();
const p = Profile.decode(gunzipSync(readFileSync(0)));
const s = p.stringTable.strings;
const out = {
  string_table: s,
  sample_types: p.sampleType.map((t) => [s[n(t.type)], s[n(t.unit)]]),
  period_type: p.periodType ? [s[n(p.periodType.type)], s[n(p.periodType.unit)]] : null,
  period: n(p.period),
  time_nanos: i64(p.timeNanos),
  duration_nanos: i64(p.durationNanos),
  mappings: p.mapping.map((m) => ({ id: n(m.id), has_functions: m.hasFunctions })),
  locations: p.location.map((l) => ({
    id: n(l.id), mapping_id: n(l.mappingId), functions: l.line.map((x) => n(x.functionId)),
  })),
  functions: p.function.map((f) => ({ id: n(f.id), name: s[n(f.name)] })),
  samples: p.sample.map((x) => ({
    location_ids: x.locationId.map(n),
    values: x.value.map(i64),
    labels: x.label.map((l) => [s[n(l.key)], s[n(l.str)]]),
  })),
};
process.stdout.write(JSON.stringify(out));
"""


@dataclass
class Decoded:
    """What a decoder read, in the same plain shape for both decoders."""

    string_table: list[str]
    sample_types: list[tuple[str, str]]
    period_type: tuple[str, str] | None
    period: int
    time_nanos: int
    duration_nanos: int
    mappings: list[dict[str, Any]]
    locations: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def folded(self) -> dict[str, int]:
        """Back to folded stacks (root first), counts from the first value."""
        names = {f["id"]: f["name"] for f in self.functions}
        frames = {loc["id"]: names[loc["functions"][0]] for loc in self.locations}
        out: dict[str, int] = {}
        for sample in self.samples:
            stack = ";".join(frames[ident] for ident in reversed(sample["location_ids"]))
            out[stack] = out.get(stack, 0) + sample["values"][0]
        return out


# -- Python protobuf -----------------------------------------------------------------------


@cache
def profile_module(folder: str) -> ModuleType:
    """``profile.proto`` compiled with grpcio-tools into ``folder`` and imported."""
    from grpc_tools import protoc

    root = Path(folder)
    (root / PROTO_NAME).write_text(PROFILE_PROTO, encoding="utf-8")
    code = protoc.main(["protoc", f"-I{root}", f"--python_out={root}", PROTO_NAME])
    assert code == 0, "protoc failed on the test's profile.proto"
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(PROTO_NAME.removesuffix(".proto") + "_pb2")
    finally:
        sys.path.remove(str(root))


def decode_protobuf(module: ModuleType, data: bytes) -> Decoded:
    profile = module.Profile()
    profile.ParseFromString(gzip.decompress(data))
    s = list(profile.string_table)
    return Decoded(
        string_table=s,
        sample_types=[(s[t.type], s[t.unit]) for t in profile.sample_type],
        period_type=(
            (s[profile.period_type.type], s[profile.period_type.unit])
            if profile.HasField("period_type")
            else None
        ),
        period=profile.period,
        time_nanos=profile.time_nanos,
        duration_nanos=profile.duration_nanos,
        mappings=[{"id": m.id, "has_functions": m.has_functions} for m in profile.mapping],
        locations=[
            {"id": x.id, "mapping_id": x.mapping_id, "functions": [i.function_id for i in x.line]}
            for x in profile.location
        ],
        functions=[{"id": f.id, "name": s[f.name]} for f in profile.function],
        samples=[
            {
                "location_ids": list(x.location_id),
                "values": list(x.value),
                "labels": [(s[label.key], s[label.str]) for label in x.label],
            }
            for x in profile.sample
        ],
    )


# -- Node.js pprof-format ------------------------------------------------------------------


def node_decoder(cache_dir: Path) -> Path:
    """The decoding script, with pprof-format installed beside it; skips when impossible."""
    npm_package(cache_dir, "pprof-format", "2")
    script = cache_dir / "decode.mjs"
    script.write_text(NODE_DECODER, encoding="utf-8")
    return script


def decode_node(script: Path, data: bytes) -> Decoded:
    done = subprocess.run(
        ["node", str(script)], input=data, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    raw = json.loads(done.stdout)
    raw["sample_types"] = [tuple(t) for t in raw["sample_types"]]
    raw["period_type"] = tuple(raw["period_type"]) if raw["period_type"] else None
    raw["time_nanos"] = int(raw["time_nanos"])
    raw["duration_nanos"] = int(raw["duration_nanos"])
    for sample in raw["samples"]:
        sample["values"] = [int(value) for value in sample["values"]]
        sample["labels"] = [tuple(label) for label in sample["labels"]]
    return Decoded(**raw)


# -- go tool pprof (a third reader: what pprof users will see) -----------------------------

RAW_SAMPLE = re.compile(r"\s*(-?\d+)\s+(-?\d+):((?: \d+)*) ?")
RAW_LABEL = re.compile(r"\s+(\w+):\[(.*)\]")
RAW_LOCATION = re.compile(r"\s*(\d+): 0x[0-9a-f]+ M=(\d+) (.*) :\d+ s=\d+\(.*\)")


def go_pprof_raw(data: bytes, folder: Path) -> Decoded:
    """``go tool pprof -raw`` of the profile, parsed; skips where Go is not installed."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go tool pprof is not installed (apt-get install golang-go)")
    path = folder / "profile.pb.gz"
    path.write_bytes(data)
    env = {"HOME": str(folder), "PATH": "/usr/bin:/bin", "GOCACHE": str(folder / "cache")}
    done = subprocess.run(
        [go, "tool", "pprof", "-raw", str(path)], capture_output=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return parse_raw(done.stdout.decode("utf-8"))


def parse_raw(text: str) -> Decoded:
    lines = text.splitlines()
    period = next(int(x.split()[1]) for x in lines if x.startswith("Period:"))
    period_type = next(tuple(x.split()[1:3]) for x in lines if x.startswith("PeriodType:"))
    header = lines[lines.index("Samples:") + 1]
    sample_types = [tuple(t.split("/")) for t in header.split()]
    samples: list[dict[str, Any]] = []
    locations: list[dict[str, Any]] = []
    functions: list[dict[str, Any]] = []
    section = ""
    for line in lines:
        if line in ("Samples:", "Locations", "Mappings"):
            section = line
        elif section == "Samples:" and (m := RAW_SAMPLE.fullmatch(line)):
            ids = [int(i) for i in m.group(3).split()]
            values = [int(m.group(1)), int(m.group(2))]
            samples.append({"location_ids": ids, "values": values, "labels": []})
        elif section == "Samples:" and samples and (m := RAW_LABEL.fullmatch(line)):
            samples[-1]["labels"].append((m.group(1), m.group(2)))
        elif section == "Locations" and (m := RAW_LOCATION.fullmatch(line)):
            ident = int(m.group(1))
            locations.append({"id": ident, "mapping_id": int(m.group(2)), "functions": [ident]})
            functions.append({"id": ident, "name": m.group(3)})
    return Decoded(
        string_table=[""],
        sample_types=sample_types,  # type: ignore[arg-type]
        period_type=period_type,  # type: ignore[arg-type]
        period=period,
        time_nanos=0,
        duration_nanos=0,
        mappings=[],
        locations=locations,
        functions=functions,
        samples=samples,
    )
