"""The C accelerator of decode.py; everything else is in pyproject.toml.

``optional``: without a C compiler the package still installs and decodes
in Python (decode.SPEEDUPS tells which), only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamdrift.core._speedups",
            ["src/streamdrift/core/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
