"""Classification metrics over a sliding window and since the start."""

from __future__ import annotations

import numpy as np

from streamdrift.core.metrics.classification_small import EPS, update_small
from streamdrift.core.metrics.labels import OTHER, Registry, label_keys
from streamdrift.core.metrics.report_small import (
    SMALL_CLASSES,
    binned_auc,
    label_metrics_small,
    no_label_metrics,
    score_figures_small,
)
from streamdrift.core.metrics.windows import (
    SCALE,
    Windowed,
    fixed_point,
    grown,
    ratio,
    split_counts,
    unsplit_counts,
)
from streamdrift.core.sketch import count_dtype

_EPS = EPS  # probabilities are clipped to [eps, 1 - eps] in log loss, as sklearn does


_SCORE_EDGES: dict[int, np.ndarray] = {}


def _inner_score_edges(n_bins: int) -> np.ndarray:
    """The inner edges of ``n_bins`` equal score bins in [0, 1]: made once per size (read only, shared)."""
    edges = _SCORE_EDGES.get(n_bins)
    if edges is None:
        edges = np.linspace(0, 1, n_bins + 1)[1:-1]
        edges.flags.writeable = False
        if len(_SCORE_EDGES) < 64:
            _SCORE_EDGES[n_bins] = edges
    return edges


