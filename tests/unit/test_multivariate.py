"""core/multivariate.py: the pairwise correlation test of joint drift (issue 22, item 4)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from streamdrift.core import state as snapshot
from streamdrift.core.config import MAX_ROWS, ModelSettings, MonitorSettings
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.multivariate import (
    CLIP_SPREADS,
    MAX_PRODUCT,
    CorrelationDrift,
    co_moments,
    correlations,
    fisher_test,
)
from streamdrift.core.records import PredictionBatch
from streamdrift.core.sketch import StreamSketch


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
    r, dof = correlations(sums, 4)
    assert dof == 499
    np.testing.assert_allclose(r, np.corrcoef(codes.T)[np.triu_indices(4, 1)], atol=1e-12)
    # any order, any split: the same sums, to the bit
    halves = co_moments(codes[:123]) + co_moments(codes[123:])
    assert halves.tolist() == co_moments(codes[::-1]).tolist() == sums.tolist()


def test_fisher_test_of_equal_correlations_is_zero_and_of_too_few_rows_untested():
    z, p = fisher_test(np.array([0.3]), 500, np.array([0.3]), 900)
    assert z.tolist() == [0.0] and p.tolist() == [1.0]
    z, p = fisher_test(np.array([0.9]), 2, np.array([-0.9]), 900)
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
        "g_once_a_string": [float(i) if i != 150 else "n/a" for i in range(n)],
        "h_bool": [i % 2 == 0 for i in range(n)],
    }
    detector = CorrelationDrift(reference_size=800, window_size=400, subwindows=4, max_features=4)
    for start in range(0, n, 100):
        part = {name: values[start : start + 100] for name, values in columns.items()}
        detector.update(part, np.arange(start, start + 100), np.zeros(100))
    assert detector.mixed == {"b_category", "g_once_a_string", "h_bool"}
    # 'b' is categories, 'c' constant, 'd' missing in 10 % of rows, 'g' once a string, 'h' booleans (not
    # numbers): the first four of the rest by name
    assert detector.names == ["a_numeric", "e_rarely_missing", "f_binary", "m_numeric"]
    # the binary feature's inter-quartile range is 0: its unit comes from its range (1)
    assert detector.exponents.tolist()[2] == -6 and detector.clips.tolist()[2] == CLIP_SPREADS * 64
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
    # a unit is at least spread / 2**7, so a code is at most CLIP_SPREADS * 2**7 = 2**9 in magnitude
    assert CLIP_SPREADS * 2**7 == 2**9 and (2**9) ** 2 == MAX_PRODUCT and MAX_ROWS * MAX_PRODUCT <= 2**63
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1000, 3))
    x[900:, 0] = 1e15  # outliers at the decoder's bound: clipped
    detector = fresh(3)
    feed(detector, x, [])
    assert int(detector.clips.max()) <= 2**9
    assert detector.ring.dtype == np.int32 and int(np.abs(detector.ring).max()) <= 100 * MAX_PRODUCT


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


def test_a_reference_or_window_too_long_for_exact_sums_is_a_bad_setting():
    with pytest.raises(ValueError, match="at most 137438953472 with multivariate"):
        MonitorSettings(reference_size=MAX_ROWS + 1, multivariate=True)
    MonitorSettings(reference_size=MAX_ROWS + 1)  # off: no such sums


def test_a_shift_of_two_features_means_together_is_no_correlation_within_sub_windows():
    # independent features that both move by 2 standard deviations at one row: across the window the rows of
    # both sides look correlated (0.51 here, some 12 standard errors); pooled within sub-windows, only the one
    # holding the switch does (4.7 at most, under any threshold of a realistic budget)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1600, 3))
    x[1050:, :2] += 2.0
    detector = fresh(3)
    scores = feed(detector, x, [])
    blocks = co_moments(np.rint(x[800:1200] * 1024).astype(np.int64))
    across, _ = correlations(blocks, 3)
    assert round(float(across[0]), 2) == 0.51
    assert round(max(float(np.abs(s.z).max()) for s in scores), 1) == 4.7
    # two blocks of a perfectly correlated pair: 1; centred within each, the pair is uncorrelated
    step = np.array([[0, 0], [0, 0], [1, 1], [1, 1]]) + np.array([[0, 1], [1, 0], [0, 1], [1, 0]])
    whole, _ = correlations(co_moments(step), 2)
    pooled, dof = correlations(np.stack([co_moments(step[:2]), co_moments(step[2:])]), 2)
    assert whole.tolist() == [0.0] and pooled.tolist() == [-1.0] and dof == 2


# -- through the monitor ---------------------------------------------------------------------------------

SCHEMA = orjson.loads((Path(__file__).resolve().parents[2] / "schemas" / "drift_event.schema.json").read_bytes())
MONITORED = MonitorSettings(reference_size=800, window_size=400, subwindows=4, cooldown_events=400, multivariate=True)


def prediction_batch(x: np.ndarray, start: int) -> PredictionBatch:
    n = len(x)
    offsets = np.arange(start, start + n, dtype=np.int64)
    times = 1.7e9 + offsets.astype(np.float64)
    return PredictionBatch(
        model_id="m",
        partition=0,
        offsets=offsets,
        event_ids=[f"e{i}" for i in offsets.tolist()],
        model_versions=["v1"] * n,
        timestamps=times,
        timestamp_values=times.tolist(),
        features={f"f{j:02d}": x[:, j].round(4).tolist() for j in range(x.shape[1])},
        predictions=[0] * n,
        scores=np.full(n, np.nan),
        class_scores=[None] * n,
        segments=[None] * n,
    )


def flip_and_back(seed: int = 21) -> np.ndarray:
    """6 features, f01 and f04 correlated 0.6 for 2,000 rows, -0.6 for 1,600, then 0.6 again for 3,200."""
    rng = np.random.default_rng(seed)
    parts = [correlated(rng, n, 6, rho, (1, 4)) for n, rho in ((2000, 0.6), (1600, -0.6), (3200, 0.6))]
    return np.concatenate(parts)


def test_a_flip_is_one_multivariate_drift_event_naming_its_pair_then_resolved_when_it_goes():
    monitor = ModelMonitor("m", MONITORED)
    events = []
    x = flip_and_back()
    for start in range(0, len(x), 250):
        events += monitor.observe_predictions(prediction_batch(x[start : start + 250], start))
    assert [(e["kind"], e["window"]["end_offset"]) for e in events] == [
        ("multivariate_drift", 2099),
        ("drift_resolved", 4299),
    ]
    fired, resolved = events
    assert fired["feature"] is None and fired["detector"] == "fisher_z" and fired["action"] == "investigate"
    assert [t["feature"] for t in fired["top_features"][:2]] == ["f01", "f04"]
    assert fired["details"]["pairs"][0]["features"] == ["f01", "f04"]
    assert fired["details"]["p_threshold"] == 100 / (1_000_000 * 4 * 2 * 15)  # half the data share, 15 pairs
    assert fired["p_value"] < fired["details"]["p_threshold"] and fired["statistic"] > fired["threshold"]
    assert fired["window"]["count"] == 400 and fired["change_started_at"] == fired["window"]["start_time"]
    assert resolved["details"]["resolves"] == {"kind": "multivariate_drift", "alert_id": fired["alert_id"]}
    for event in events:
        jsonschema.validate({**event, "emitted_at": "2026-12-05T00:00:00.000Z"}, SCHEMA)
    assert monitor.summary().drift_active == frozenset()
    # the same bytes and events through a snapshot, restored in the middle of the flip
    other, again = ModelMonitor("m", MONITORED), []
    for start in range(0, len(x), 333):
        if start == 2331:
            other = ModelMonitor.from_state("m", MONITORED, snapshot.loads(snapshot.dumps({"m": other.state()}))["m"])
        again += other.observe_predictions(prediction_batch(x[start : start + 333], start))
    assert again == events
    assert snapshot.dumps({"m": other.state()}) == snapshot.dumps({"m": monitor.state()})


def test_a_model_can_turn_multivariate_drift_off_and_its_data_drift_keeps_the_whole_data_share():
    off = ModelMonitor("m", MONITORED, ModelSettings(multivariate=False))
    x = flip_and_back()
    assert off.observe_predictions(prediction_batch(x, 0)) == [] and off.state()["multivariate"] is None
    on = ModelMonitor("m", MONITORED)
    assert off.p_threshold(6, "data_drift") == 2 * on.p_threshold(6, "data_drift")
    assert off.p_threshold(1, "label_drift") == on.p_threshold(1, "label_drift")
    everywhere_off = MONITORED.model_copy(update={"multivariate": False})
    assert ModelMonitor("m", everywhere_off).multivariate is None
    assert ModelMonitor("m", everywhere_off, ModelSettings(multivariate=True)).multivariate is not None


def test_off_by_default_and_the_settings_seal_of_a_deployment_at_the_defaults_is_that_of_before():
    # snapshots written before it still load: its fields at their defaults dump as if they did not exist
    assert ModelMonitor("m", MonitorSettings()).multivariate is None
    assert not {"multivariate", "multivariate_max_features"} & set(MonitorSettings().model_dump())
    sealed = {
        MonitorSettings(multivariate=True).fingerprint(),
        MonitorSettings(multivariate_max_features=12).fingerprint(),
    }
    assert MonitorSettings().fingerprint() not in sealed and len(sealed) == 2


@pytest.mark.parametrize("cuts", [[100, 200, 300], [1, 2, 150, 250, 799], [350]])
def test_the_scale_rows_counted_by_the_features_warm_up_give_the_detectors_own_choice(cuts: list[int]) -> None:
    """A detector that starts with the features' sketch takes the scale rows' counts from the sketch's warm-up
    columns instead of counting every feature a second time: the same features, centres, units and clips,
    so the same state from the choice on, however the batches cut the scale rows (a batch crossing row 200
    included) and with a restart (state round trip of both) in the scale rows; in them its state names the
    sketch's columns instead of holding its own."""
    rng = np.random.default_rng(8)
    n = 1500
    x = correlated(rng, n, 3, 0.6)
    columns = {
        "a": x[:, 0].copy(),  # an array (the C reader's float block), NaN missing
        "b": [None if i % 40 == 7 else round(float(v), 3) for i, v in enumerate(x[:, 1])],
        "c": [int(v * 10) for v in x[:, 2]],  # integers
        "d_once_a_string": [float(i) if i != 150 else "n/a" for i in range(n)],
        "e_late": [None] * 120 + rng.normal(size=n - 120).tolist(),  # absent from the first rows: too rare
        "f_constant": [4.0] * n,
        "g_category": rng.choice(["x", "y"], n).tolist(),
    }
    columns["a"][::53] = np.nan

    def run(borrow: bool) -> tuple[CorrelationDrift, list, list]:
        detector = CorrelationDrift(reference_size=800, window_size=400, subwindows=4, max_features=4)
        sketch = StreamSketch(800, 400, 4, 10, 5, 10)
        scores, scale_states = [], []
        for start, stop in zip([0, *cuts, 1000], [*cuts, 1000, n]):
            part = {name: values[start:stop] for name, values in columns.items()}
            offsets, times = np.arange(start, stop), np.zeros(stop - start)
            counted = (sketch.warmup, sketch.warmup_rows) if borrow and sketch.warmup is not None else None
            scores += detector.update(part, offsets, times, features=counted)
            sketch.update(part, offsets, times)
            if detector.scale is not None:
                scale_states.append(detector.state()["scale"])
            if start < 200 <= stop or stop == 150:  # a restart in (or at the end of) the scale rows
                detector.load_state(snapshot.loads(snapshot.dumps(detector.state())))
                sketch = StreamSketch(800, 400, 4, 10, 5, 10, state=snapshot.loads(snapshot.dumps(sketch.state())))
        return detector, scores, scale_states

    own, own_scores, own_scales = run(borrow=False)
    borrowed, borrowed_scores, borrowed_scales = run(borrow=True)
    assert len(borrowed_scales) == len(own_scales) == sum(cut < 200 for cut in cuts)
    assert all(scale == "features" for scale in borrowed_scales) and all(isinstance(s, dict) for s in own_scales)
    assert own.names == ["a", "b", "c"]  # 'd' once a string, 'e' too often missing, 'f' constant, 'g' categories
    assert snapshot.dumps(borrowed.state()) == snapshot.dumps(own.state())
    assert len(own_scores) == 4 and [s._asdict().keys() for s in borrowed_scores] == [
        s._asdict().keys() for s in own_scores
    ]
    for mine, theirs in zip(borrowed_scores, own_scores):
        assert snapshot.dumps(mine._asdict()) == snapshot.dumps(theirs._asdict())


