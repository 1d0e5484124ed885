"""The optional C extension; everything else about the build is in pyproject.toml.

``optional=True``: without a C compiler or Python's headers the build prints one
warning and installs the pure-Python collapsers, which are complete on their own.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "flamed.collapse._speedups",
            sources=["collapse/_speedups.c"],
            optional=True,
        )
    ]
)
