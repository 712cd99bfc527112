"""core/stats.py pinned exactly: the tests that kill the mutants `make mutation` found surviving there.

Each states what a drift event relies on: the critical value it reports (against scipy's chi-square, an
independent implementation), the statistics of narrow counts and of windows of a single row, no warnings in
a worker's log from empty bins. docs/mutation.md lists the mutants left alive and why.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from streamdrift.core.stats import EPS, chi2_critical, column_stats, normal_critical

SIZES = np.array([4, 3])
ORDERED = np.array([True, False])


def _same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Every statistic equal, bit for bit (NaN where the other has NaN)."""
    assert got.keys() == expected.keys()
    for name in got:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_the_critical_value_is_scipy_s_chi_square_quantile_and_infinite_without_degrees_of_freedom() -> None:
    df = np.array([0, 1, 2, 7, -1])
    got = chi2_critical(1e-4, df)
    expected = [np.inf, *scipy_stats.chi2.isf(1e-4, [1, 2, 7]), np.inf]
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


def test_without_a_value_mask_every_bin_holds_values() -> None:
    window, ref = np.array([5, 0, 3, 2, 4, 1, 0]), np.array([2, 2, 3, 3, 1, 1, 8])
    default = column_stats(window, ref, SIZES, ORDERED)
    explicit = column_stats(window, ref, SIZES, ORDERED, np.ones(7, dtype=bool))
    _same(default, explicit)
    assert default["ks"][0] == pytest.approx(max(abs(np.cumsum([5, 0, 3, 2]) / 10 - np.cumsum([2, 2, 3, 3]) / 10)))


def test_a_column_with_one_value_bin_measures_its_wasserstein_over_that_bin() -> None:
    # bins: one value bin, missing, invalid: 6 of 10 values in the window against 9 of 10 in the reference
    s = column_stats(
        np.array([6, 4, 0]), np.array([9, 1, 0]), np.array([3]), np.array([True]), np.array([1, 0, 0], bool)
    )
    assert s["ks"][0] == pytest.approx(0.3) and s["wasserstein"][0] == pytest.approx(0.3)


def test_narrow_unsigned_counts_give_the_statistics_of_the_same_counts_in_int64() -> None:
    window = np.array([200, 100, 0, 0, 250, 5, 0], dtype=np.uint8)  # sums past 255 within a column
    ref = np.array([150, 200, 50, 0, 100, 100, 55], dtype=np.uint8)
    narrow = column_stats(window, ref, SIZES, ORDERED)
    wide = column_stats(window.astype(np.int64), ref.astype(np.int64), SIZES, ORDERED)
    _same(narrow, wide)
    assert narrow["n"].tolist() == [300, 255]


def test_a_window_of_one_row_has_the_shares_of_that_row() -> None:
    s = column_stats(np.array([1, 0, 0, 0]), np.array([3, 1, 0, 0]), np.array([4]), np.array([True]))
    pw, pr = np.maximum([1.0, 0.0], EPS), np.array([0.75, 0.25])
    assert s["psi"][0] == pytest.approx(float(np.sum((pw - pr) * np.log(pw / pr))))
    assert s["ks"][0] == pytest.approx(0.25)


def test_one_bin_seen_on_both_sides_is_no_evidence_p_value_exactly_one() -> None:
    # 1 against 7 in the same bin: the chi-square is 0 but for rounding (2.5e-32 here)
    s = column_stats(np.array([1, 0]), np.array([7, 0]), np.array([2]), np.array([False]))
    assert s["df"][0] == 0 and s["p_value"][0] == 1.0


def test_empty_bins_and_an_empty_window_raise_no_numpy_warning() -> None:
    """A worker scores every window; numpy's divide and invalid warnings would fill its log."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = column_stats(np.array([0, 0, 0, 0, 3, 0, 0]), np.array([4, 0, 0, 0, 0, 0, 2]), SIZES, ORDERED)
    assert s["n"].tolist() == [0, 3]


@pytest.mark.parametrize("p", [0.05, 1e-3, 1e-6, 1e-12])
def test_normal_critical_is_the_z_whose_two_sided_p_value_is_p(p: float) -> None:
    """Against scipy's normal distribution: the upper p/2 quantile, and back to p through the two tails."""
    z = normal_critical(p)
    assert type(z) is float and z > 0
    assert z == pytest.approx(scipy_stats.norm.isf(p / 2), rel=1e-12)
    assert 2 * scipy_stats.norm.sf(z) == pytest.approx(p, rel=1e-9)
