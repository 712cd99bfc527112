"""Online performance metrics against scikit-learn (a test-only dependency) and hand computations."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import orjson
import pytest
from scipy.stats import rankdata
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from streamdrift.core.metrics import (
    CBPE,
    ClassificationMetrics,
    DegradationTest,
    RegressionMetrics,
    SegmentMetrics,
    VersionComparison,
    cbpe_accuracy,
    infer_task,
    label_keys,
    wilson_interval,
)

CLOSE = 1e-6  # fixed-point sums (2^-20 per row) round each row's term by at most 5e-7


def state_bytes(metric) -> bytes:
    return orjson.dumps(metric.state(), option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def binned(p: np.ndarray, bins: int) -> np.ndarray:
    """Scores rounded to the left edge of their bin, as the histograms see them."""
    return np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p, side="right") / bins


def exact_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count half) as an exact fraction, rounded once."""
    ranks = rankdata(scores)  # average ranks of ties: multiples of 1/2, exact in floats
    pos = int(np.sum(y == 1))
    u = Fraction(float(ranks[y == 1].sum())) - Fraction(pos * (pos + 1), 2)
    return float(u / (pos * (len(y) - pos)))


def binary_stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    logit = np.where(y == 1, 1.0, -1.0) * 1.2 + rng.normal(0, 1.3, n)
    p = 1 / (1 + np.exp(-logit))
    pred = (p > 0.5).astype(int)
    flip = rng.random(n) < 0.05  # predictions not always the thresholded score
    return y, np.where(flip, 1 - pred, pred), p


def multiclass_stream(n: int, seed: int, k: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(k)]
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    return y, pred, proba, names


def class_dicts(proba: np.ndarray, names: list[str]) -> list[dict]:
    return [dict(zip(names, row)) for row in proba.tolist()]


# -- classification against sklearn --------------------------------------------------


def check_binary(report: dict, y: np.ndarray, pred: np.ndarray, p: np.ndarray, bins: int) -> None:
    assert report["rows"] == len(y) and report["scored"] == len(y)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    assert report["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-15)
    assert report["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-15)
    assert report["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-15)
    for name in ("precision", "recall", "f1"):
        expected = getattr(skm, f"{name}_score")(y, pred, average="macro")
        assert report[f"macro_{name}"] == pytest.approx(expected, abs=1e-15)
    assert report["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=CLOSE)
    assert report["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=CLOSE)
    # AUC from the histograms is exactly the AUC of the binned scores (sklearn's trapezoids sum in floats:
    # within an ulp or two of it), and close to the AUC of the raw scores
    assert report["roc_auc"] == exact_auc(y, binned(p, bins))
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, binned(p, bins)), abs=1e-14)
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=0.005)
    # ECE: sklearn's reliability curve over the same bins, weighted by bin counts
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p, side="right"), minlength=bins)
    ece = float(np.sum(counts[counts > 0] * np.abs(prob_pred - prob_true)) / len(y))
    assert report["ece"] == pytest.approx(ece, abs=CLOSE)
    labels = report["confusion"]["labels"]
    order = [int(name) for name in labels]
    assert report["confusion"]["matrix"] == skm.confusion_matrix(y, pred, labels=order).tolist()


def test_binary_metrics_match_sklearn():
    y, pred, p = binary_stream(5000, seed=1)
    m = ClassificationMetrics(window_size=1000, subwindows=5, n_score_bins=100)
    m.update(y, pred, scores=p)
    report = m.report("cumulative")
    check_binary(report, y, pred, p, 100)
    assert report["positive_label"] == "1" and report["confusion"]["labels"] == ["0", "1"]


def test_window_is_the_last_window_size_rows_at_the_last_sub_window_boundary():
    y, pred, p = binary_stream(5437, seed=2)
    m = ClassificationMetrics(window_size=1000, subwindows=5, n_score_bins=50)
    for a in range(0, len(y), 613):
        m.update(y[a : a + 613], pred[a : a + 613], scores=p[a : a + 613])
    window = slice(4400, 5400)  # 5437 rows: the last boundary is at 5400
    check_binary(m.report("window"), y[window], pred[window], p[window], 50)
    check_binary(m.report("cumulative"), y, pred, p, 50)


