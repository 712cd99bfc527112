"""``ClassificationMetrics.update`` for a handful of rows in plain Python: the same state, without its numpy calls.

A fleet's model gets its labels a few at a time (a checkpoint every few events per model flushes every model's
rows, issue 19), and ``update`` costs about forty numpy calls whatever the rows: the label keys, the scores'
checks, the loss terms, three ``bincount`` s and a dozen additions into the sub-window and the totals. Here a
batch of up to ``SMALL_ROWS`` rows in the usual case (binary scores or none, the batch within one sub-window
that it does not close) is counted row by row into the same arrays, with the same integers: the loss terms are
the same float64 operations, rounded to fixed point as ``fixed_point`` does (``round`` is half-even, as
``np.rint``), and the logarithm is numpy's, over the batch's scored rows, so its last bit is the general
path's. A batch that starts a sub-window zeroes it first, as the general path does. A batch that brings new
classes registers them as ``_register`` does, in stream order (each row's label, its prediction, then the
positive class at the first row with a valid score), unless one would fall into ``__other__`` (the cap): a
model's first labels are such a batch, and the general path's registration was most of what a fleet's new
model paid for them (issue 19). Any other batch is left to the general path (``update_small`` returns False,
having changed nothing). ``tests/unit/test_classification_small.py`` checks the states equal.

Examples
--------
>>> import numpy as np
>>> from streamdrift.core.metrics.classification import ClassificationMetrics
>>> m = ClassificationMetrics(window_size=40, subwindows=2, n_score_bins=4)
>>> m.update(np.array(["1", "0"]), np.array(["1", "1"]), np.array([0.9, 0.6]))  # new classes, a new sub-window
[]
>>> update_small(m, np.array(["0"]), np.array(["0"]), np.array([0.2])), m.rows
(True, 3)
>>> update_small(m, np.array(["2"]), np.array(["0"]), None), m.classes.names  # a new class, registered
(True, ['1', '0', '2'])
>>> update_small(m, np.array(["0"] * 16), np.array(["0"] * 16), None), m.rows  # closes the sub-window: general
(False, 4)
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.metrics.labels import OTHER
from streamdrift.core.metrics.windows import SCALE

if TYPE_CHECKING:
    from streamdrift.core.metrics.classification import ClassificationMetrics

SMALL_ROWS = 8  # up to this many rows counted here: past about a dozen, numpy's calls cost less than the rows
EPS = float(np.finfo(np.float64).eps)  # probabilities are clipped to [eps, 1 - eps] in log loss, as sklearn does

_INNER_EDGES: dict[int, list[float]] = {}


def _inner_edges(n_bins: int) -> list[float]:
    """``classification._inner_score_edges(n_bins)`` as a list (the same numbers), made once per size."""
    edges = _INNER_EDGES.get(n_bins)
    if edges is None:
        edges = np.linspace(0, 1, n_bins + 1)[1:-1].tolist()
        if len(_INNER_EDGES) < 64:
            _INNER_EDGES[n_bins] = edges
    return edges


def update_small(
    metrics: ClassificationMetrics,
    truth: NDArray[np.str_],
    predicted: NDArray[np.str_],
    scores: NDArray[np.float64] | None,
) -> bool:
    """``metrics.update(truth, predicted, scores)`` of class names (``label_keys``) where the batch is small and
    usual; returns whether it did (False: nothing changed, the general path's turn)."""
    n = len(truth)
    fill = metrics.rows % metrics.slot_size
    if not 0 < n <= SMALL_ROWS or len(predicted) != n or fill + n >= metrics.slot_size:
        return False  # a sub-window closes within it (a window's report)
    index = metrics.classes._index
    if metrics.confusion.shape[1] != len(index):
        return False
    if scores is not None and not isinstance(scores, np.ndarray):
        return False
    present = [] if scores is None else [(i, s) for i, s in enumerate(scores.tolist()) if s == s]  # NaN: absent
    if present and metrics.score_mode == "class_scores":
        return False  # scores to ignore
    valid = [(i, s) for i, s in present if 0 <= s <= 1]
    positive = metrics.positive
    names, predicted_names = truth.tolist(), predicted.tolist()
    new = _new_classes(metrics, names, predicted_names, valid[0][0] if valid else None, positive)
    if new is None or (present and positive not in index and positive not in new):
        return False  # a class past the cap, or scores of a positive class not registered
    for name, row in new.items():  # nothing changed before this point
        metrics.classes._add(name, row)
    if new:
        metrics._grow()
    if fill == 0:  # the batch starts a sub-window: zeroed first, as the general path's fresh chunk
        slot = (metrics.rows // metrics.slot_size) % (metrics.subwindows + 1)
        for array in (metrics.confusion, metrics.histograms, metrics.score_sums, metrics.losses):
            array[slot] = 0
    t = [index[name] for name in names]
    p = [index[name] for name in predicted_names]
    _count(metrics, t, p, valid, truth, index.get(positive), positive)
    if present:
        metrics.score_mode = "binary"
        metrics.invalid_scores += len(present) - len(valid)
    metrics.rows += n
    return True


def _new_classes(
    metrics: ClassificationMetrics, truth: list[str], predicted: list[str], first_valid: int | None, positive: str
) -> dict[str, int] | None:
    """The classes ``_register`` would add, in order, with their stream rows (``Registry.register`` over each
    row's label, its prediction, then the positive class at ``first_valid``); None where a class would fall
    into ``__other__`` (the general path counts it)."""
    registry = metrics.classes
    index, cap = registry._index, registry.cap
    new: dict[str, int] = {}
    for i, (true, pred) in enumerate(zip(truth, predicted)):
        for name in (true, pred, positive) if i == first_valid else (true, pred):
            if name in index or name in new:
                continue
            if len(index) + len(new) - (OTHER in index or OTHER in new) >= cap:
                return None  # past the cap
            new[name] = metrics.rows + i
    return new


def _count(
    metrics: ClassificationMetrics,
    t: list[int],
    p: list[int],
    scored: list[tuple[int, float]],
    truth: NDArray[np.str_],
    positive_index: int | None,
    positive: str,
) -> None:
    """Count the rows into their sub-window and the totals (``ClassificationMetrics._add``'s arrays)."""
    slot = (metrics.rows // metrics.slot_size) % (metrics.subwindows + 1)
    total = metrics.subwindows + 1
    confusion = metrics.confusion
    for true, pred in zip(t, p):
        confusion[slot, true, pred] += 1
        confusion[total, true, pred] += 1
    if not scored:
        return
    assert positive_index is not None  # update_small checked it
    names = truth.tolist()
    is_pos = [names[i] == positive for i, _ in scored]
    probs = [s for _, s in scored]
    p_true = [s if pos else 1 - s for s, pos in zip(probs, is_pos)]
    # numpy's logarithm, as the general path's (math.log may differ in the last bit)
    logs = np.log(np.array([min(max(x, EPS), 1 - EPS) for x in p_true], dtype=np.float64)).tolist()
    log_loss = sum(round(-x * SCALE) for x in logs)
    brier = sum(round((s - pos) * (s - pos) * SCALE) for s, pos in zip(probs, is_pos))
    losses = metrics.losses
    for target in (slot, total):
        losses[target, 0] += len(scored)
        losses[target, 1] += log_loss
        losses[target, 2] += brier
    edges = _inner_edges(metrics.n_score_bins)
    histograms, histogram_totals = metrics.histograms, metrics.histogram_totals
    score_sums, score_sum_totals = metrics.score_sums, metrics.score_sum_totals
    for s, pos in zip(probs, is_pos):
        b = bisect.bisect_right(edges, s)
        fixed = round(s * SCALE)
        histograms[slot, positive_index, int(pos), b] += 1
        histogram_totals[positive_index, int(pos), b] += 1
        score_sums[slot, positive_index, b] += fixed
        score_sum_totals[positive_index, b] += fixed
