"""Drift statistics of many columns at once, against the formulas column by column."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import chdtrc

from streamdrift.core.stats import EPS, column_stats, layout


def _one_column(w: np.ndarray, r: np.ndarray, values: np.ndarray, ordered: bool) -> dict[str, float]:
    """The module docstring's statistics for one column, written out plainly."""
    w, r = w.astype(float), r.astype(float)
    pw, pr = w / max(w.sum(), 1), r / max(r.sum(), 1)
    fw, fr = np.maximum(pw, EPS), np.maximum(pr, EPS)
    m = (pw + pr) / 2
    js = (
        sum((a * np.log2(a / c) if a > 0 else 0) + (b * np.log2(b / c) if b > 0 else 0) for a, b, c in zip(pw, pr, m))
        / 2
    )
    n_w, n_r = w.sum(), r.sum()
    k1, k2 = np.sqrt(n_r / max(n_w, 1)), np.sqrt(n_w / max(n_r, 1))
    seen = (w + r) > 0
    chi2 = float(np.sum((k1 * w[seen] - k2 * r[seen]) ** 2 / (w + r)[seen]))
    df = int(seen.sum()) - 1
    gap = np.abs(np.cumsum(np.where(values, pw, 0)) - np.cumsum(np.where(values, pr, 0)))[values]
    return {
        "psi": float(np.sum((fw - fr) * np.log(fw / fr))),
        "js": js,
        "chi2": chi2,
        "df": df,
        "p_value": float(chdtrc(df, chi2)) if df > 0 else 1.0,
        "n": n_w,
        "ks": float(gap.max(initial=0)) if ordered else np.nan,
        "wasserstein": float(gap.sum() / max(values.sum(), 1)) if ordered else np.nan,
    }


@pytest.mark.parametrize("seed", range(20))
def test_columns_at_once_equal_the_formulas_column_by_column(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 15, rng.integers(1, 12))
    n = int(sizes.sum())
    ref = (rng.integers(0, 60, n) * (rng.random(n) < 0.8)).astype(np.int32)
    window = rng.integers(0, 60, n) * (rng.random(n) < rng.random())
    ordered = rng.random(len(sizes)) < 0.6
    values = rng.random(n) < 0.85
    stats = column_stats(window, ref, sizes, ordered, values)
    again = column_stats(window, ref, sizes, ordered, values, layout(sizes, values))
    assert all(stats[k].tobytes() == again[k].tobytes() for k in stats)  # a kept layout changes nothing
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    for j, (a, size) in enumerate(zip(starts, sizes)):
        expected = _one_column(window[a : a + size], ref[a : a + size], values[a : a + size], bool(ordered[j]))
        for key, value in expected.items():
            assert stats[key][j] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (key, j)
