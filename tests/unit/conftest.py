"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from streamdrift.core import decode


@pytest.fixture(params=["c_reader", "reference"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which decoding path a test runs: the C reader (``core/_speedups.c``) or the per-message reference,
    so that one test checks both give the same result. Skips the C reader where it is not built."""
    if request.param == "reference":
        monkeypatch.setattr(decode, "_speedups", None)
    elif decode._speedups is None:
        pytest.skip("the C reader is not built")
    return str(request.param)
