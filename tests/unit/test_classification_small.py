"""The plain-Python path of ``ClassificationMetrics.update`` (``metrics/classification_small.py``) gives the
general path's state, byte for byte, and the same window reports, on seeded streams cut into small batches."""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core.metrics import classification
from streamdrift.core.metrics.classification import ClassificationMetrics
from streamdrift.core.metrics.classification_small import update_small
from streamdrift.core.state import encode_tree

# scores a stream draws from besides uniform ones: the clip's ends, bin edges, outside [0, 1], absent
_SPECIAL = [0.0, 1.0, 0.25, 0.5, 0.75, 0.02, 0.98, 1e-300, 1 - 2**-53, -0.5, 1.5, np.nan, np.nan]


def _stream(seed: int, n: int, classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and predictions (mostly the first two classes; the others come later), positive-class scores."""
    rng = np.random.default_rng(seed)
    weights = np.array([10.0, 10.0] + [1.0] * (len(classes) - 2))
    late = np.arange(n) < n // 3  # the first third sees the first two classes only
    truth = rng.choice(classes, size=n, p=weights / weights.sum())
    predicted = np.where(rng.random(n) < 0.7, truth, rng.choice(classes, size=n, p=weights / weights.sum()))
    truth = np.where(late & ~np.isin(truth, classes[:2]), classes[0], truth)
    predicted = np.where(late & ~np.isin(predicted, classes[:2]), classes[1], predicted)
    scores = rng.random(n)
    special = rng.random(n) < 0.3
    scores[special] = rng.choice(np.array(_SPECIAL), size=int(special.sum()))
    return truth.astype(str), predicted.astype(str), scores


def _feed(metrics: ClassificationMetrics, stream, sizes: np.ndarray, scored: bool) -> list[tuple[int, int, dict]]:
    truth, predicted, scores = stream
    windows, at = [], 0
    for size in sizes.tolist():
        if at >= len(truth):
            break
        sl = slice(at, at + size)
        out = metrics.update(truth[sl], predicted[sl], scores[sl] if scored else None)
        windows += [(w["position"], w["row"] + at, w["report"]) for w in out]
        at += size
    assert at >= len(truth)
    return windows


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("max_classes", "positive", "scored"),
    [(20, "1", True), (20, "c", True), (2, "1", True), (20, "1", False), (3, "d", True)],
)
def test_small_batches_give_the_general_paths_state(
    seed: int, max_classes: int, positive: str, scored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _stream(seed, 600, ["0", "1", "c", "d"])
    sizes = np.random.default_rng(100 + seed).integers(1, 11, size=600)  # 1 to 10 rows: small and general

    def make() -> ClassificationMetrics:
        return ClassificationMetrics(window_size=120, subwindows=4, n_score_bins=8, max_classes=max_classes,
                                     positive_label=positive)  # fmt: skip

    calls = {"small": 0, "starts": 0, "registers": 0}

    def counted(metrics: ClassificationMetrics, *args: object) -> bool:
        starts, classes = metrics.rows % metrics.slot_size == 0, len(metrics.classes)
        done = update_small(metrics, *args)  # type: ignore[arg-type]
        calls["small"] += done
        calls["starts"] += done and starts  # a sub-window zeroed first
        calls["registers"] += done and len(metrics.classes) > classes  # new classes registered
        return done

    monkeypatch.setattr(classification, "update_small", counted)
    fast = make()
    fast_windows = _feed(fast, stream, sizes, scored)
    monkeypatch.setattr(classification, "update_small", lambda *args: False)
    general = make()
    general_windows = _feed(general, stream, sizes, scored)
    whole = make()  # one batch: the general path alone, as batch-split invariance says
    whole_windows = _feed(whole, stream, np.array([600]), scored)

    # most batches (the others close a sub-window, or bring a class past the cap): not vacuous
    assert calls["small"] >= 40 and calls["starts"] >= 1 and calls["registers"] >= 1
    assert encode_tree(fast.state(), "c") == encode_tree(general.state(), "c") == encode_tree(whole.state(), "c")
    assert fast_windows == general_windows == whole_windows  # a report, whole, whatever the batches
    assert len(whole_windows) == 600 // 30 - 3  # a report per sub-window close from the first full window


def test_a_batch_the_plain_path_leaves_changes_nothing() -> None:
    metrics = ClassificationMetrics(window_size=40, subwindows=2, n_score_bins=4)
    metrics.update(np.array(["1", "0", "1"]), np.array(["1", "1", "0"]), np.array([0.9, 0.6, 0.3]))
    before = encode_tree(metrics.state(), "c")
    capped = ClassificationMetrics(window_size=40, subwindows=2, n_score_bins=4, max_classes=2)
    capped.update(np.array(["1", "0", "1"]), np.array(["1", "1", "0"]), np.array([0.9, 0.6, 0.3]))
    before_capped = encode_tree(capped.state(), "c")
    assert not update_small(capped, np.array(["0", "2"]), np.array(["0", "0"]), None)  # a class past the cap
    assert encode_tree(capped.state(), "c") == before_capped
    unknown = ClassificationMetrics(window_size=40, subwindows=2, n_score_bins=4, positive_label="c")
    assert not update_small(unknown, np.array(["1"]), np.array(["0"]), np.array([1.5]))  # scores, no positive class
    assert encode_tree(unknown.state(), "c") == encode_tree(
        ClassificationMetrics(window_size=40, subwindows=2, n_score_bins=4, positive_label="c").state(), "c"
    )
    for truth, predicted, scores in [
        (["1"] * 17, ["1"] * 17, None),  # closes the sub-window
        (["1"] * 9, ["1"] * 9, None),  # more than SMALL_ROWS
        (["1"], ["0", "1"], None),  # lengths differ: the general path raises
    ]:
        s = None if scores is None else np.array(scores)
        assert not update_small(metrics, np.array(truth), np.array(predicted), s)
        assert encode_tree(metrics.state(), "c") == before