# -- pinned against independent formulas (mutation testing, issue 18) ---------------------------------------


def test_fisher_test_is_the_difference_of_fisher_z_over_its_standard_error_with_scipy_normal_p_values():
    from scipy.stats import norm

    window = np.array([-1.0, -0.3, 0.0, 0.45, 0.99, 1.0])
    reference = np.array([0.2, 1.0, -1.0, 0.45, -0.5, 0.7])
    bound = 1 - 1e-12  # an exact +-1 is read as this, on either side
    for dof_window, dof_reference in [(3, 3), (3, 900), (500, 3), (97, 1499)]:
        z, p = fisher_test(window, dof_window, reference, dof_reference)
        # a correlation of n = dof + 1 rows: its Fisher z has a variance of 1 / (n - 3)
        se = np.sqrt(1 / (dof_window + 1 - 3) + 1 / (dof_reference + 1 - 3))
        expected = (np.arctanh(np.clip(window, -bound, bound)) - np.arctanh(np.clip(reference, -bound, bound))) / se
        np.testing.assert_allclose(z, expected, rtol=1e-12)
        np.testing.assert_allclose(p, 2 * norm.sf(np.abs(expected)), rtol=1e-9)
        assert np.isfinite(z).all()
    # two degrees of freedom (three rows) or fewer on either side: untested
    for dof_window, dof_reference in [(2, 900), (900, 2)]:
        z, p = fisher_test(window, dof_window, reference, dof_reference)
        assert z.tolist() == [0.0] * 6 and p.tolist() == [1.0] * 6


