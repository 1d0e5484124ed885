"""Symbol tidying shared by every collapser (one place for each rule)."""

from __future__ import annotations

from flamed.collapse.common import TYPE_CHECKING, LazyPatterns

if TYPE_CHECKING:
    import re
    from typing import ClassVar


class _Patterns(LazyPatterns):
    """Rust's legacy mangling, as printed by demanglers that do not know it:
    `_$LT$core..result..Result$LT$T$C$$u20$E$GT$$GT$::and_then::h47fa4b8545196b9b`.
    Compiled at first use (most names are not Rust's)."""

    RUST_HASH: re.Pattern[str]
    LLVM_SUFFIX: re.Pattern[str]
    RUST_ESCAPE: re.Pattern[str]

    SOURCES: ClassVar[dict[str, tuple[str | bytes, int]]] = {
        "RUST_HASH": (r"::h[0-9a-fA-F]{16}$", 0),  # any case, as inferno
        "LLVM_SUFFIX": (r"\.llvm\.\d+$", 0),
        "RUST_ESCAPE": (r"\$(LT|GT|C|RF|BP|LP|RP|SP|u[0-9a-f]{1,6})\$", 0),
    }


P = _Patterns()
RUST_NAMED = {
    "LT": "<",
    "GT": ">",
    "C": ",",
    "RF": "&",
    "BP": "*",
    "LP": "(",
    "RP": ")",
    "SP": "@",
}


def _rust_unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    named = RUST_NAMED.get(code)
    if named is not None:
        return named
    point = int(code[1:], 16)
    if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
        return match.group(0)  # no such character (chr() would raise): kept as written
    char = chr(point)
    # A `;` would split the frame in folded output.
    return ":" if char == ";" else char


def tidy_rust(name: str) -> str:
    """Tidy a Rust legacy-mangled name; anything else comes back unchanged.

    Drops a `.llvm.N` suffix and the `::h<16 hex>` hash, decodes the `$..$`
    escapes and turns `..` into `::`; a leading `_` before an escape goes.
    """
    if "$" not in name and "::h" not in name:
        return name
    stripped = P.LLVM_SUFFIX.sub("", name)
    hashless = P.RUST_HASH.sub("", stripped)
    if hashless == stripped and not P.RUST_ESCAPE.search(name):
        return name
    if hashless.startswith("_$"):
        hashless = hashless[1:]
    return P.RUST_ESCAPE.sub(_rust_unescape, hashless).replace("..", "::")
