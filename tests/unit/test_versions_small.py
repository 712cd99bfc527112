"""The plain-Python path of ``VersionComparison.update`` (``metrics/versions_small.py``) gives the general
path's state, byte for byte, and the same reports, on seeded streams cut into small batches."""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core.metrics import versions as versions_module
from streamdrift.core.metrics.versions import VersionComparison
from streamdrift.core.metrics.versions_small import update_small
from streamdrift.core.state import encode_tree


def _stream(seed: int, n: int) -> tuple[list, np.ndarray]:
    """Versions (mostly two; others, None among them, come later and some past the cap) and correctness."""
    rng = np.random.default_rng(seed)
    names = np.array(["v1", "v2", "v3", "v4", "v5", "none"])
    drawn = rng.choice(names, size=n, p=[0.42, 0.42, 0.05, 0.05, 0.04, 0.02])
    drawn[: n // 3] = np.where(rng.random(n // 3) < 0.5, "v1", "v2")  # the first third: two versions
    versions = [None if v == "none" else str(v) for v in drawn.tolist()]
    return versions, rng.random(n) < 0.8


def _bytes(comparison: VersionComparison) -> bytes:
    return encode_tree(comparison.state(), "c")


def _feed(comparison: VersionComparison, stream: tuple[list, np.ndarray], sizes: list[int]) -> list[dict]:
    versions, correct = stream
    reports, at = [], 0
    for size in sizes:
        if at >= len(versions):
            break
        comparison.update(versions[at : at + size], correct[at : at + size])
        reports.append(comparison.report("window"))
        at += size
    assert at >= len(versions)
    return reports


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_versions", [10, 3])
def test_small_batches_give_the_general_paths_state(
    seed: int, max_versions: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _stream(seed, 3000)
    sizes = np.random.default_rng(100 + seed).integers(1, 21, size=3000).tolist()  # 1 to 20 rows: small and general

    def make() -> VersionComparison:
        return VersionComparison(window_size=160, subwindows=4, max_versions=max_versions)

    calls = {"small": 0, "starts": 0}

    def counted(comparison: VersionComparison, *args: object) -> bool:
        starts = comparison.rows % comparison.slot_size == 0
        done = update_small(comparison, *args)  # type: ignore[arg-type]
        calls["small"] += done
        calls["starts"] += done and starts
        return done

    monkeypatch.setattr(versions_module, "update_small", counted)
    fast = make()
    fast_reports = _feed(fast, stream, sizes)
    monkeypatch.setattr(versions_module, "update_small", lambda *args: False)
    general = make()
    general_reports = _feed(general, stream, sizes)
    whole = make()  # one batch: the general path alone, as batch-split invariance says
    _feed(whole, stream, [3000])

    assert calls["small"] > 50 and calls["starts"] > 0  # both kinds of small batch were taken
    assert fast_reports == general_reports
    assert _bytes(fast) == _bytes(general) == _bytes(whole)
    assert fast.counts.dtype == general.counts.dtype == np.int64


def test_what_the_small_path_leaves_to_the_general_one() -> None:
    comparison = VersionComparison(window_size=8, subwindows=2)
    comparison.update(["a"], np.array([True]))
    before = _bytes(comparison)
    assert not update_small(comparison, ["b"], np.array([True]))  # not registered
    assert not update_small(comparison, [None], np.array([True]))  # None: its key is "__none__"
    assert not update_small(comparison, ["a"] * 4, np.array([True] * 4))  # crosses the sub-window's end
    assert not update_small(comparison, ["a"], [True])  # type: ignore[arg-type]  # not a bool array
    assert not update_small(comparison, [], np.array([], dtype=bool))
    assert _bytes(comparison) == before
    assert update_small(comparison, ["a"] * 3, np.array([True, False, True]))  # fills the sub-window exactly
    assert comparison.counts[-1].tolist() == [[4, 3]]