def test_sub_window_sums_are_int32_exactly_while_a_sum_of_products_fits_it():
    assert CorrelationDrift(800, 8191 * 4, 4, 3).ring.dtype == np.int32  # 8,191 rows a sub-window
    assert (8191 * MAX_PRODUCT < 2**31) and (8192 * MAX_PRODUCT == 2**31)
    assert CorrelationDrift(800, 8192 * 4, 4, 3).ring.dtype == np.int64


def test_co_moments_stay_exact_where_floats_would_round_and_of_no_rows_are_zeros():
    # 3 * (2**26 + 1)**2 is odd and above 2**53, where floats step by 2: only integer arithmetic gets it
    big = 2**26 + 1
    codes = np.array([[big, 1], [big, -1], [big, 2]], np.int64)
    assert co_moments(codes).tolist() == [3, 3 * big, 2, 3 * big**2, 2 * big, 6]
    codes = np.array([[2**27 + 1, 3], [5, -(2**27 + 1)]], np.int64)
    x = [[int(v) for v in row] for row in codes.tolist()]
    expected = [2, x[0][0] + x[1][0], x[0][1] + x[1][1]] + [
        sum(r[i] * r[j] for r in x) for i, j in zip(*np.triu_indices(2))
    ]
    assert co_moments(codes).tolist() == expected
    assert co_moments(np.zeros((0, 2), np.int64)).tolist() == [0] * 6


