"""core/multivariate.py: the pairwise correlation test of joint drift (issue 22, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core import state as snapshot
from streamdrift.core.multivariate import (
    CLIP_SPREADS,
    MAX_ROWS,
    CorrelationDrift,
    co_moments,
    correlations,
    fisher_test,
)


def correlated(rng: np.random.Generator, n: int, k: int, rho: float, pair: tuple[int, int] = (0, 1)) -> np.ndarray:
    """``n`` rows of ``k`` standard normal features, the two of ``pair`` with correlation ``rho``."""
    z = rng.standard_normal((n, k))
    a, b = pair
    z[:, b] = rho * z[:, a] + np.sqrt(1 - rho**2) * z[:, b]
    return z


def as_columns(x: np.ndarray, start: int, stop: int) -> dict:
    return {f"f{j:02d}": x[start:stop, j].copy() for j in range(x.shape[1])}


def feed(detector: CorrelationDrift, x: np.ndarray, cuts: list[int]) -> list:
    """Rows of ``x`` in batches ending at ``cuts`` (and the end); every window score."""
    scores = []
    ends = sorted({*cuts, len(x)})
    start = 0
    for stop in ends:
        if stop > start:
            offsets = np.arange(start, stop)
            scores += detector.update(as_columns(x, start, stop), offsets, 1.7e9 + offsets.astype(np.float64))
        start = stop
    return scores


def fresh(k: int = 6) -> CorrelationDrift:
    return CorrelationDrift(reference_size=800, window_size=400, subwindows=4, max_features=k)


def test_co_moments_are_the_exact_integer_sums_and_correlations_those_of_numpy():
    rng = np.random.default_rng(1)
    codes = rng.integers(-8192, 8193, size=(500, 4))
    sums = co_moments(codes)
    assert sums[0] == 500 and sums[1:5].tolist() == codes.sum(axis=0).tolist()
    assert sums[5:].tolist() == (codes.T @ codes)[np.triu_indices(4)].tolist()
    r, n = correlations(sums, 4)
    assert n == 500
    np.testing.assert_allclose(r, np.corrcoef(codes.T)[np.triu_indices(4, 1)], atol=1e-12)
    # any order, any split: the same sums, to the bit
    halves = co_moments(codes[:123]) + co_moments(codes[123:])
    assert halves.tolist() == co_moments(codes[::-1]).tolist() == sums.tolist()


def test_fisher_test_of_equal_correlations_is_zero_and_of_too_few_rows_untested():
    z, p = fisher_test(np.array([0.3]), 500, np.array([0.3]), 900)
    assert z.tolist() == [0.0] and p.tolist() == [1.0]
    z, p = fisher_test(np.array([0.9]), 3, np.array([-0.9]), 900)
    assert z.tolist() == [0.0] and p.tolist() == [1.0]
    z, p = fisher_test(np.array([1.0]), 100, np.array([0.0]), 100)  # an exact 1: a finite z
    assert np.isfinite(z).all() and p[0] < 1e-100


def test_the_state_is_the_same_bytes_however_the_rows_are_cut_and_restored():
    rng = np.random.default_rng(7)
    x = correlated(rng, 3000, 5, 0.5)
    x[rng.random(3000) < 0.02, 2] = np.nan  # some rows lack a feature
    whole = fresh()
    feed(whole, x, [])
    expected = snapshot.dumps({"d": whole.state()})
    for seed in range(20):
        cuts = sorted(np.random.default_rng(seed).choice(np.arange(1, 3000), size=40, replace=False).tolist())
        detector, scores = fresh(), []
        start = 0
        for i, stop in enumerate([*cuts, 3000]):
            offsets = np.arange(start, stop)
            scores += detector.update(as_columns(x, start, stop), offsets, 1.7e9 + offsets.astype(np.float64))
            if i % 7 == 3:  # a crash and a restart from the snapshot
                restored = fresh()
                restored.load_state(snapshot.loads(snapshot.dumps({"d": detector.state()}))["d"])
                detector = restored
            start = stop
        assert snapshot.dumps({"d": detector.state()}) == expected, seed


def test_a_correlation_flip_with_unchanged_marginals_is_found_and_names_its_pair():
    rng = np.random.default_rng(11)
    before, after = correlated(rng, 2000, 8, 0.5, (2, 5)), correlated(rng, 1200, 8, -0.5, (2, 5))
    detector = fresh(8)
    scores = feed(detector, np.concatenate([before, after]), [])
    assert detector.names == [f"f{j:02d}" for j in range(8)] and detector.pairs == 28
    assert [s.position for s in scores] == list(range(1200, 3201, 100))
    stationary, changed = scores[:9], scores[9:]  # windows that end before the flip at row 2000, and after
    assert max(float(np.abs(s.z).max()) for s in stationary) < 4
    worst = [s.pair_names(int(np.argmin(s.p_value))) for s in changed]
    assert worst == [("f02", "f05")] * len(changed)
    # a quarter of the window flipped: 4.5 standard errors; half of it: 8.9
    assert [round(float(s.z[np.argmin(s.p_value)]), 1) for s in changed[:2]] == [-4.5, -8.9]
    assert round(float(changed[-1].window[np.argmin(changed[-1].p_value)]), 2) == -0.54
    assert changed[-1].rows == 400 and changed[-1].reference_rows == 600


def test_only_numeric_features_present_and_varying_are_watched_up_to_the_cap_by_name():
    rng = np.random.default_rng(3)
    n = 800
    columns = {
        "z_numeric": rng.normal(size=n).tolist(),
        "a_numeric": rng.normal(size=n),
        "m_numeric": rng.normal(size=n),
        "b_category": rng.choice(["x", "y"], n).tolist(),
        "c_constant": [4.0] * n,
        "d_often_missing": [None if i % 10 == 0 else float(i) for i in range(n)],
        "e_rarely_missing": [None if i % 50 == 0 else float(i % 7) for i in range(n)],
        "f_binary": [float(i % 3 == 0) for i in range(n)],
    }
    detector = CorrelationDrift(reference_size=800, window_size=400, subwindows=4, max_features=4)
    detector.update(columns, np.arange(n), np.zeros(n))
    # 'b' is categories, 'c' constant, 'd' missing in 10 % of rows: the first four of the rest by name
    assert detector.names == ["a_numeric", "e_rarely_missing", "f_binary", "m_numeric"]
    # the binary feature's inter-quartile range is 0: its unit comes from its range (1)
    assert detector.exponents.tolist()[2] == -10 and detector.clips.tolist()[2] == CLIP_SPREADS * 1024
    # the reference's rows: those after the 200 scale rows that had every feature ('e' lacks one in 50)
    assert int(detector.reference[0]) == 600 - sum(1 for i in range(200, 800) if i % 50 == 0)
    assert detector.skipped == 12


def test_a_feature_set_without_a_pair_only_counts_rows():
    detector = fresh()
    n = 2000
    detector.update({"only": np.arange(n, dtype=np.float64), "label": ["a"] * n}, np.arange(n), np.zeros(n))
    assert detector.names == [] and detector.pairs == 0 and detector.rows == n
    assert detector.update({"only": np.zeros(10)}, np.arange(10), np.zeros(10)) == []


def test_codes_are_bounded_so_int64_sums_cannot_overflow():
    # a unit is at least spread / 2**11, so a code is at most CLIP_SPREADS * 2**11 = 2**13 in magnitude
    assert CLIP_SPREADS * 2**11 == 2**13 and MAX_ROWS * 2**26 <= 2**63
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1000, 3))
    x[900:, 0] = 1e15  # outliers at the decoder's bound: clipped
    detector = fresh(3)
    feed(detector, x, [])
    assert int(detector.clips.max()) <= 2**13
    assert int(np.abs(detector.ring).max()) <= 400 * 2**26


@pytest.mark.parametrize("value", [1e-9, 1.0, 1e9])
def test_scale_free_a_feature_of_any_magnitude_gets_the_same_correlations(value: float):
    rng = np.random.default_rng(2)
    x = correlated(rng, 1200, 3, 0.7)
    scaled = x.copy()
    scaled[:, 0] = value * (100 + x[:, 0])  # far from zero, and tiny or huge: the same correlations
    plain, other = fresh(3), fresh(3)
    a, b = feed(plain, x, []), feed(other, scaled, [])
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[0].window, b[0].window, atol=0.01)
    np.testing.assert_allclose(a[0].reference, b[0].reference, atol=0.01)
