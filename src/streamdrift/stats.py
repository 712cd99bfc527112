"""Drift statistics of binned histograms, for many columns at once.

All columns' bins lie side by side in one flat vector; ``sizes`` says how many
bins each column has. Every statistic is computed for every column with a
handful of numpy calls (``np.add.reduceat`` over the column segments), never
a Python loop over columns.

Statistics, per column, of a window histogram against the reference:

- ``psi``: population stability index, sum((w - r) ln(w / r)), shares floored at 1e-4;
- ``js``: Jensen-Shannon divergence in bits, in [0, 1];
- ``chi2`` / ``df`` / ``p_value``: the two-sample chi-square test of homogeneity
  (window counts against reference counts, so the reference's own sampling
  noise is accounted for); bins empty on both sides do not count;
- ``ks``: the largest gap between the two binned CDFs (ordered columns only);
- ``wasserstein``: the area between the binned CDFs, in units of the
  reference's quantiles (ordered columns only: 0 = same, 1 = everything moved
  across the whole reference range).

Examples
--------
>>> import numpy as np
>>> ref = np.array([50, 50, 0, 25, 25, 50])      # two columns: 3 bins, 3 bins
>>> win = np.array([10, 30, 0, 40, 40, 20])
>>> s = column_stats(win, ref, np.array([3, 3]), np.array([True, False]))
>>> [round(float(v), 4) for v in s["psi"]], [round(float(v), 4) for v in s["p_value"]]
([0.2747, 0.4159], [0.0069, 0.0001])
>>> s["df"].tolist(), [round(float(v), 3) for v in s["ks"]]
([1, 2], [0.25, nan])
"""

from __future__ import annotations

import numpy as np
from scipy.special import chdtrc, chdtri  # chi2.sf / chi2.isf without scipy.stats' argument checks

EPS = 1e-4


def starts_of(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)


def column_stats(window: np.ndarray, ref: np.ndarray, sizes: np.ndarray, ordered: np.ndarray,
                 value_bins: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every statistic for every column.

    Parameters
    ----------
    window, ref
        Flat bin counts of the window and of the reference.
    sizes
        Bins per column.
    ordered
        Per column: whether its bins are ordered (numeric), so CDF statistics apply.
    value_bins
        Flat mask of the bins that hold values (not missing/invalid); the CDF
        statistics use only those. Default: all bins.
    """
    starts = starts_of(sizes)
    w = window.astype(np.float64)
    r = ref.astype(np.float64)
    n_w = np.add.reduceat(w, starts)
    n_r = np.add.reduceat(r, starts)
    pw = w / np.repeat(np.maximum(n_w, 1), sizes)
    pr = r / np.repeat(np.maximum(n_r, 1), sizes)

    fw, fr = np.maximum(pw, EPS), np.maximum(pr, EPS)
    psi = np.add.reduceat((fw - fr) * np.log(fw / fr), starts)

    m = (pw + pr) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        js_terms = np.where(pw > 0, pw * np.log2(pw / m), 0) + np.where(pr > 0, pr * np.log2(pr / m), 0)
    js = np.add.reduceat(js_terms, starts) / 2

    k1 = np.repeat(np.sqrt(n_r / np.maximum(n_w, 1)), sizes)
    k2 = np.repeat(np.sqrt(n_w / np.maximum(n_r, 1)), sizes)
    both = w + r
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(both > 0, (k1 * w - k2 * r) ** 2 / both, 0)
    chi2 = np.add.reduceat(terms, starts)
    df = np.add.reduceat((both > 0).astype(np.int64), starts) - 1
    p_value = np.where(df > 0, chdtrc(np.maximum(df, 1), chi2), 1.0)

    mask = np.ones_like(pw, dtype=bool) if value_bins is None else value_bins
    cw = np.cumsum(np.where(mask, pw, 0))
    cr = np.cumsum(np.where(mask, pr, 0))
    before = np.concatenate(([0.0], (cw - cr)[starts[1:] - 1])) if len(starts) > 1 else np.zeros(1)
    gap = np.abs((cw - cr) - np.repeat(before, sizes))
    gap = np.where(mask, gap, 0)
    ks = np.maximum.reduceat(gap, starts)
    n_value_bins = np.add.reduceat(mask.astype(np.int64), starts)
    wasserstein = np.add.reduceat(gap, starts) / np.maximum(n_value_bins, 1)
    ks = np.where(ordered, ks, np.nan)
    wasserstein = np.where(ordered, wasserstein, np.nan)
    return {"psi": psi, "js": js, "chi2": chi2, "df": df, "p_value": p_value, "ks": ks,
            "wasserstein": wasserstein, "n": n_w}


def chi2_critical(p: float, df: np.ndarray) -> np.ndarray:
    """The chi-square value whose p-value is ``p``, per degrees of freedom."""
    return np.where(df > 0, chdtri(np.maximum(df, 1), p), np.inf)
