"""A hot/cold profile: a target's CPU samples and its off-CPU time as one profile.

Brendan Gregg's hot/cold flame graph puts what ran and what waited side by side,
in one unit. CPU samples become microseconds (each stands for ``1e6 / frequency``
of them: perf samples each CPU at that rate), off-CPU counts already are; every
frame of an off-CPU stack is marked ``_[o]`` (an annotation, like perf's ``_[k]``,
stripped from the names shown), so the two never share a frame and the
``hotcold`` palette colours them apart: warm for CPU, blue for off-CPU.
"""

from __future__ import annotations

from flamed.collapse.folded import Folded

OFF_CPU_MARK = "_[o]"


def mark_off_cpu(stack: str) -> str:
    """Every frame of the stack marked off-CPU."""
    return ";".join(frame + OFF_CPU_MARK for frame in stack.split(";"))


def hot_cold(cpu: Folded, offcpu: Folded, us_per_sample: float) -> Folded:
    """Both profiles in microseconds, the off-CPU frames marked (counts rounded to 1 us)."""
    out = Folded()
    for stack, count in cpu.items():
        out.add(stack, round(count * us_per_sample))
    for stack, count in offcpu.items():
        out.add(mark_off_cpu(stack), count)
    return out
