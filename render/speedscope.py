"""Folded stacks as a speedscope file (https://www.speedscope.app/file-format-schema.json).

One "sampled" profile: each distinct stack is one sample, its frames root
first as indices into the shared frame table, weighted by its count (unit
"none": the counts are samples). The stacks come in bytewise order, as folded
text lists them. speedscope opens the file as is (drop it on the page, or
``speedscope profile.json``).
"""

from __future__ import annotations

import json

from flamed.collapse.folded import Count, Folded
from flamed.render.jsonprofile import SEPARATOR, readable

SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def speedscope_json(folded: Folded, name: str, exporter: str = "flamed") -> bytes:
    """``folded`` as a speedscope file (UTF-8 JSON) whose profile is called ``name``."""
    frames: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[Count] = []
    for stack, count in folded.sorted_items():
        names = (readable(frame) for frame in stack.split(SEPARATOR))
        samples.append([frames.setdefault(frame, len(frames)) for frame in names])
        weights.append(count)
    profile = {
        "type": "sampled",
        "name": name,
        "unit": "none",
        "startValue": 0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }
    document = {
        "$schema": SCHEMA,
        "exporter": exporter,
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": [{"name": frame} for frame in frames]},
        "profiles": [profile],
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")
