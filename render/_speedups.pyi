from collections.abc import Callable

from flamed.collapse.folded import Count
from flamed.render.layout import Frame
from flamed.render.svg import Look

def merge_frames(
    entries: list[tuple[str, Count, float | None]],
    minimum: float,
    differential: bool,
    frame_type: type[Frame],
    check_order: bool = False,
    /,
) -> list[Frame] | None: ...
def frame_elements(
    frames: list[Frame],
    start: int,
    stop: int,
    looks: dict[str | None, Look],
    describe: Callable[[Frame], Look],
    rows: list[tuple[str, str]],
    numbers: tuple[float, float, float, float, float, bool, bool],
    strings: tuple[str, str, str, str, str],
    /,
) -> str: ...
