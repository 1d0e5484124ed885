"""The Python view of a folded stack: Python functions where the interpreter was.

CPython 3.12 and later, run with ``-X perf`` (or ``PYTHONPERFSUPPORT=1``), puts a
small trampoline before the evaluation of every Python function and names it in
the process's perf map as ``py::QUALNAME:FILENAME``. perf's stacks then hold the
Python frames, each followed (towards the leaf) by the C functions that evaluate
it and call the next one: ``_PyEval_EvalFrameDefault``, ``PyObject_Vectorcall``,
``_PyFunction_Vectorcall``, ``_PyEval_Vector``, ...

The view keeps what a Python programmer reads: each ``py::`` frame becomes
``QUALNAME (FILENAME)`` (the form py-spy writes), and the interpreter's own frames
*between two Python frames* (``INTERPRETER_FRAMES``) go. Everything else stays:
the process name and the start-up frames before the first Python frame, native
extension and library frames anywhere (``builtin_sorted``, ``_sre`` functions,
numpy's C code), and what follows the last Python frame, where the time was
spent (the interpreter's loop itself, or native code and the kernel below it).
Stacks without a ``py::`` frame are left as they are.
"""

from __future__ import annotations

from flamed.collapse.folded import Count

PY_PREFIX = "py::"
JIT_SUFFIX = "_[j]"
"""``--jit`` marks perf-map frames; a Python frame is shown without it."""
INLINED_SUFFIX = "_[i]"
"""``--inline`` marks inlined functions; an interpreter function inlined is one all the same."""

INTERPRETER_FRAMES = frozenset(
    {
        # the evaluation loop and its entry points
        "_PyEval_EvalFrameDefault",
        "_PyEval_EvalFrame",
        "_PyEval_Vector",
        "PyEval_EvalCode",
        "PyEval_EvalCodeEx",
        "py_trampoline_evaluator",
        # the vectorcall protocol, one Python function calling another
        "PyObject_Vectorcall",
        "PyObject_VectorcallMethod",
        "PyObject_VectorcallDict",
        "_PyObject_VectorcallTstate",
        "_PyObject_Vectorcall",
        "_PyFunction_Vectorcall",
        "_PyVectorcall_Call",
        "method_vectorcall",
        # calls through tp_call and the generic call helpers
        "PyObject_Call",
        "_PyObject_Call",
        "_PyObject_Call_Prepend",
        "_PyObject_FastCallDictTstate",
        "_PyObject_MakeTpCall",
        "PyObject_CallOneArg",
        "PyObject_CallObject",
        "slot_tp_call",
        "slot_tp_init",
        "type_call",
        "gen_send_ex",
        "gen_send_ex2",
        "gen_iternext",
    }
)
"""CPython functions that only carry one Python function's call to the next. Those
between two Python frames are left out of the view."""


def python_view(stack: str) -> str:
    """``stack`` (root first, ``;``-separated) in the Python view; itself without ``py::``."""
    if PY_PREFIX not in stack:
        return stack
    frames = stack.split(";")
    python = [is_python(frame) for frame in frames]
    if not any(python):
        return stack
    first = python.index(True)
    last = len(python) - 1 - python[::-1].index(True)
    kept: list[str] = []
    for index, frame in enumerate(frames):
        if python[index]:
            kept.append(python_frame(frame))
        elif not (first < index < last and is_interpreter(frame)):
            kept.append(frame)
    return ";".join(kept)


def python_counts(counts: dict[str, Count]) -> dict[str, Count]:
    """Stack counts in the Python view: stacks that become the same are added up."""
    viewed: dict[str, Count] = {}
    for stack, count in counts.items():
        key = python_view(stack)
        viewed[key] = viewed.get(key, 0) + count
    return viewed


def is_python(frame: str) -> bool:
    return frame.startswith(PY_PREFIX)


def is_interpreter(frame: str) -> bool:
    return frame.removesuffix(INLINED_SUFFIX) in INTERPRETER_FRAMES


def python_frame(frame: str) -> str:
    """``py::QUALNAME:FILENAME`` -> ``QUALNAME (FILENAME)``; a name without a file as is."""
    name = frame[len(PY_PREFIX) :].removesuffix(JIT_SUFFIX)
    qualname, colon, filename = name.partition(":")
    return f"{qualname} ({filename})" if colon and filename else qualname
