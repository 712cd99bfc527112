"""A classification report's figures for a few classes in plain Python: the same numbers, without numpy's calls.

Every checkpoint record of a model carries its summary, and the summary its cumulative report (issue 19): at
2,000 models in their warm-up, ``ClassificationMetrics.report`` was most of what the records' summaries cost,
and most of that was the fixed cost of numpy's calls on matrices of two or three classes (``label_metrics``
about twenty calls, the calibration error a dozen per class), not arithmetic. Here the same figures are
computed from the counts as lists, with the same float64 operations in the same order: each division is of
counts made floats first, as numpy's of the same arrays (below 2**53 they are exact; past it Python's int / int
would round once where numpy rounds three times); every sum of floats is made in numpy's order (`numpy_sum`: its
pairwise summation, eight running sums past seven terms), so each figure is numpy's to the last bit, whatever
the counts as long as numpy's int64 sums of them do not overflow. ``tests/unit/test_report_small.py`` checks
it against the numpy functions.

Examples
--------
>>> label_metrics_small([[2, 1], [0, 1]], ["a", "b"], 1)["f1"]
0.6666666666666666
>>> numpy_sum([0.1] * 10), sum([0.1] * 10)  # numpy's order (eight running sums), and one by one
(1.0, 0.9999999999999999)
>>> score_figures_small([[[3, 1, 0], [0, 1, 2]]], [[0, 0, 0]])[0]  # roc_auc of one class: ties count half
0.9583333333333334
"""

from __future__ import annotations

from typing import Any

from streamdrift.core.metrics.windows import SCALE

# classes up to which ``report`` uses these: label metrics cost 5 us at 2 classes, 14 at 12 and 26 at 20 against
# numpy's 20, 23 and 26; the score figures (50 bins) 24, 144 and 238 us against 31, 155 and 249 (2026-12-05)
SMALL_CLASSES = 16
_BLOCK = 128  # numpy's PW_BLOCKSIZE: a sum of more terms is split in two halves


def numpy_sum(values: list[float]) -> float:
    """``float(np.sum(values))`` of float64s: the same additions in numpy's order (`_pairwise`), onto the
    reduction's identity, 0.0 (so that a sum of -0.0s is 0.0, as numpy's)."""
    return 0.0 + _pairwise(values, 0, len(values))


def _pairwise(values: list[float], start: int, n: int) -> float:
    """numpy's pairwise summation of ``values[start:start + n]``: fewer than eight terms one by one from -0.0;
    up to 128 terms into eight running sums, combined pairwise, then the rest one by one; more in two halves
    (the first a multiple of eight), recursively."""
    if n < 8:
        total = -0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    if n <= _BLOCK:
        r = values[start : start + 8]
        whole = n - n % 8
        for i in range(start + 8, start + whole, 8):
            for j in range(8):
                r[j] += values[i + j]
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for i in range(start + whole, start + n):
            total += values[i]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise(values, start, half) + _pairwise(values, start + half, n - half)


def numpy_mean(values: list[float]) -> float:
    """``float(np.mean(values))`` of float64s: numpy's sum divided by the count."""
    return numpy_sum(values) / len(values)


def no_label_metrics() -> dict[str, Any]:
    """The label metrics of no graded pair (both ``label_metrics`` paths)."""
    return {
        "accuracy": None,
        "error_rate": None,
        "precision": None,
        "recall": None,
        "f1": None,
        "macro_precision": None,
        "macro_recall": None,
        "macro_f1": None,
        "per_class": {},
    }


def label_metrics_small(confusion: list[list[int]], names: list[str], positive: int | None) -> dict[str, Any]:
    """``classification.label_metrics`` of the confusion matrix as lists (``matrix.tolist()``): the same dict."""
    k = len(confusion)
    actual = [sum(row) for row in confusion]
    total = sum(actual)
    if not total:
        return no_label_metrics()
    hits = [float(confusion[i][i]) for i in range(k)]
    predicted = [sum(row[j] for row in confusion) for j in range(k)]
    precision = [h / p if p > 0 else 0.0 for h, p in zip(hits, predicted)]
    recall = [h / a if a > 0 else 0.0 for h, a in zip(hits, actual)]
    f1 = [2 * h / (a + p) if a + p > 0 else 0.0 for h, a, p in zip(hits, actual, predicted)]
    present = [i for i in range(k) if actual[i] + predicted[i] > 0]
    # numpy's order: the counts are exact floats, but past 2**53 rows their sum is not, and then its order shows
    accuracy = numpy_sum(hits) / total
    out: dict[str, Any] = {"accuracy": accuracy, "error_rate": 1 - accuracy}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[name] = values[positive] if positive is not None else None
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out["macro_" + name] = numpy_mean([values[i] for i in present])
    out["per_class"] = {
        names[i]: {"support": actual[i], "precision": precision[i], "recall": recall[i], "f1": f1[i]} for i in present
    }
    return out


def score_figures_small(
    histograms: list[list[list[int]]], score_sums: list[list[int]]
) -> tuple[float | None, float | None]:
    """``classification.score_figures`` of the arrays as lists: the macro ROC AUC and calibration error."""
    auc = [a for a in (binned_auc(negatives, positives) for negatives, positives in histograms) if a is not None]
    ece = [e for e in (_ece(h, s) for h, s in zip(histograms, score_sums)) if e is not None]
    return (numpy_mean(auc) if auc else None), (numpy_mean(ece) if ece else None)


def binned_auc(negatives: list[int], positives: list[int]) -> float | None:
    """ROC AUC of one class against the rest from its binned scores: ties within a bin count half."""
    n_neg, n_pos = sum(negatives), sum(positives)
    if not n_neg or not n_pos:
        return None
    below, twice = 0, 0  # integers: exact, then one rounding
    for neg, pos in zip(negatives, positives):
        twice += pos * (2 * below + neg)
        below += neg
    return twice / (2 * n_pos * n_neg)


def _ece(histogram: list[list[int]], score_sums: list[int]) -> float | None:
    """Expected calibration error of one class's probabilities over the histogram's bins (``classification._ece``)."""
    others, its = histogram
    terms = []
    for other, own, fixed in zip(others, its, score_sums):
        count = other + own
        if count > 0:
            mean_score = float(fixed) / SCALE / count  # as numpy: the int64 sum made a float64 first
            # its share as numpy makes it, of the counts made floats first (Python's int / int is the exact
            # quotient rounded once: another float where the counts pass 2**53)
            terms.append(count * abs(mean_score - float(own) / count))
    if not terms:
        return None
    return numpy_sum(terms) / (sum(others) + sum(its))
