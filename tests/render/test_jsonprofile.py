"""The web page's JSON call tree: it reads back as the stacks that went in, and stays compact.

``stacks_of`` below is an independent reader written from the format's
description in ``render/jsonprofile.py`` (parent = the last node one level up,
a node's stack = the names on its path); the page's own reader is tested in
``tests/daemon/test_viewer_model.py`` under Node.js.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flamed.collapse.folded import Count, Folded, decode
from flamed.render.jsonprofile import profile_json


def stacks_of(document: dict[str, Any]) -> dict[str, Count]:
    """Every node with samples of its own, as ``stack -> self``."""
    names, tree = document["names"], document["tree"]
    path: list[str] = []
    stacks: dict[str, Count] = {}
    for name, depth, own in zip(tree["name"], tree["depth"], tree["self"], strict=True):
        assert 1 <= depth <= len(path) + 1, "a node deeper than one below its parent"
        del path[depth - 1 :]
        path.append(names[name])
        if own:
            stack = ";".join(path)
            assert stack not in stacks, f"{stack!r} is two nodes"
            stacks[stack] = own
    return stacks


def read(folded: Folded, **meta: object) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(profile_json(folded, meta))
    return document


def test_a_small_tree_in_preorder_with_children_by_name() -> None:
    document = read(Folded({"main;b": 3, "main;a;x": 2, "main": 1, "z": 4}))
    assert document["names"] == ["main", "a", "x", "b", "z"]
    assert document["tree"] == {
        "name": [0, 1, 2, 3, 4],
        "depth": [1, 2, 3, 2, 1],
        "self": [1, 0, 2, 3, 4],
    }
    assert (document["version"], document["unit"], document["total"]) == (1, "samples", 10)


def test_the_callers_fields_go_beside_the_tree() -> None:
    document = read(Folded({"a": 1}), target="web", start=10.0, end=20.0, type="cpu")
    assert (document["target"], document["start"], document["end"]) == ("web", 10.0, 20.0)
    assert document["type"] == "cpu"


def test_a_frame_that_extends_another_name_does_not_split_its_node() -> None:
    # Sorted as text, "a;b!" falls between "a;b" and "a;b;c": sorted by frames it does not.
    folded = Folded({"a;b": 1, "a;b!": 2, "a;b;c": 3, "a;b;c!": 4, "a;b;c;d": 5})
    document = read(folded)
    assert stacks_of(document) == folded.counts
    assert len(document["tree"]["name"]) == 6  # a, b, c, d, c!, b!


def test_names_that_were_not_utf8_read_as_replacement_characters() -> None:
    name = decode(b"bad\xff\xfename")
    body = profile_json(Folded({f"main;{name}": 2, "main;</script><img onerror=x>": 1}))
    body.decode("utf-8")  # strict: no lone surrogates reach the wire
    document = json.loads(body)
    assert "bad\ufffd\ufffdname" in document["names"]
    assert "</script><img onerror=x>" in document["names"]


def test_an_empty_profile_is_an_empty_tree() -> None:
    document = read(Folded())
    assert document["names"] == [] and document["tree"]["name"] == [] and document["total"] == 0


def test_shared_prefixes_are_sent_once() -> None:
    frames = [f"f{depth}" for depth in range(40)]
    folded = Folded({";".join([*frames, f"leaf{n}"]): n + 1 for n in range(200)})
    document = read(folded)
    assert len(document["tree"]["name"]) == 40 + 200
    stacks_text = sum(len(stack) + 4 for stack in folded.counts)
    assert len(profile_json(folded)) < stacks_text / 5


frame_names = st.text(
    alphabet=st.characters(exclude_characters=";\n", exclude_categories=["Cs"]), max_size=6
)


@given(
    st.dictionaries(
        st.lists(frame_names, min_size=1, max_size=6).map(";".join),
        st.one_of(st.integers(1, 10**12), st.floats(0.5, 1e9)),
        max_size=40,
    )
)
def test_any_profile_reads_back(counts: dict[str, Count]) -> None:
    folded = Folded(dict(counts))
    document = read(folded)
    assert stacks_of(document) == folded.counts
    assert document["total"] == folded.total()
