"""Extra attributes for the frames of named functions: flamegraph.pl's ``--nameattr`` file.

Each line is a function name, a tab, then tab-separated ``name=value`` pairs::

    main<TAB>title=the entry point<TAB>href=https://example.com/main.c<TAB>class=hot

``title`` replaces the frame's tooltip, ``id`` and ``class`` go on the frame's
group (``class`` beside flamed's own), ``href`` makes the frame a link
(``target``, default ``_top``), and ``g_extra`` / ``a_extra`` add attributes of
their own (``name="value" name2=value2``) to the group or the link. Values are
escaped; event handler attributes (``on...``) and ``javascript:`` links are
refused with a warning, so an attribute file cannot make the graph run script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flamed.collapse.common import get_logger
from flamed.collapse.folded import decode

NAME_RE = re.compile(r"[A-Za-z_][\w.:-]*", re.ASCII)
EXTRA_RE = re.compile(r'\s*([^\s=]+)\s*=\s*(?:"([^"]*)"|(\S*))')
UNSAFE_URL_RE = re.compile(r"\s*(javascript|vbscript|data):", re.IGNORECASE)
KNOWN = ("title", "id", "class", "href", "target", "g_extra", "a_extra")


@dataclass(frozen=True)
class FrameAttrs:
    """What one function's frames get: a tooltip, group attributes, a link."""

    title: str | None = None
    group: tuple[tuple[str, str], ...] = ()
    link: tuple[tuple[str, str], ...] = ()  # empty: no link


def parse_nameattr(data: bytes) -> dict[str, FrameAttrs]:
    """The attribute file's lines, by function name; bad pairs are warned about and skipped."""
    table: dict[str, FrameAttrs] = {}
    for line in decode(data).splitlines():
        func, tab, rest = line.partition("\t")
        if not func or not tab:
            if line.strip():
                warn("nameattr: line without a tab after the function name: %r", line[:80])
            continue
        pairs = [pair.partition("=") for pair in rest.split("\t")]
        table[func] = frame_attrs({key.strip(): value for key, _, value in pairs if key.strip()})
    return table


def frame_attrs(values: dict[str, str]) -> FrameAttrs:
    for key in values.keys() - set(KNOWN):
        warn("nameattr: unknown attribute %r skipped", key)
    group: list[tuple[str, str]] = [(key, values[key]) for key in ("id", "class") if key in values]
    group += extra_pairs(values.get("g_extra", ""))
    link: list[tuple[str, str]] = []
    href = values.get("href")
    if href and UNSAFE_URL_RE.match(href):
        warn("nameattr: %s link refused", href.split(":")[0])
    elif href:
        link = [("href", href), ("target", values.get("target") or "_top")]
        link += extra_pairs(values.get("a_extra", ""))
    return FrameAttrs(values.get("title"), tuple(safe(group)), tuple(safe(link)))


def extra_pairs(text: str) -> list[tuple[str, str]]:
    """``name="value" name2=value2`` as pairs."""
    return [(m.group(1), m.group(2) or m.group(3) or "") for m in EXTRA_RE.finditer(text)]


def safe(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs with a valid attribute name that is not an event handler."""
    kept = []
    for name, value in pairs:
        if not NAME_RE.fullmatch(name) or name.lower().startswith("on"):
            warn("nameattr: attribute %r refused", name)
        else:
            kept.append((name, value))
    return kept


def warn(message: str, *args: object) -> None:
    """Log a warning on ``flamed.render``, logging set up first where the command defers
    that (``flamed flamegraph`` does: it imports logging only when it warns)."""
    get_logger("flamed.render").warning(message, *args)
