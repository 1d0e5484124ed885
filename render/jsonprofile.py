"""A profile as compact JSON for the web page: a table of names and the call tree in preorder.

The page draws its graphs, top table and sandwich from this; the SVG stays for
``curl`` and downloads. Version 1 reads::

    {"version": 1, "unit": "samples", "total": 5744,
     "names": ["main", "burn_alpha", "burn_beta"],
     "tree": {"name": [0, 1, 2], "depth": [1, 2, 2], "self": [0, 4300, 1444]},
     ...the caller's fields (target, start, end, ...)}

The tree holds each distinct stack prefix once (a node), in preorder with the
children of a node in name order: ``name`` indexes ``names``, ``depth`` is 1
for a root frame (the implicit "all" is depth 0), ``self`` is the samples
whose stack ends at the node. A node's total is its self plus its children's
totals, which the reader sums; a node's parent is the last node before it one
level up. Sharing prefixes makes this smaller than a list of stacks, and gzip
(the HTTP layer's) takes the rest. Frame names are text: bytes that were not
UTF-8 read as U+FFFD (:func:`readable`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from operator import itemgetter

from flamed.collapse.folded import Count, Folded, encode

VERSION = 1
SEPARATOR = ";"


def readable(name: str) -> str:
    """A frame name as JSON can carry it: undecodable input bytes become U+FFFD."""
    if name.isascii():
        return name
    return encode(name).decode("utf-8", "replace")


def shared_prefix(one: list[str], two: list[str]) -> int:
    """How many leading frames ``one`` and ``two`` have in common."""
    count = 0
    for first, second in zip(one, two, strict=False):
        if first != second:
            break
        count += 1
    return count


class CallTree:
    """The preorder columns of a call tree, filled from stacks given in frame order."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.name: list[int] = []
        self.depth: list[int] = []
        self.self: list[Count] = []
        self._previous: list[str] = []

    @property
    def names(self) -> list[str]:
        """Each frame name once, in the order of first use (``name`` indexes this)."""
        return [readable(frame) for frame in self.index]

    def add(self, frames: list[str], count: Count) -> None:
        """One stack; stacks must come sorted by their list of frames (so prefixes group)."""
        common = shared_prefix(frames, self._previous)
        index = self.index
        self.name.extend([index.setdefault(frame, len(index)) for frame in frames[common:]])
        self.depth.extend(range(common + 1, len(frames) + 1))
        self.self.extend([0] * (len(frames) - common))
        self.self[-1] += count
        self._previous = frames

    def columns(self) -> dict[str, list[int] | list[Count]]:
        return {"name": self.name, "depth": self.depth, "self": self.self}


def call_tree(folded: Folded) -> CallTree:
    tree = CallTree()
    pairs = ((stack.split(SEPARATOR), count) for stack, count in folded.items())
    for frames, count in sorted(pairs, key=itemgetter(0)):
        tree.add(frames, count)
    return tree


def profile_json(folded: Folded, meta: Mapping[str, object] | None = None) -> bytes:
    """``folded`` as version-1 JSON (UTF-8), with ``meta``'s fields beside the tree."""
    tree = call_tree(folded)
    document = {
        "version": VERSION,
        **(meta or {}),
        "unit": "samples",
        "total": folded.total(),
        "names": tree.names,
        "tree": tree.columns(),
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")
