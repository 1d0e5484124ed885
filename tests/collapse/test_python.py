"""The Python view of stacks with CPython's ``py::`` perf-trampoline frames.

The perf fixture ``tests/data/perf/python-trampoline.txt`` and its expected outputs
are described in ``tests/data/perf/README.md``; these tests check the rule itself.
"""

from __future__ import annotations

import pytest

from flamed.collapse.python import INTERPRETER_FRAMES, python_counts, python_view
from tests.conftest import DATA, run_flamed

CALL = "_PyEval_EvalFrameDefault;PyObject_Vectorcall;_PyFunction_Vectorcall;_PyEval_Vector"


def test_interpreter_frames_between_python_frames_go() -> None:
    stack = f"python;main;py::a:/x.py;{CALL};py_trampoline_evaluator;py::b:/y.py;{CALL}"
    assert python_view(stack) == (
        "python;main;a (/x.py);b (/y.py);_PyEval_EvalFrameDefault;PyObject_Vectorcall;"
        "_PyFunction_Vectorcall;_PyEval_Vector"
    )


def test_native_frames_between_python_frames_stay() -> None:
    stack = f"python;py::a:/x.py;{CALL};builtin_sorted;list_sort_impl;{CALL};py::key:/x.py"
    assert python_view(stack) == ("python;a (/x.py);builtin_sorted;list_sort_impl;key (/x.py)")


def test_frames_before_the_first_and_after_the_last_python_frame_stay() -> None:
    stack = "python;PyEval_EvalCode;py::<module>:/x.py;_PyEval_EvalFrameDefault;memcpy_[k]"
    assert python_view(stack) == (
        "python;PyEval_EvalCode;<module> (/x.py);_PyEval_EvalFrameDefault;memcpy_[k]"
    )


@pytest.mark.parametrize(
    "stack",
    ["python;_PyEval_EvalFrameDefault;take_gil", "", "node;JS:*py:: /x.js", "a;bpy::c"],
)
def test_stacks_without_python_frames_are_unchanged(stack: str) -> None:
    assert python_view(stack) == stack


@pytest.mark.parametrize(
    ("frame", "shown"),
    [
        ("py::f:/x.py", "f (/x.py)"),
        ("py::C.m.<locals>.<lambda>:/srv/app/x.py", "C.m.<locals>.<lambda> (/srv/app/x.py)"),
        ("py::f:<frozen importlib._bootstrap>", "f (<frozen importlib._bootstrap>)"),
        ("py::f:/odd:name.py", "f (/odd:name.py)"),
        ("py::f:/x.py_[j]", "f (/x.py)"),
        ("py::f", "f"),
        ("py::f:", "f"),
    ],
)
def test_python_frames_are_written_as_function_and_file(frame: str, shown: str) -> None:
    assert python_view(f"p;{frame}") == f"p;{shown}"


def test_inlined_interpreter_frames_go_too() -> None:
    stack = "p;py::a:/x.py;_PyEval_EvalFrameDefault;_PyEval_Vector_[i];py::b:/x.py"
    assert python_view(stack) == "p;a (/x.py);b (/x.py)"


def test_stacks_that_become_one_are_added_up() -> None:
    counts = {
        f"p;py::a:/x.py;{CALL};py::b:/x.py": 2,
        "p;py::a:/x.py;_PyEval_Vector;py::b:/x.py": 3,
        "p;other": 1,
    }
    assert python_counts(counts) == {"p;a (/x.py);b (/x.py)": 5, "p;other": 1}


def test_the_documented_list_names_the_functions_of_a_python_call() -> None:
    assert set(CALL.split(";")) <= INTERPRETER_FRAMES
    assert "py_trampoline_evaluator" in INTERPRETER_FRAMES


def test_cli_python_option() -> None:
    source = DATA / "perf" / "python-trampoline.txt"
    done = run_flamed("collapse", "perf", "--python", str(source))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (DATA / "perf" / "python-trampoline.python.folded").read_bytes()
    plain = run_flamed("collapse", "perf", str(source))
    assert b"py::foo:/src/script.py" in plain.stdout