def pooled_correlations(blocks: list[np.ndarray]) -> np.ndarray:
    """Each pair's correlation of rows centred on their own block's means (numpy, from the rows themselves)."""
    centred = np.concatenate([b - b.mean(axis=0) for b in blocks if len(b)])
    products = centred.T @ centred
    k = products.shape[0]
    i, j = np.triu_indices(k, 1)
    return products[i, j] / np.sqrt(products[i, i] * products[j, j])


def test_correlations_are_pooled_within_blocks_leave_out_empty_ones_and_count_a_dof_per_block():
    rng = np.random.default_rng(8)
    blocks = [rng.integers(-50, -10, size=(40, 3)), np.zeros((0, 3), np.int64), rng.integers(-9, 30, size=(7, 3))]
    blocks[0][:, 1] += blocks[0][:, 0]
    sums = np.stack([co_moments(b) for b in blocks])
    r, dof = correlations(sums, 3)
    assert dof == 40 + 7 - 2  # a block of no rows has no degree of freedom to take
    np.testing.assert_allclose(r, pooled_correlations(blocks), rtol=1e-12)
    assert correlations(sums[[0, 2]], 3)[0].tolist() == r.tolist()
    # two rows in one block: one degree of freedom, a correlation of exactly -1 (the variances are 1/2 each)
    r, dof = correlations(co_moments(np.array([[0, 1], [1, 0]])), 2)
    assert r.tolist() == [-1.0] and dof == 1
    # no rows, or one: no degree of freedom, zeros for each of the k (k - 1) / 2 pairs
    for one_or_none in (np.zeros((0, 3), np.int64), np.array([[1, 2, 3]])):
        r, dof = correlations(co_moments(one_or_none), 3)
        assert r.tolist() == [0.0, 0.0, 0.0] and dof == 0
    # a feature that does not vary correlates with nothing: 0, not NaN
    constant = np.array([[1, 5, 0], [2, 5, 1], [4, 5, 1], [3, 5, 0]])
    r, dof = correlations(co_moments(constant), 3)
    assert r[[0, 2]].tolist() == [0.0, 0.0] and dof == 3  # pairs (0, 1) and (1, 2)
    np.testing.assert_allclose(r[1], np.corrcoef(constant[:, 0], constant[:, 2])[0, 1], rtol=1e-12)
    # a pair on a line whose rounding gives 1.0000000000000002 (or its negative): clipped to +-1
    line = np.array([[-31, -94], [7, 20], [-20, -61], [-11, -34], [25, 74], [26, 77], [-4, -13]])
    assert correlations(co_moments(line), 2)[0].tolist() == [1.0]
    assert correlations(co_moments(line * [1, -1]), 2)[0].tolist() == [-1.0]