def test_completed_windows_report_the_rows_just_before_them():
    y, pred, p = binary_stream(2600, seed=3)
    m = ClassificationMetrics(window_size=1000, subwindows=4, n_score_bins=20)
    found = m.update(y[:1700], pred[:1700], scores=p[:1700]) + m.update(y[1700:], pred[1700:], scores=p[1700:])
    assert [(w["position"], w["row"]) for w in found] == [
        (1000, 999),
        (1250, 1249),
        (1500, 1499),
        (1750, 49),
        (2000, 299),
        (2250, 549),
        (2500, 799),
    ]
    for w in found:
        rows = slice(w["position"] - 1000, w["position"])
        assert w["report"]["accuracy"] == pytest.approx(skm.accuracy_score(y[rows], pred[rows]), abs=1e-15)
        assert w["report"]["roc_auc"] == exact_auc(y[rows], binned(p[rows], 20))


def test_multiclass_metrics_with_class_scores_match_sklearn():
    y, pred, proba, names = multiclass_stream(4000, seed=4)
    yn, pn = [names[i] for i in y], [names[i] for i in pred]
    m = ClassificationMetrics(window_size=1000, subwindows=5, n_score_bins=100)
    m.update(yn, pn, class_scores=class_dicts(proba, names))
    r = m.report("cumulative")
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(yn, pn), abs=1e-15)
    for name in ("precision", "recall", "f1"):
        expected = getattr(skm, f"{name}_score")(yn, pn, average="macro")
        assert r[f"macro_{name}"] == pytest.approx(expected, abs=1e-15)
    assert r["precision"] is None  # no class "1"
    assert r["log_loss"] == pytest.approx(skm.log_loss(yn, proba, labels=names), abs=CLOSE)
    assert r["brier"] == pytest.approx(skm.brier_score_loss(yn, proba, labels=names), abs=CLOSE)
    # one class against the rest on binned scores, macro mean
    onehot = np.eye(len(names))[y]
    aucs = [exact_auc(onehot[:, k], binned(proba[:, k], 100)) for k in range(len(names))]
    assert r["roc_auc"] == pytest.approx(float(np.mean(aucs)), abs=1e-15)  # classes summed in another order
    sk_aucs = [skm.roc_auc_score(onehot[:, k], binned(proba[:, k], 100)) for k in range(len(names))]
    assert r["roc_auc"] == pytest.approx(float(np.mean(sk_aucs)), abs=1e-14)
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), abs=0.005)
    by_class = skm.confusion_matrix(yn, pn, labels=r["confusion"]["labels"]).tolist()
    assert r["confusion"]["matrix"] == by_class


def test_small_class_numbers_are_named_as_astype_names_them():
    """The table of small class numbers' names and int64's astype(str) (its fallback) agree."""
    rng = np.random.default_rng(7)
    many = [list(range(17)), list(range(240, 256)), list(range(240, 257))]  # past the few checked in Python
    drawn = [rng.integers(-3, 300, size=int(rng.integers(1, 20))).tolist() for _ in range(200)]
    for values in ([0, 1, 1, 0], [255, 3], [256, 2], [-1, 4], [2**62, 0], [0], [255], *many, *drawn):
        keys, expected = label_keys(values), np.array(values, dtype=np.int64).astype(str)
        assert keys.dtype == expected.dtype and keys.tolist() == expected.tolist()


def test_labels_map_to_classes_deterministically():
    assert label_keys([1, "1", True, 1.0, 0, False, "cat", 2.5, None]).tolist() == [
        "1",
        "1",
        "1",
        "1",
        "0",
        "0",
        "cat",
        "2.5",
        "null",
    ]
    assert label_keys(np.array([True, False])).tolist() == ["1", "0"]
    assert label_keys(np.array([2.0, np.nan]), missing="?").tolist() == ["2", "?"]
    m = ClassificationMetrics(window_size=10, subwindows=1)
    m.update([True, False, True], [1, "0", 1.0], scores=np.array([0.9, 0.2, 0.8]))
    r = m.report("cumulative")
    assert r["accuracy"] == 1.0 and r["confusion"]["labels"] == ["1", "0"] and r["recall"] == 1.0
    # "positive" as the user names it, any of the spellings
    assert ClassificationMetrics(window_size=10, subwindows=1, positive_label=True).positive == "1"


