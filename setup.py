"""Build the optional C accelerator; all other metadata lives in pyproject.toml.

``optional=True`` makes setuptools warn and carry on when the extension cannot
be compiled (no compiler, no Python headers): trio_ws then runs on the
pure-Python masking in ``trio_ws.protocol.frames``. CI runs
``tests/test_speedups.py`` with ``CI=true``, which fails if the accelerator was
not built, so a broken build cannot go unnoticed there.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trio_ws._speedups",
            sources=["trio_ws/_speedups.c"],
            optional=True,
        )
    ]
)
