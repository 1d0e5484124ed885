from collections.abc import Callable

from flamed.collapse.folded import Count

class PerfFolder:
    def __init__(
        self,
        keep_event: Callable[[str], bool],
        fold_line: Callable[[str, bool], str],
        fold_other: Callable[[bytes], None],
        stacks: dict[str, Count],
        include_pid: bool,
        include_tid: bool,
        kernel: bool,
        jit: bool,
        addrs: bool,
        weights: bool,
        maps: bool = False,
    ) -> None: ...
    def fold(self, data: bytes | memoryview, /) -> int: ...

class RunFolder:
    def __init__(
        self,
        fold_run: Callable[[bytes], tuple[str, int] | bool],
        fold_line: Callable[[bytes, bool], tuple[str, ...]],
        counts: dict[str, int],
        include_offset: bool,
    ) -> None: ...
    def fold(self, text: bytes | memoryview, carry: bool, /) -> int: ...

def fold_folded(
    text: bytes | memoryview,
    counts: dict[str, Count],
    in_order: list[tuple[str, Count]] | None,
    other: Callable[[bytes], None],
    /,
) -> None: ...
def folded_bytes(counts: dict[str, Count], /) -> bytes | None: ...
def perf_cut_runs(
    text: bytes,
    now: float,
    size: float,
    offset: float,
    max_late: float,
    since: float,
    until: float,
    /,
) -> tuple[list[tuple[int, int, int]], list[int]]: ...