def test_classes_beyond_the_cap_go_to_other_and_are_counted():
    m = ClassificationMetrics(window_size=10, subwindows=1, max_classes=3)
    m.update(["a", "b", "c", "d", "e", "a"], ["a", "b", "c", "e", "d", "a"])
    r = m.report("cumulative")
    assert r["confusion"]["labels"] == ["a", "b", "c", "__other__"]
    assert r["other_values"] == 4  # d and e as labels and as predictions
    assert r["confusion"]["matrix"][3][3] == 2 and r["accuracy"] == 1.0  # d/e confused inside __other__


def test_invalid_and_missing_scores_are_skipped():
    m = ClassificationMetrics(window_size=10, subwindows=1, n_score_bins=10)
    m.update([1, 0, 1, 0], [1, 0, 0, 0], scores=np.array([0.9, np.nan, 1.7, 0.2]))
    r = m.report("cumulative")
    assert (r["rows"], r["scored"], m.invalid_scores) == (4, 2, 1)
    assert r["roc_auc"] == 1.0
    m.update([1], [1], class_scores=[{"1": 0.9, "0": 0.1}])  # the other kind of scores: ignored
    assert m.ignored_scores == 1 and m.report("cumulative")["scored"] == 2


def test_batch_boundaries_do_not_change_the_state():
    y, pred, p = binary_stream(2500, seed=5)
    ym, pm, proba, names = multiclass_stream(2500, seed=6)
    ym, pm = [names[i] for i in ym], [names[i] for i in pm]
    dicts = class_dicts(proba, names)
    results = []
    for size in (1, 7, 1000):
        binary = ClassificationMetrics(window_size=500, subwindows=5, n_score_bins=20)
        multi = ClassificationMetrics(window_size=500, subwindows=5, n_score_bins=20)
        windows = []
        for a in range(0, 2500, size):
            b = a + size
            windows += [w["position"] for w in binary.update(y[a:b], pred[a:b], scores=p[a:b])]
            multi.update(ym[a:b], pm[a:b], class_scores=dicts[a:b])
        results.append((state_bytes(binary), state_bytes(multi), windows))
    assert results[0] == results[1] == results[2]


def test_classification_state_round_trip():
    y, pred, p = binary_stream(3000, seed=7)
    m = ClassificationMetrics(window_size=600, subwindows=3, n_score_bins=10)
    m.update(y[:1234], pred[:1234], scores=p[:1234])
    restored = ClassificationMetrics(window_size=600, subwindows=3, n_score_bins=10)
    restored.load_state(orjson.loads(state_bytes(m)))
    assert state_bytes(restored) == state_bytes(m)
    assert restored.update(y[1234:], pred[1234:], scores=p[1234:]) == m.update(y[1234:], pred[1234:], scores=p[1234:])
    assert state_bytes(restored) == state_bytes(m)
    empty = ClassificationMetrics(window_size=600, subwindows=3)
    empty.load_state(orjson.loads(state_bytes(ClassificationMetrics(window_size=600, subwindows=3))))
    assert empty.report()["rows"] == 0 and empty.report()["accuracy"] is None


# -- regression -------------------------------------------------------------------------


def regression_stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = 1000 + rng.normal(0, 3, n)  # large mean, small spread: R² must not cancel out
    return y, y + rng.normal(0.2, 1.0, n)


