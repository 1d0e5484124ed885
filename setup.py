"""The optional C extensions; everything else about the build is in pyproject.toml.

``optional=True``: without a C compiler or Python's headers the build prints one
warning and installs the pure-Python code, which is complete on its own.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(name, sources=[source], optional=True)
        for name, source in [
            ("flamed.collapse._speedups", "collapse/_speedups.c"),
            ("flamed.render._speedups", "render/_speedups.c"),
        ]
    ]
)