class ClassificationMetrics(Windowed):
    """Accuracy, precision, recall, F1, log loss, Brier, ROC AUC, calibration error, confusion matrix.

    Scores come either as ``scores``, the probability of ``positive_label``
    (binary), or as ``class_scores``, one ``{class: probability}`` dict per row
    (multiclass). From them: log loss and Brier score (sklearn's definitions;
    the multiclass Brier score is not halved), and per class a histogram of
    ``n_score_bins`` equal bins of [0, 1] for the rows of that class and for
    the others, with the sum of the probabilities per bin. ROC AUC (one class
    against the rest, macro mean over classes) is computed from the histograms:
    it equals the AUC of the scores rounded to their bins. The expected
    calibration error is, per class, ``sum_b n_b / n |mean score_b - share of the class_b|``
    over the same bins, averaged over classes.

    Parameters
    ----------
    window_size
        Rows in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.
    n_score_bins
        Equal-width bins of [0, 1] for score histograms.
    max_classes
        Classes tracked; the rest are counted under ``__other__``.
    positive_label
        The positive class of binary precision, recall and F1 and of ``scores``.

    Examples
    --------
    >>> m = ClassificationMetrics(window_size=4, subwindows=2, n_score_bins=4)
    >>> windows = m.update(["a", "b", "a", "c", "a"], ["a", "b", "b", "c", "a"])
    >>> [(w["position"], w["row"], w["report"]["accuracy"]) for w in windows]
    [(4, 3, 0.75)]
    >>> r = m.report("cumulative")
    >>> r["accuracy"], r["confusion"]
    (0.8, {'labels': ['a', 'b', 'c'], 'matrix': [[2, 1, 0], [0, 1, 0], [0, 0, 1]]})
    >>> round(r["macro_f1"], 4), r["precision"]
    (0.8222, None)
    """

    def __init__(
        self,
        window_size: int,
        subwindows: int = 5,
        n_score_bins: int = 50,
        max_classes: int = 20,
        positive_label: str | int | bool = "1",
    ):
        self.window_size = window_size
        self.subwindows = subwindows
        self.n_score_bins = n_score_bins
        self.max_classes = max_classes
        self.positive_label = positive_label
        self._positive: tuple | None = None  # a cache, not state: (positive_label, its class name)
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        slots, bins = self.subwindows + 2, self.n_score_bins
        self.rows = 0
        self.classes = Registry(self.max_classes)
        self.score_mode: str | None = None  # "binary" or "class_scores", set by the first scores
        self.invalid_scores = 0  # outside [0, 1]
        self.ignored_scores = 0  # of the other mode than the first
        self.confusion = np.zeros((slots, 0, 0), dtype=np.int64)  # [true, predicted]
        # [class, other rows / its rows, bin]: sub-windows in the narrowest dtype their rows fit, totals apart
        self.histograms = np.zeros((slots - 1, 0, 2, bins), dtype=count_dtype(self.slot_size))
        self.histogram_totals = np.zeros((0, 2, bins), dtype=np.int64)
        # [class, bin], fixed point: sub-windows narrow (at most slot_size * SCALE each), totals apart
        self.score_sums = np.zeros((slots - 1, 0, bins), dtype=count_dtype(self.slot_size * SCALE))
        self.score_sum_totals = np.zeros((0, bins), dtype=np.int64)
        self.losses = np.zeros((slots, 3), dtype=np.int64)  # scored rows, log loss, Brier (fixed point)

    @property
    def positive(self) -> str:
        if self._positive is None or self._positive[0] is not self.positive_label:
            self._positive = (self.positive_label, str(label_keys([self.positive_label])[0]))
        return self._positive[1]

    def update(
        self,
        y_true: list | np.ndarray,
        y_pred: list | np.ndarray,
        scores: np.ndarray | None = None,
        class_scores: list[dict | None] | None = None,
    ) -> list[dict]:
        """Add rows; return, per window completed within them, its ``position``, ``row`` and ``report`` (as
        of that row, whatever the rows after it).

        ``scores`` is the probability of the positive class, NaN where absent;
        ``class_scores`` a dict of class probabilities per row, None where absent.
        """
        truth, predicted = label_keys(y_true), label_keys(y_pred)
        if class_scores is None and update_small(self, truth, predicted, scores):
            return []  # a handful of rows, counted in plain Python (no window closed within them)
        n = len(truth)
        if len(predicted) != n:
            raise ValueError(f"{n} labels but {len(predicted)} predictions")
        # the rows after a window's close are counted after its report, as a later batch's would be: a
        # report names the classes its own rows brought, and counts the cap's overflow up to its close
        completed = []
        for a, b in self._reported_parts(n):
            part = self._update_keys(
                truth[a:b],
                predicted[a:b],
                None if scores is None else scores[a:b],
                None if class_scores is None else class_scores[a:b],
            )
            completed += [{**window, "row": a + window["row"]} for window in part]
        return completed

    def _reported_parts(self, n: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of a batch of ``n`` rows cut after each row that completes a window."""
        size = self.slot_size
        first = max((-self.rows) % size, self.window_size - self.rows)  # the first close with a full window
        cuts = [j for j in range(first, n, size) if j > 0]
        return list(zip([0, *cuts], [*cuts, n]))

    def _update_keys(
        self,
        truth: np.ndarray,
        predicted: np.ndarray,
        scores: np.ndarray | None,
        class_scores: list[dict | None] | None,
    ) -> list[dict]:
        """``update`` of rows of class names (``label_keys``) in which no window completes before the last."""
        n = len(truth)
        binary = self._binary_scores(scores, n)
        class_scores = self._class_scores(class_scores, binary)
        self._register(truth, predicted, binary, class_scores)
        t, p = self.classes.lookup(truth), self.classes.lookup(predicted)
        self._grow()
        rows, losses, pairs = self._score_terms(truth, t, binary, class_scores, n)
        completed = []
        for slot, a, b, fresh, closes in self._chunks(n):
            if fresh:
                for array in (self.confusion, self.histograms, self.score_sums, self.losses):
                    array[slot] = 0
            if a == 0 and b == n:  # the whole batch (the usual case): every scored row and pair
                i, j, k, m = 0, len(rows), 0, len(pairs[0])
            else:
                i, j = np.searchsorted(rows, [a, b])
                k, m = np.searchsorted(pairs[0], [a, b])
            self._add([slot, self._cumulative], t[a:b], p[a:b], losses[i:j], [column[k:m] for column in pairs[1:]])
            self.rows += b - a
            if closes and self._window_complete():
                completed.append({"position": self.rows, "row": b - 1, "report": self.report("window")})
        return completed

    def _add(self, targets: list[int], t: np.ndarray, p: np.ndarray, losses: np.ndarray, pairs: list) -> None:
        """Count rows of one sub-window into it and into the totals."""
        classes, bins = len(self.classes), self.n_score_bins
        cls, is_class, bin_, fixed = pairs
        # the sub-window and the totals one basic index at a time: cheaper than a fancy index of both
        slot, total = targets
        confusion = np.bincount(t * classes + p, minlength=classes**2).reshape(classes, classes)
        self.confusion[slot] += confusion
        self.confusion[total] += confusion
        counts = np.empty(3, dtype=np.int64)  # scored rows, then the sums of the loss terms
        counts[0] = len(losses)
        np.add.reduce(losses, axis=0, out=counts[1:])
        self.losses[slot] += counts
        self.losses[total] += counts
        flat = (cls * 2 + is_class) * bins + bin_
        histogram = np.bincount(flat, minlength=classes * 2 * bins).reshape(classes, 2, bins)
        # cast to the narrow sub-window's dtype, then added (they fit): np.add(..., casting="unsafe")
        # gives the same but costs more, as it adds in int64 and casts through a buffer
        self.histograms[slot] += histogram.astype(self.histograms.dtype)  # at most slot_size
        self.histogram_totals += histogram
        sums = np.bincount(cls * bins + bin_, weights=fixed, minlength=classes * bins)  # exact below 2^53
        sums = np.rint(sums).astype(np.int64).reshape(classes, bins)
        self.score_sums[slot] += sums.astype(self.score_sums.dtype)  # at most slot_size * SCALE
        self.score_sum_totals += sums

    def _binary_scores(self, scores: np.ndarray | None, n: int) -> np.ndarray | None:
        """Valid probabilities of the positive class (NaN elsewhere), or None when none apply."""
        if scores is None:
            return None
        s = np.asarray(scores, dtype=np.float64)
        present = len(s) - int(np.count_nonzero(np.isnan(s)))
        if not present:
            return None
        if self.score_mode == "class_scores":
            self.ignored_scores += present
            return None
        self.score_mode = "binary"
        valid = (s >= 0) & (s <= 1)  # false where NaN: valid rows are present ones
        self.invalid_scores += present - int(np.count_nonzero(valid))
        return np.where(valid, s, np.nan)

    def _class_scores(self, class_scores: list[dict | None] | None, binary: np.ndarray | None) -> list | None:
        """``class_scores`` when they apply (the first kind of scores seen wins), else None."""
        if class_scores is None or binary is not None or not any(d is not None for d in class_scores):
            return None
        if self.score_mode == "binary":
            self.ignored_scores += sum(d is not None for d in class_scores)
            return None
        self.score_mode = "class_scores"
        return class_scores

    def _register(
        self,
        truth: np.ndarray,
        predicted: np.ndarray,
        binary: np.ndarray | None,
        class_scores: list[dict | None] | None,
    ) -> None:
        """Register new classes in stream order: per row its label, its prediction, then its scores' classes."""
        known = self.classes._index
        if (
            (
                self.positive in known
                if binary is not None
                else class_scores is None or self.score_mode != "class_scores"
            )
            and known.keys() >= set(truth.tolist())
            and known.keys() >= set(predicted.tolist())
        ):
            return  # the usual case, decided before finding the scores' classes: every class is known
        n = len(truth)
        rows = np.arange(n)
        extra_rows: list[int] = []
        extra_keys: list[str] = []
        if binary is not None:
            scored = (~np.isnan(binary)).nonzero()[0][:1]  # the positive class, from the first scored row
            extra_rows, extra_keys = scored.tolist(), [self.positive] * len(scored)
        elif class_scores is not None and self.score_mode == "class_scores":
            seen = set(self.classes.names)
            for i, d in enumerate(class_scores):
                if d and (new := d.keys() - seen):
                    extra_rows += [i] * len(new)
                    extra_keys += sorted(new)
                    seen |= new
        known = self.classes._index
        if (
            known.keys() >= set(truth.tolist())
            and known.keys() >= set(predicted.tolist())
            and known.keys() >= set(extra_keys)
        ):
            return  # nothing new: the usual case once the classes have been seen
        keys = np.concatenate([np.stack([truth, predicted], axis=1).reshape(-1), np.array(extra_keys, dtype=str)])
        where = np.concatenate(
            [np.repeat(rows * 3, 2) + np.tile([0, 1], n), np.array(extra_rows, dtype=np.int64) * 3 + 2]
        )
        order = np.argsort(where, kind="stable")
        self.classes.register(keys[order], self.rows + where[order] // 3)

    def _grow(self) -> None:
        add = len(self.classes) - self.confusion.shape[1]
        if add:
            self.confusion = grown(self.confusion, 0, add, add)
            self.histograms = grown(self.histograms, 0, add, 0, 0)
            self.histogram_totals = grown(self.histogram_totals, add, 0, 0)
            self.score_sums = grown(self.score_sums, 0, add, 0)
            self.score_sum_totals = grown(self.score_sum_totals, add, 0)

    def _score_terms(
        self,
        truth: np.ndarray,
        t: np.ndarray,
        binary: np.ndarray | None,
        class_scores: list[dict | None] | None,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray, tuple]:
        """Scored rows with their (log loss, Brier) fixed-point terms, and (row, class, is-class, bin, score) pairs."""
        none = np.empty(0, dtype=np.int64)
        positive = self.classes.index(self.positive)
        if binary is not None and positive is None:  # the positive class came after the cap
            self.ignored_scores += int(np.sum(~np.isnan(binary)))
            binary = None
        if binary is not None:
            rows = (~np.isnan(binary)).nonzero()[0]  # as np.flatnonzero, without its Python wrappers
            prob = binary[rows]
            is_pos = truth[rows] == self.positive
            p_true = np.where(is_pos, prob, 1 - prob)
            brier = (prob - is_pos) ** 2
            classes = np.empty(len(rows), dtype=np.int64)
            classes.fill(positive)
            pairs = (rows, classes, is_pos.astype(np.int64), prob)
        elif class_scores is not None:
            pairs, rows, p_true, brier = self._class_pairs(truth, t, class_scores, n)
        else:
            return none, np.empty((0, 2), dtype=np.int64), (none, none, none, none, none)
        # np.clip, np.stack and np.searchsorted as the ufuncs and methods they wrap (same values): their
        # Python layers cost more than the arithmetic on a small batch's rows
        terms = np.empty((len(p_true), 2))
        np.negative(np.log(np.minimum(np.maximum(p_true, _EPS), 1 - _EPS)), out=terms[:, 0])
        terms[:, 1] = brier
        losses = fixed_point(terms)  # elementwise: as fixing each column, then stacking them
        row, cls, is_class, prob = pairs
        bins = _inner_score_edges(self.n_score_bins).searchsorted(prob, side="right")
        return (
            rows,
            losses,
            (row, cls, is_class, bins.astype(np.int64, copy=False), fixed_point(prob).astype(np.float64)),
        )

    def _class_pairs(self, truth: np.ndarray, t: np.ndarray, class_scores: list[dict | None], n: int):
        rows = np.array([i for i, d in enumerate(class_scores) if d is not None], dtype=np.int64)
        dicts = [class_scores[i] for i in rows.tolist()]
        names = truth[rows].tolist()
        p_true = np.array([d.get(k, 0.0) for d, k in zip(dicts, names)], dtype=np.float64)
        squares = np.array([sum(v * v for v in d.values()) for d in dicts], dtype=np.float64)
        halve = np.array([len(d) < 3 for d in dicts], dtype=bool)  # sklearn halves binary Brier scores
        brier = (squares - 2 * p_true + 1) * np.where(halve, 0.5, 1.0)
        probs = np.full((len(rows), len(self.classes)), np.nan)
        stream_rows = self.rows + rows
        for k, (name, since) in enumerate(zip(self.classes.names, self.classes.since)):
            if name == OTHER:
                continue
            column = np.array([d.get(name, 0.0) for d in dicts], dtype=np.float64)
            probs[:, k] = np.where((stream_rows >= since) & (column >= 0) & (column <= 1), column, np.nan)
        at, cls = np.nonzero(~np.isnan(probs))  # row-major: sorted by row
        pairs = (rows[at], cls.astype(np.int64), (t[rows[at]] == cls).astype(np.int64), probs[at, cls])
        return pairs, rows, p_true, brier

    def report(self, scope: str = "window") -> dict:
        """Metrics over the window or since the start; None where undefined."""
        slots = self._slots(scope)
        confusion = self.confusion[slots].sum(axis=0)
        histograms = self.histogram_totals if scope == "cumulative" else self.histograms[slots].sum(axis=0)
        score_sums = self.score_sum_totals if scope == "cumulative" else self.score_sums[slots].sum(axis=0)
        scored, log_loss, brier = self.losses[slots].sum(axis=0).tolist()
        names, positive = self.classes.names, self.classes.index(self.positive)
        if len(names) <= SMALL_CLASSES:  # plain Python, the same numbers: numpy's calls cost more than the counts
            labels = label_metrics_small(confusion.tolist(), names, positive)
            roc_auc, ece = score_figures_small(histograms.tolist(), score_sums.tolist())
        else:
            labels = label_metrics(confusion, names, positive)
            roc_auc, ece = score_figures(histograms, score_sums)
        out = {"scope": scope, "rows": int(confusion.sum()), **labels}
        out["positive_label"] = self.positive
        out["scored"] = scored
        out["log_loss"] = ratio(log_loss / SCALE, scored)
        out["brier"] = ratio(brier / SCALE, scored)
        out["roc_auc"] = roc_auc
        out["ece"] = ece
        out["other_values"] = self.classes.overflow
        out["confusion"] = {"labels": list(self.classes.names), "matrix": confusion.tolist()}
        return out

    def state(self) -> dict:
        return {
            "rows": self.rows,
            "classes": self.classes.state(),
            "score_mode": self.score_mode,
            "invalid_scores": self.invalid_scores,
            "ignored_scores": self.ignored_scores,
            "confusion": split_counts(self.confusion[:-1], self.confusion[-1], self.slot_size),
            "histograms": split_counts(self.histograms, self.histogram_totals, self.slot_size),
            "score_sums": split_counts(self.score_sums, self.score_sum_totals, self.slot_size * SCALE),
            "losses": self.losses.tolist(),
        }

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        self.classes.load_state(state["classes"])
        self.score_mode = state["score_mode"]
        self.invalid_scores, self.ignored_scores = state["invalid_scores"], state["ignored_scores"]
        slots, n, bins = self.subwindows + 2, len(self.classes), self.n_score_bins
        confusion, total = unsplit_counts(state["confusion"], slots - 1, (n, n), self.slot_size)
        self.confusion = np.concatenate([confusion.astype(np.int64), total[None]])  # kept as one int64 array
        self.histograms, self.histogram_totals = unsplit_counts(
            state["histograms"], slots - 1, (n, 2, bins), self.slot_size
        )
        self.score_sums, self.score_sum_totals = unsplit_counts(
            state["score_sums"], slots - 1, (n, bins), self.slot_size * SCALE
        )
        self.losses = np.array(state["losses"], dtype=np.int64).reshape(slots, 3)


def label_metrics(confusion: np.ndarray, names: list[str], positive: int | None) -> dict:
    """Accuracy, binary and macro precision/recall/F1 from a confusion matrix (sklearn, zero_division=0)."""
    total = confusion.sum()
    if not total:
        return no_label_metrics()
    hits = np.diag(confusion).astype(np.float64)
    actual, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    f1 = np.divide(2 * hits, actual + predicted, out=np.zeros_like(hits), where=actual + predicted > 0)
    present = (actual + predicted) > 0
    accuracy = float(hits.sum() / total)
    out: dict[str, float | None | dict[str, dict[str, float]]] = {"accuracy": accuracy, "error_rate": 1 - accuracy}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[name] = float(values[positive]) if positive is not None else None
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out["macro_" + name] = float(values[present].mean())
    out["per_class"] = {
        names[k]: {
            "support": int(actual[k]),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
        }
        for k in np.flatnonzero(present).tolist()
    }
    return out


def score_figures(histograms: np.ndarray, score_sums: np.ndarray) -> tuple[float | None, float | None]:
    """The macro ROC AUC and expected calibration error of the classes' histograms and score sums (None:
    no class has both its rows and others)."""
    auc = [a for a in (_auc(h) for h in histograms) if a is not None]
    ece = [e for e in (_ece(h, s) for h, s in zip(histograms, score_sums)) if e is not None]
    return (float(np.mean(auc)) if auc else None), (float(np.mean(ece)) if ece else None)


def _auc(histogram: np.ndarray) -> float | None:
    """ROC AUC of one class against the rest from its binned scores: ties within a bin count half."""
    return binned_auc(*histogram.tolist())


def _ece(histogram: np.ndarray, score_sums: np.ndarray) -> float | None:
    """Expected calibration error of one class's probabilities over the histogram's bins."""
    counts = histogram.sum(axis=0)
    n = counts.sum()
    if not n:
        return None
    filled = counts > 0
    mean_score = score_sums[filled] / SCALE / counts[filled]
    share = histogram[1, filled] / counts[filled]
    return float(np.sum(counts[filled] * np.abs(mean_score - share)) / n)