def test_a_window_score_spans_its_sub_windows_first_and_last_rows():
    rng = np.random.default_rng(9)
    x = correlated(rng, 1500, 2, 0.4)
    detector = CorrelationDrift(reference_size=800, window_size=400, subwindows=4, max_features=2)
    offsets = 10_000 + 3 * np.arange(1500)  # offsets and times that are not the row numbers
    times = 1.7e9 + 0.5 * np.arange(1500)
    scores = []
    for start in range(0, 1500, 70):
        stop = min(1500, start + 70)
        scores += detector.update(as_columns(x, start, stop), offsets[start:stop], times[start:stop])
    assert [s.position for s in scores] == [1200, 1300, 1400, 1500]
    for j, score in enumerate(scores):
        first, last = 800 + 100 * j, 1199 + 100 * j  # the rows of the window
        assert score.span == {
            "start_time": float(times[first]),
            "end_time": float(times[last]),
            "count": 400,
            "start_offset": int(offsets[first]),
            "end_offset": int(offsets[last]),
        }, j


def test_the_codes_are_the_rounded_distance_to_the_centre_in_units_clipped_and_rows_lacking_a_feature_skipped():
    rng = np.random.default_rng(10)
    n = 1000
    u = 1.6 * rng.random(n)  # inter-quartile range about 0.8: a unit of 2**-7
    binary = (rng.random(n) < 0.1).astype(np.float64)  # inter-quartile range 0: the unit from the range, 1
    w = rng.standard_normal(n)
    w[500], w[501] = 1e6, -1e6  # clipped, either side
    u[0] = 5.0  # the range is 5, but the inter-quartile range still gives the unit
    # ints, floats and None (in the scale rows too) are all numbers
    mixed_types = [int(v) if i % 3 == 0 else (None if i in (7, 205) else float(v)) for i, v in enumerate(w * 100)]
    near_missing = [None if i < 10 else float(v) for i, v in enumerate(rng.random(n))]  # exactly 95 % present
    columns = {"a": u, "b": binary, "c": w, "d": mixed_types, "e": near_missing}
    detector = CorrelationDrift(reference_size=800, window_size=200, subwindows=2, max_features=5)
    detector.update({k: v[:800] for k, v in columns.items()}, np.arange(800), np.zeros(800))
    assert detector.names == ["a", "b", "c", "d", "e"] and detector.pairs == 10
    assert detector.exponents.tolist()[:2] == [-7, -6]
    # the centre: the lower bound of the bucket of the median of the 200 scale rows
    median = float(np.median(u[:200]))
    assert median * 0.9 <= detector.centres[0] <= median and detector.centres[1] == 0.0
    assert detector.clips[1] == CLIP_SPREADS * 64
    # the reference's sums are those of the codes made here from the values, centres, units and clips
    x = np.array([[np.nan if v is None else float(v) for v in columns[k][200:800]] for k in detector.names]).T
    units = np.exp2(detector.exponents.astype(np.float64))
    codes = np.clip(np.rint((x - detector.centres) / units), -detector.clips, detector.clips)
    complete = ~np.isnan(x).any(axis=1)
    assert detector.reference.tolist() == co_moments(codes[complete].astype(np.int64)).tolist()
    assert detector.skipped == int((~complete).sum()) == 1  # row 205 lacks d
    # after the warm-up: a watched feature that holds a string or a boolean in a row, or is absent from a
    # batch, leaves those rows out of the sums
    skipped = detector.skipped
    later = {k: (v[800:900].tolist() if isinstance(v, np.ndarray) else v[800:900]) for k, v in columns.items()}
    later["a"][3], later["a"][4] = "n/a", True
    detector.update(later, np.arange(800, 900), np.zeros(100))
    assert detector.skipped == skipped + 2
    detector.update({k: v[900:950] for k, v in columns.items() if k != "c"}, np.arange(900, 950), np.zeros(50))
    assert detector.skipped == skipped + 52 and int(detector.ring[:, 0].sum()) == 98
    # a batch that ends the scale rows and lacks a feature (present in 190 of the 200, 95 %: watched): its
    # rows after the scale rows are skipped
    straddling = CorrelationDrift(reference_size=800, window_size=200, subwindows=2, max_features=5)
    straddling.update({k: v[:190] for k, v in columns.items()}, np.arange(190), np.zeros(190))
    straddling.update({k: v[190:300] for k, v in columns.items() if k != "c"}, np.arange(190, 300), np.zeros(110))
    assert straddling.names == ["a", "b", "c", "d", "e"] and straddling.skipped == 100 and straddling.rows == 300