def test_regression_metrics_match_sklearn_cumulative_and_windowed():
    y, yhat = regression_stream(5321, seed=8)
    m = RegressionMetrics(window_size=1000, subwindows=4)
    for a in range(0, len(y), 777):
        m.update(y[a : a + 777], yhat[a : a + 777])
    for scope, rows in (("cumulative", slice(None)), ("window", slice(4250, 5250))):
        r, yt, yp = m.report(scope), y[rows], yhat[rows]
        assert r["rows"] == len(yt)
        assert r["mae"] == pytest.approx(skm.mean_absolute_error(yt, yp), rel=1e-12)
        assert r["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(yt, yp)), rel=1e-12)
        assert r["r2"] == pytest.approx(skm.r2_score(yt, yp), rel=1e-9)
        assert r["mape"] == pytest.approx(skm.mean_absolute_percentage_error(yt, yp), rel=1e-12)
        assert r["mean_error"] == pytest.approx(float(np.mean(yt - yp)), rel=1e-9)
        assert r["mae_se"] == pytest.approx(float(np.std(np.abs(yt - yp)) / np.sqrt(len(yt))), rel=1e-6)


def test_mape_skips_zero_targets_and_counts_them():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 4, 500).astype(float)
    yhat = y + rng.normal(0, 0.5, 500)
    m = RegressionMetrics(window_size=100, subwindows=1)
    m.update(y.tolist() + [None, "x"], yhat.tolist() + [1.0, 2.0])
    r = m.report("cumulative")
    nonzero = y != 0
    assert r["zero_targets"] == int((~nonzero).sum()) and r["invalid"] == 2 and r["rows"] == 500
    assert r["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y[nonzero], yhat[nonzero]), rel=1e-12)


def test_mape_of_a_target_tiny_against_its_error_is_none_not_infinite():
    """A target the contract accepts (5e-324, a subnormal; 1e-300) with an error of 1 gives an absolute
    percentage error beyond any float: every report, as its docstring says, gives None for what is not finite
    (MAPE gave inf: /status, the exporter's gauge, and the cumulative report for good); the rest stays."""
    m = RegressionMetrics(window_size=4, subwindows=2)
    windows = m.update([5e-324, 1e-300, 2.0, 4.0], [1.0, 1.0, 1.0, 2.0])
    for report in [windows[-1]["report"], m.report("window"), m.report("cumulative")]:
        assert report["mape"] is None and report["zero_targets"] == 0
        assert report["mae"] == pytest.approx(1.25) and report["mean_error"] == pytest.approx(0.25)
    m.update([2.0, 4.0], [1.0, 2.0])
    m.update([2.0, 4.0], [1.0, 2.0])  # the tiny targets left the window
    assert m.report("window")["mape"] == pytest.approx(0.5) and m.report("cumulative")["mape"] is None


def test_regression_batch_boundaries_and_round_trip():
    y, yhat = regression_stream(2100, seed=10)
    states = []
    for size in (1, 7, 1000):
        m = RegressionMetrics(window_size=400, subwindows=4)
        windows = []
        for a in range(0, len(y), size):
            windows += [w["position"] for w in m.update(y[a : a + size], yhat[a : a + size])]
        states.append((state_bytes(m), windows))
    assert states[0] == states[1] == states[2]
    restored = RegressionMetrics(window_size=400, subwindows=4)
    restored.load_state(orjson.loads(states[0][0]))
    assert state_bytes(restored) == states[0][0]


def test_infer_task():
    assert infer_task([0, 1, 1], [1, 1, 0]) == "classification"
    assert infer_task([True, False], [False, False]) == "classification"
    assert infer_task(["cat", "dog"], ["dog", "dog"]) == "classification"
    assert infer_task([1.0, 2.0, None], [2.0, 1.0, 3.0]) == "classification"  # whole numbers: classes
    assert infer_task([1.0, 2.5], [1.2, 2.0]) == "regression"
    assert infer_task(np.array([3, 4]), np.array([3.3, 4.1])) == "regression"


# -- degradation --------------------------------------------------------------------------


def accuracy_windows(correct: np.ndarray, window_size: int, subwindows: int) -> list[dict]:
    m = ClassificationMetrics(window_size=window_size, subwindows=subwindows)
    truth = np.ones(len(correct), dtype=int)
    out = []
    for a in range(0, len(correct), 1000):
        out += m.update(truth[a : a + 1000], correct[a : a + 1000].astype(int))
    return out


def test_accuracy_drop_is_flagged_within_three_sub_windows_and_stationary_never():
    rng = np.random.default_rng(12)
    change = 20_000
    correct = np.concatenate([rng.random(change) < 0.9, rng.random(10_000) < 0.75])
    test = DegradationTest(tolerance=0.05, alpha=0.01)  # reference learnt from the first window
    flagged = []
    for w in accuracy_windows(correct, window_size=1000, subwindows=5):
        verdict = test.check(w["report"]["accuracy"], w["report"]["rows"])
        if verdict is not None and verdict.degraded:
            flagged.append(w["position"])
    assert test.reference_value == pytest.approx(0.9, abs=0.02)
    # the learnt reference is 0.893, so the threshold 0.843; the window with 60% of its rows after the change
    # scored 0.834, but its 99% bound (0.860) does not exclude 0.843: the first flag comes at 80%, then every
    # window is flagged (the policy turns that into one drift event)
    assert flagged == list(range(change + 800, 30_001, 200))

    stationary = rng.random(100_000) < 0.9
    quiet = DegradationTest(tolerance=0.05, alpha=0.01, reference=0.9)
    verdicts = [
        quiet.check(w["report"]["accuracy"], w["report"]["rows"])
        for w in accuracy_windows(stationary, window_size=1000, subwindows=5)
    ]
    assert len(verdicts) == 496 and not any(v.degraded for v in verdicts)
    assert quiet.windows == 496 and quiet.degraded_windows == 0


def test_degradation_bound_agrees_with_its_p_value_and_the_point_estimate_is_not_enough():
    test = DegradationTest(tolerance=0.05, alpha=0.05, reference=0.9)
    just_below = test.check(0.845, 200)  # below 0.85, but 200 rows cannot tell
    assert not just_below.degraded and just_below.p_value > 0.05
    for value, n in ((0.82, 1000), (0.84, 5000), (0.7, 50), (0.86, 100)):
        v = test.check(value, n)
        assert v.degraded == (v.p_value < 0.05)
        low, high = wilson_interval(value * n, n, 1.6448536269514722)
        assert v.bound == pytest.approx(high)
    errors = DegradationTest(tolerance=0.05, alpha=0.05, reference=0.1, higher_is_better=False)
    v = errors.check(0.2, 500)
    assert v.degraded and v.threshold == pytest.approx(0.15) and v.bound > 0.15
    assert DegradationTest(tolerance=0.1).check(0.5, 100) is None  # learning


def test_state_round_trip_of_degradation_test():
    test = DegradationTest(tolerance=0.05, warmup_windows=2)
    test.check(0.9, 1000)
    test.check(0.8, 1000)
    restored = DegradationTest(tolerance=0.05, warmup_windows=2)
    restored.load_state(orjson.loads(state_bytes(test)))
    assert restored.reference_value == pytest.approx(0.85) and restored.check(0.7, 500) == test.check(0.7, 500)


# -- CBPE --------------------------------------------------------------------------------


def test_cbpe_estimates_the_realised_accuracy_of_calibrated_scores():
    rng = np.random.default_rng(13)
    p = rng.beta(2, 2, 40_000)
    y = rng.random(40_000) < p
    realised = (p > 0.5) == y
    cbpe = CBPE(window_size=2000, subwindows=4)
    windows = []
    for a in range(0, 40_000, 3000):
        windows += cbpe.update(p[a : a + 3000])
    gaps = [abs(w["estimated_accuracy"] - realised[w["position"] - 2000 : w["position"]].mean()) for w in windows]
    assert len(windows) == 77 and max(gaps) < 0.04 and np.mean(gaps) < 0.015
    assert cbpe.estimate("cumulative") == pytest.approx(realised.mean(), abs=0.01)
    assert cbpe.estimate("cumulative") == pytest.approx(cbpe_accuracy(p), abs=CLOSE)
    proba = np.stack([p, 1 - p], axis=1)
    assert cbpe_accuracy(proba) == pytest.approx(cbpe_accuracy(p))
    assert math.isnan(cbpe_accuracy(np.array([np.nan])))


def test_cbpe_batch_boundaries_and_round_trip():
    p = np.random.default_rng(14).random(1500)
    p[::10] = np.nan
    states = []
    for size in (1, 7, 1000):
        cbpe = CBPE(window_size=300, subwindows=3)
        for a in range(0, len(p), size):
            cbpe.update(p[a : a + size])
        states.append(state_bytes(cbpe))
    assert states[0] == states[1] == states[2]
    restored = CBPE(window_size=300, subwindows=3)
    restored.load_state(orjson.loads(states[0]))
    assert state_bytes(restored) == states[0] and restored.rows == 1350


# -- segments and fairness -------------------------------------------------------------------


def test_segment_metrics_and_fairness_gaps_against_numpy():
    rng = np.random.default_rng(15)
    n = 6000
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = (rng.random(n) < 0.4).astype(int)
    bias = np.select([group == "a", group == "b"], [0.0, 0.1], 0.2)
    pred = np.where(rng.random(n) < 0.8 - bias, y, 1 - y)
    region = rng.integers(0, 3, n)
    segments = [{"group": g, "region": int(r)} if i % 50 else None for i, (g, r) in enumerate(zip(group, region))]
    m = SegmentMetrics(["group", "region"], window_size=2000, subwindows=4, sensitive_attribute="group", min_count=30)
    for a in range(0, n, 999):
        m.update(y[a : a + 999], pred[a : a + 999], segments[a : a + 999])
    r = m.report("window")
    rows = slice(n - 2000, n)
    g, yw, pw = group[rows], y[rows], pred[rows]
    present = np.array([s is not None for s in segments[rows]])
    rates, tprs = [], []
    for value in ("a", "b", "c"):
        sel = (g == value) & present
        got = r["segments"]["group"][value]
        assert got["rows"] == int(sel.sum())
        assert got["accuracy"] == pytest.approx(float(np.mean(yw[sel] == pw[sel])), abs=1e-15)
        assert got["positive_rate"] == pytest.approx(float(np.mean(pw[sel] == 1)), abs=1e-15)
        assert got["tpr"] == pytest.approx(float(np.mean(pw[sel & (yw == 1)] == 1)), abs=1e-15)
        rates.append(got["positive_rate"])
        tprs.append(got["tpr"])
    assert r["segments"]["group"]["__missing__"]["rows"] == int((~present).sum())
    assert r["fairness"]["segments"] == ["a", "b", "c"]
    assert r["fairness"]["demographic_parity_difference"] == pytest.approx(max(rates) - min(rates), abs=1e-15)
    assert r["fairness"]["equal_opportunity_difference"] == pytest.approx(max(tprs) - min(tprs), abs=1e-15)
    assert r["fairness"]["equal_opportunity_difference"] > 0.1  # the injected bias shows
    assert set(r["segments"]["region"]) == {"0", "1", "2", "__missing__"}


def test_segment_values_beyond_the_cap_share_other_and_small_segments_stay_out_of_gaps():
    m = SegmentMetrics(["city"], window_size=10, subwindows=1, max_segments=2, sensitive_attribute="city", min_count=2)
    m.update(
        [1, 1, 0, 1, 0, 1],
        [1, 0, 0, 1, 1, 1],
        [{"city": "x"}, {"city": "x"}, {"city": "y"}, {"city": "y"}, {"city": "z"}, {"city": "w"}],
    )
    r = m.report("cumulative")
    assert list(r["segments"]["city"]) == ["x", "y", "__other__"] and r["overflow"] == {"city": 2}
    assert r["fairness"]["segments"] == ["x", "y"]
    assert r["fairness"]["demographic_parity_difference"] == 0.0
    assert r["fairness"]["equal_opportunity_difference"] is None  # 'y' has one positive: below min_count


def test_segment_batch_boundaries_and_round_trip():
    rng = np.random.default_rng(16)
    y, pred = rng.integers(0, 2, 1200), rng.integers(0, 2, 1200)
    segs = [{"s": int(v)} for v in rng.integers(0, 30, 1200)]
    states = []
    for size in (1, 7, 1000):
        m = SegmentMetrics(["s"], window_size=300, subwindows=3, max_segments=10, sensitive_attribute="s")
        for a in range(0, 1200, size):
            m.update(y[a : a + size], pred[a : a + size], segs[a : a + size])
        states.append(state_bytes(m))
    assert states[0] == states[1] == states[2]
    restored = SegmentMetrics(["s"], window_size=300, subwindows=3, max_segments=10, sensitive_attribute="s")
    restored.load_state(orjson.loads(states[0]))
    assert state_bytes(restored) == states[0] and restored.report() == m.report()


# -- versions side by side -----------------------------------------------------------------------


def test_version_comparison_newcombe_interval():
    # Newcombe (1998), example (e): 56/70 against 48/80, hybrid score interval 0.0524 to 0.3339
    cmp = VersionComparison(window_size=150, subwindows=1, alpha=0.05)
    cmp.update(["a"] * 70 + ["b"] * 80, np.array([1] * 56 + [0] * 14 + [1] * 48 + [0] * 32, dtype=bool))
    r = cmp.compare("a", "b")
    assert (round(r["ci_low"], 4), round(r["ci_high"], 4)) == (0.0524, 0.3339)
    assert r["difference"] == pytest.approx(0.2) and r["worse"] == "b" and r["significant"]
    mirrored = cmp.compare("b", "a")
    assert (round(mirrored["ci_low"], 4), round(mirrored["ci_high"], 4)) == (-0.3339, -0.0524)
    assert mirrored["worse"] == "b"
    errors = VersionComparison(window_size=150, subwindows=1, alpha=0.05, metric="error_rate")
    errors.update(["a"] * 70 + ["b"] * 80, np.array([1] * 56 + [0] * 14 + [1] * 48 + [0] * 32, dtype=bool))
    e = errors.compare("a", "b")
    assert (round(e["ci_low"], 4), round(e["ci_high"], 4)) == (-0.3339, -0.0524) and e["worse"] == "b"
    assert e["p_value"] == pytest.approx(r["p_value"]) and r["p_value"] < 0.05


def test_version_comparison_on_the_window_and_with_no_difference():
    rng = np.random.default_rng(17)
    versions = rng.choice(["v1", "v2", None], 6000, p=[0.6, 0.35, 0.05]).tolist()
    same = rng.random(6000) < 0.9
    cmp = VersionComparison(window_size=3000, subwindows=3, alpha=0.05)
    for a in range(0, 6000, 1234):
        cmp.update(versions[a : a + 1234], same[a : a + 1234])
    r = cmp.report("window")
    assert r["baseline"] == "v1" and set(r["versions"]) == {"v1", "v2", "__none__"}
    v = np.array(versions[3000:], dtype=object)
    assert r["versions"]["v2"]["rows"] == int(np.sum(v == "v2"))
    assert r["versions"]["v2"]["value"] == pytest.approx(float(same[3000:][v == "v2"].mean()), abs=1e-15)
    comparison = cmp.compare("v2", "v1")
    assert comparison["ci_low"] < 0 < comparison["ci_high"] and comparison["worse"] is None
    assert cmp.compare("v1", "v9")["n_b"] == 0 and not cmp.compare("v1", "v9")["significant"]


def test_version_comparison_batch_boundaries_and_round_trip():
    rng = np.random.default_rng(18)
    versions = [f"v{i}" for i in rng.integers(0, 15, 1300)]
    correct = rng.random(1300) < 0.8
    states = []
    for size in (1, 7, 1000):
        cmp = VersionComparison(window_size=400, subwindows=4, max_versions=5)
        for a in range(0, 1300, size):
            cmp.update(versions[a : a + size], correct[a : a + size])
        states.append(state_bytes(cmp))
    assert states[0] == states[1] == states[2]
    restored = VersionComparison(window_size=400, subwindows=4, max_versions=5)
    restored.load_state(orjson.loads(states[0]))
    assert state_bytes(restored) == states[0]
    assert restored.versions.overflow > 0 and "__other__" in restored.versions.names


def test_window_settings_are_checked():
    with pytest.raises(ValueError, match="must divide"):
        ClassificationMetrics(window_size=1000, subwindows=3)
    with pytest.raises(ValueError, match="scope"):
        RegressionMetrics(window_size=10, subwindows=2).report("daily")


def test_version_comparison_known_versions_shortcut_changes_nothing(monkeypatch) -> None:
    """Versions already registered are looked up directly: the same state as through label_keys,
    with versions that numpy would change (a trailing NUL), None, new ones and the cap."""
    from streamdrift.core.metrics import VersionComparison

    rng = np.random.default_rng(5)
    choices = ["v1", "v2", "v1\x00", None, "v3", "v4", "v5"]
    batches = [
        [choices[i] for i in rng.integers(0, 2 if k % 3 else min(3 + k // 10, len(choices)), rng.integers(1, 60))]
        for k in range(60)
    ]
    fast, slow = VersionComparison(200, 5, max_versions=3), VersionComparison(200, 5, max_versions=3)
    monkeypatch.setattr(slow, "_known", lambda versions: None)
    for versions in batches:
        correct = rng.random(len(versions)) < 0.7
        fast.update(versions, correct)
        slow.update(versions, correct)
    a, b = fast.state(), slow.state()
    assert orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY) == orjson.dumps(b, option=orjson.OPT_SERIALIZE_NUMPY)
    assert fast.versions.overflow > 0