def test_two_features_are_one_pair_and_a_feature_that_turns_mixed_is_left_out_even_after_it_was_counted():
    rng = np.random.default_rng(12)
    detector = CorrelationDrift(reference_size=800, window_size=200, subwindows=2, max_features=5)
    detector.update({"a": rng.random(800), "b": rng.random(800)}, np.arange(800), np.zeros(800))
    assert detector.names == ["a", "b"] and detector.pairs == 1 and int(detector.reference[0]) == 600
    # 1,200 scale rows: the first 1,100 are counted (a thousand at a time) before 'late' holds a string
    detector = CorrelationDrift(reference_size=4800, window_size=200, subwindows=2, max_features=5)
    late = rng.random(1200).tolist()
    late[1160] = "n/a"  # after 1,150 numbers were counted: 'late' would be present in 96 % of the rows
    soon = rng.random(1200).tolist()
    soon[150] = "n/a"  # while its first 100 numbers wait to be counted
    columns = {"a": rng.random(1200), "b": rng.random(1200), "late": late, "soon": soon}

    def rows(start: int, stop: int) -> None:
        detector.update({k: v[start:stop] for k, v in columns.items()}, np.arange(start, stop), np.zeros(stop - start))

    rows(0, 100)
    rows(100, 1150)
    assert detector.mixed == {"soon"} and sorted(detector.state()["scale"]) == ["a", "b", "late"]
    rows(1150, 1200)
    assert detector.mixed == {"late", "soon"} and detector.names == ["a", "b"]


def test_a_fresh_detector_and_one_without_a_pair_have_empty_typed_state():
    without_pair = fresh(3)
    without_pair.update({"only": np.arange(900, dtype=np.float64)}, np.arange(900), np.zeros(900))
    for detector in (fresh(3), without_pair):
        state = detector.state()
        for name, dtype, shape in [
            ("centres", np.float64, (0,)),
            ("exponents", np.int64, (0,)),
            ("clips", np.int64, (0,)),
            ("reference", np.int64, (1,)),
            ("ring", np.int32, (4, 1)),
        ]:
            assert state[name].dtype == dtype and state[name].shape == shape, name
            assert not state[name].any(), name
        assert state["slot"] == 0 and state["slots_filled"] == 0 and state["slot_times"] == [[0.0, 0.0]] * 4
    assert fresh(3).state()["scale"] == {} and without_pair.state()["scale"] is None  # its own counts, none yet


def test_numpy_scalars_in_a_list_are_numbers_as_python_floats_are():
    """A direct caller's list column may hold numpy scalars (``x[i]`` of an array): the same numbers, the same
    state and window tests as Python floats, from the scale rows on, nothing skipped."""
    x = correlated(np.random.default_rng(23), 1600, 3, 0.6)
    x[::97, 1] = np.nan  # a few rows missing a feature, as None in a list

    def run(as_scalars: bool) -> tuple[CorrelationDrift, list]:
        detector = fresh(3)
        scores = []
        for start in range(0, len(x), 250):
            stop = min(start + 250, len(x))
            columns = {
                f"f{j}": [None if v != v else (v if as_scalars else float(v)) for v in x[start:stop, j]]
                for j in range(3)
            }
            offsets = np.arange(start, stop)
            scores += detector.update(columns, offsets, offsets.astype(np.float64))
        return detector, scores

    (floats, float_scores), (scalars, scalar_scores) = run(False), run(True)
    assert type(x[0, 0]) is np.float64 and floats.names == ["f0", "f1", "f2"] and len(float_scores) == 5
    # the 200 scale rows are not coded; rows past them missing f1 are skipped, and only those
    assert scalars.skipped == floats.skipped == int(np.isnan(x[200:, 1]).sum()) == 14
    assert snapshot.dumps({"d": scalars.state()}) == snapshot.dumps({"d": floats.state()})
    assert [(s.position, s.z.tolist()) for s in scalar_scores] == [(s.position, s.z.tolist()) for s in float_scores]


def test_with_rebaseline_a_flip_that_persists_becomes_the_joint_reference_and_a_flip_back_is_a_new_change():
    """rebaseline = true applies to multivariate_drift (issue 22, item 3): after its event the next
    reference_size (800) rows are the new joint reference, a rebaselined event says so at the last of them, and
    the flipped correlation is then the normal: no drift_resolved, and flipping back is a change against it.
    The same events and state bytes in batches of 250 or 333 with a restore while the reference is learnt."""
    rng = np.random.default_rng(21)
    parts = [correlated(rng, n, 6, rho, (1, 4)) for n, rho in ((2000, 0.6), (3200, -0.6), (2400, 0.6))]
    x = np.concatenate(parts)
    model = ModelSettings(rebaseline=True)
    monitor, events = ModelMonitor("m", MONITORED, model), []
    for start in range(0, len(x), 250):
        events += monitor.observe_predictions(prediction_batch(x[start : start + 250], start))
    assert [(e["kind"], e["window"]["end_offset"]) for e in events] == [
        ("multivariate_drift", 2099),  # as without rebaseline
        ("rebaselined", 2899),
        ("multivariate_drift", 5399),  # before: no rebaselined, a drift_resolved at 5,899 (back to the old normal)
        ("rebaselined", 6199),  # and again: the 800 rows after it
    ]
    fired, news, back, _ = events
    assert news["details"]["rebaselines"] == {"kind": "multivariate_drift", "alert_id": fired["alert_id"]}
    assert (news["window"]["start_offset"], news["window"]["count"]) == (2100, 800)
    assert (news["action"], news["severity"], news["detector"]) == ("none", "info", "reference")
    assert back["details"]["pairs"][0]["features"] == ["f01", "f04"]
    assert back["details"]["pairs"][0]["reference_correlation"] < -0.5  # the new reference: the flipped one
    for event in events:
        jsonschema.validate({**event, "emitted_at": "2026-12-05T00:00:00.000Z"}, SCHEMA)
    other, again = ModelMonitor("m", MONITORED, model), []
    for start in range(0, len(x), 333):
        if start == 2331:  # in the new reference
            state = snapshot.loads(snapshot.dumps({"m": other.state()}))["m"]
            other = ModelMonitor.from_state("m", MONITORED, state, model)
        again += other.observe_predictions(prediction_batch(x[start : start + 333], start))
    assert again == events
    assert snapshot.dumps({"m": other.state()}) == snapshot.dumps({"m": monitor.state()})


def test_a_detectors_state_from_before_rebaselines_loads_as_learnt_from_the_first_row():
    rng = np.random.default_rng(3)
    detector = fresh()
    feed(detector, correlated(rng, 900, 6, 0.5), [])
    state = detector.state()
    assert state["origin"] == 0
    del state["origin"]  # as written before rebaselines
    restored = fresh()
    restored.load_state(state)
    assert restored.origin == 0 and restored.ready and restored.rows_to_next_step() == detector.rows_to_next_step()
