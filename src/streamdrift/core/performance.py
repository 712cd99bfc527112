"""Online performance metrics of a model, from the pairs the feedback join completes.

Every class here consumes whole batches of numpy columns and keeps two
scopes:

- **window**: the last ``window_size`` rows as of the latest sub-window
  boundary. Rows go into a ring of ``subwindows + 1`` sub-windows of
  ``window_size / subwindows`` rows each (the one filling, and the ``subwindows``
  full ones before it), closing at fixed row counts like ``sketch.StreamSketch``;
- **cumulative**: every row since the start.

Both are sufficient statistics (counts, sums, binned score histograms), so the
state is bounded and plain data, and batches of any size give the same state:
counts are integers, bounded sums are fixed-point integers (``SCALE``), and
unbounded ones (regression) are summed in row order.

Classification labels may be str, int or bool; they become class names by
``label_keys`` (``1``, ``1.0``, ``"1"`` and ``True`` are the same class, ``"1"``),
numbered in order of first appearance (per row: its label, its prediction, the
classes of its scores), capped (``__other__`` takes the rest).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.random(2000) < 0.4
>>> p = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.15, 2000), 0, 1)
>>> m = ClassificationMetrics(window_size=1000, subwindows=5, n_score_bins=20)
>>> windows = m.update(y, p > 0.5, scores=p)
>>> [w["position"] for w in windows]
[1000, 1200, 1400, 1600, 1800, 2000]
>>> r = m.report("window")
>>> r["rows"], r["accuracy"], round(r["f1"], 4), round(r["roc_auc"], 4)
(1000, 0.903, 0.8926, 0.9662)
>>> round(cbpe_accuracy(p), 4)
0.7128
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Literal, NamedTuple

import numpy as np

from streamdrift.core.sketch import count_dtype

Task = Literal["classification", "regression"]
CLASSIFICATION: Task = "classification"
REGRESSION: Task = "regression"
OTHER = "__other__"
MISSING = "__missing__"
SCALE = 1 << 20  # fixed point for bounded sums: integer sums are associative, float sums are not
_EPS = float(np.finfo(np.float64).eps)  # probabilities are clipped to [eps, 1 - eps] in log loss, as sklearn does
_NORMAL = NormalDist()


# -- labels ---------------------------------------------------------------------


def _key(value: object, missing: str) -> str:
    if value is None:
        return missing
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number_keys(x: np.ndarray, missing: str) -> np.ndarray:
    whole = np.isfinite(x) & (x == np.round(x)) & (np.abs(x) < 2.0**63)
    ints = np.where(whole, x, 0).astype(np.int64).astype(str)
    return np.where(np.isnan(x), missing, np.where(whole, ints, x.astype(str)))


# the names of small class numbers, as int64's astype(str) writes them (dtype <U21): a batch of the
# usual labels (0, 1, 2...) is named by indexing this, where astype(str) would format every number
_SMALL_INT_KEYS = np.arange(256, dtype=np.int64).astype(str)
_SMALL_INT_KEYS.flags.writeable = False


def _int_keys(ints: np.ndarray) -> np.ndarray:
    """``ints.astype(str)`` of an int64 array."""
    if len(ints) and np.minimum.reduce(ints) >= 0 and np.maximum.reduce(ints) < len(_SMALL_INT_KEYS):
        return _SMALL_INT_KEYS[ints]
    return ints.astype(str)


def label_keys(values: list | np.ndarray, missing: str = "null") -> np.ndarray:
    """Class names of labels: strings, where ``True`` is ``"1"`` and ``2.0`` is ``"2"``.

    >>> label_keys([True, 0, 2.0, "cat", None]).tolist()
    ['1', '0', '2', 'cat', 'null']
    """
    if isinstance(values, np.ndarray):
        kind = values.dtype.kind
        if kind == "b":
            return np.where(values, "1", "0")
        if kind in "iu":
            return values.astype(str)
        if kind == "f":
            return _number_keys(values.astype(np.float64), missing)
        if kind == "U":
            return values
        values = values.tolist()
    values = list(values)
    if not values:
        return np.empty(0, dtype="<U1")
    types = set(map(type, values))
    if types == {str}:
        return np.array(values, dtype=str)
    if types == {int}:  # the usual class labels: 0, 1, 2...
        try:
            return _int_keys(np.fromiter(values, np.int64, len(values)))
        except OverflowError:  # beyond int64: as floats below
            pass
    if types <= {int, float, bool, type(None)} and types != {type(None)}:
        return _number_keys(np.array(values, dtype=np.float64), missing)
    return np.array([_key(v, missing) for v in values], dtype=str)


def infer_task(labels: list | np.ndarray, predictions: list | np.ndarray) -> Task:
    """``"regression"`` when some label or prediction is a non-integer number, else ``"classification"``.

    >>> infer_task([1, 0, 1], [1, 1, 0]), infer_task(["a"], ["b"]), infer_task([2.5, 1.0], [2.0, 1.5])
    ('classification', 'classification', 'regression')
    """
    values = [*_as_list(labels), *_as_list(predictions)]
    types = set(map(type, values)) - {type(None)}
    if float in types and types <= {int, float}:
        x = np.array([v for v in values if v is not None], dtype=np.float64)
        if np.any(np.isfinite(x) & (x != np.round(x))):
            return REGRESSION
    return CLASSIFICATION


def _as_list(values: list | np.ndarray) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


class _Registry:
    """Names (classes, segment values, versions) numbered in order of first appearance, capped.

    Names beyond ``cap`` share ``__other__``; ``since`` is the stream row at
    which each name was registered.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self._reset()

    def _reset(self) -> None:
        self.names: list[str] = []
        self.since: list[int] = []
        self.overflow = 0  # values that fell into __other__
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int | None:
        return self._index.get(name)

    def register(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Register ``keys`` (in stream order; ``rows`` their stream rows) not seen before."""
        if not len(keys) or self._index.keys() >= set(keys.tolist()):  # nothing new: the usual case
            return
        uniq, first = np.unique(keys, return_index=True)
        for j in np.argsort(first, kind="stable").tolist():
            name = str(uniq[j])
            if name in self._index:
                continue
            if len(self.names) - (OTHER in self._index) < self.cap:
                self._add(name, int(rows[first[j]]))
            elif OTHER not in self._index:
                self._add(OTHER, int(rows[first[j]]))

    def _add(self, name: str, row: int) -> None:
        self._index[name] = len(self.names)
        self.names.append(name)
        self.since.append(row)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key (registered first); counts those that fall into ``__other__``."""
        try:  # the usual case, every key registered: one dict lookup each
            return np.fromiter(map(self._index.__getitem__, keys.tolist()), dtype=np.int64, count=len(keys))
        except KeyError:  # some fall into __other__: counted below
            pass
        uniq, inverse = np.unique(keys, return_inverse=True)
        other = self._index.get(OTHER, -1)
        lut = np.array([self._index.get(str(u), other) for u in uniq], dtype=np.int64)
        spilled = np.array([str(u) not in self._index for u in uniq], dtype=bool)
        self.overflow += int(spilled[inverse].sum())
        return lut[inverse.reshape(-1)]

    def state(self) -> dict:
        return {"names": self.names, "since": self.since, "overflow": self.overflow}

    def load_state(self, state: dict) -> None:
        self.names, self.since = list(state["names"]), list(state["since"])
        self.overflow = state["overflow"]
        self._index = {name: i for i, name in enumerate(self.names)}


# -- sliding windows --------------------------------------------------------------


class _Windowed:
    """Sub-window bookkeeping shared by the metric classes.

    Arrays of state have ``subwindows + 2`` rows: ``subwindows + 1`` ring slots
    and, last, the cumulative totals. Which slot a row goes to follows from the
    number of rows seen, so ``rows`` is the only position to keep.
    """

    window_size: int
    subwindows: int
    rows: int

    def _check_window(self) -> None:
        if self.window_size <= 0 or self.subwindows <= 0 or self.window_size % self.subwindows:
            raise ValueError(f"subwindows ({self.subwindows}) must divide window_size ({self.window_size})")

    @property
    def slot_size(self) -> int:
        return self.window_size // self.subwindows

    @property
    def _cumulative(self) -> int:
        return self.subwindows + 1

    def _chunks(self, n: int):
        """``(slot, start, stop, fresh, closes)`` for runs of a batch's rows that land in one sub-window."""
        size, slots, base, start = self.slot_size, self.subwindows + 1, self.rows, 0
        while start < n:
            position = base + start
            fill = position % size
            stop = min(n, start + size - fill)
            yield (position // size) % slots, start, stop, fill == 0, (base + stop) % size == 0
            start = stop

    def _window_complete(self) -> bool:
        return self.rows % self.slot_size == 0 and self.rows >= self.window_size

    def _slots(self, scope: str) -> list[int]:
        """Indices to sum for ``scope``: the window's full sub-windows (oldest first), or the totals."""
        if scope == "cumulative":
            return [self._cumulative]
        if scope != "window":
            raise ValueError(f"scope must be 'window' or 'cumulative', not {scope!r}")
        full = self.rows // self.slot_size
        return [(full - 1 - j) % (self.subwindows + 1) for j in reversed(range(min(full, self.subwindows)))]

    def _window_rows(self, scope: str) -> int:
        if scope == "cumulative":
            return self.rows
        return min(self.rows // self.slot_size, self.subwindows) * self.slot_size


def _ordered_sum(total: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """``total`` plus the rows of ``terms`` one after the other: the same bits whatever the batching."""
    return np.cumsum(np.vstack([total[None], terms]), axis=0)[-1]


def _fixed(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * SCALE).astype(np.int64)


def _split(slots: np.ndarray, total: np.ndarray, bound: int) -> dict:
    """State of windowed counts: the sub-windows, each entry at most ``bound``, in the smallest
    dtype that holds it (a snapshot stores fewer bytes), and the unbounded int64 totals."""
    return {"slots": slots.astype(count_dtype(bound, unsigned=True)), "total": total.copy()}


def _unsplit(state: dict, slots: int, shape: tuple[int, ...], bound: int) -> tuple[np.ndarray, np.ndarray]:
    """What ``_split`` stored (arrays or lists): the sub-windows in the narrowest signed dtype for
    ``bound``, as they are kept live, and the int64 totals; ``shape`` is one sub-window's."""
    return (
        np.asarray(state["slots"]).astype(count_dtype(bound)).reshape(slots, *shape),
        np.array(state["total"], dtype=np.int64).reshape(shape),
    )


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


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


# -- classification -----------------------------------------------------------------


class ClassificationMetrics(_Windowed):
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
        self.classes = _Registry(self.max_classes)
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
        """Add rows; return, per window completed within them, its ``position``, ``row`` and ``report``.

        ``scores`` is the probability of the positive class, NaN where absent;
        ``class_scores`` a dict of class probabilities per row, None where absent.
        """
        truth, predicted = label_keys(y_true), label_keys(y_pred)
        n = len(truth)
        if len(predicted) != n:
            raise ValueError(f"{n} labels but {len(predicted)} predictions")
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
            self.confusion = np.pad(self.confusion, ((0, 0), (0, add), (0, add)))
            self.histograms = np.pad(self.histograms, ((0, 0), (0, add), (0, 0), (0, 0)))
            self.histogram_totals = np.pad(self.histogram_totals, ((0, add), (0, 0), (0, 0)))
            self.score_sums = np.pad(self.score_sums, ((0, 0), (0, add), (0, 0)))
            self.score_sum_totals = np.pad(self.score_sum_totals, ((0, add), (0, 0)))

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
        losses = _fixed(terms)  # elementwise: as fixing each column, then stacking them
        row, cls, is_class, prob = pairs
        bins = _inner_score_edges(self.n_score_bins).searchsorted(prob, side="right")
        return rows, losses, (row, cls, is_class, bins.astype(np.int64, copy=False), _fixed(prob).astype(np.float64))

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
        out = {
            "scope": scope,
            "rows": int(confusion.sum()),
            **_label_metrics(confusion, self.classes.names, self.classes.index(self.positive)),
        }
        out["positive_label"] = self.positive
        out["scored"] = scored
        out["log_loss"] = _ratio(log_loss / SCALE, scored)
        out["brier"] = _ratio(brier / SCALE, scored)
        auc = [a for a in (_auc(h) for h in histograms) if a is not None]
        ece = [e for e in (_ece(h, s) for h, s in zip(histograms, score_sums)) if e is not None]
        out["roc_auc"] = float(np.mean(auc)) if auc else None
        out["ece"] = float(np.mean(ece)) if ece else None
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
            "confusion": _split(self.confusion[:-1], self.confusion[-1], self.slot_size),
            "histograms": _split(self.histograms, self.histogram_totals, self.slot_size),
            "score_sums": _split(self.score_sums, self.score_sum_totals, self.slot_size * SCALE),
            "losses": self.losses.tolist(),
        }

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        self.classes.load_state(state["classes"])
        self.score_mode = state["score_mode"]
        self.invalid_scores, self.ignored_scores = state["invalid_scores"], state["ignored_scores"]
        slots, n, bins = self.subwindows + 2, len(self.classes), self.n_score_bins
        confusion, total = _unsplit(state["confusion"], slots - 1, (n, n), self.slot_size)
        self.confusion = np.concatenate([confusion.astype(np.int64), total[None]])  # kept as one int64 array
        self.histograms, self.histogram_totals = _unsplit(state["histograms"], slots - 1, (n, 2, bins), self.slot_size)
        self.score_sums, self.score_sum_totals = _unsplit(
            state["score_sums"], slots - 1, (n, bins), self.slot_size * SCALE
        )
        self.losses = np.array(state["losses"], dtype=np.int64).reshape(slots, 3)


def _label_metrics(confusion: np.ndarray, names: list[str], positive: int | None) -> dict:
    """Accuracy, binary and macro precision/recall/F1 from a confusion matrix (sklearn, zero_division=0)."""
    total = confusion.sum()
    if not total:
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


def _auc(histogram: np.ndarray) -> float | None:
    """ROC AUC of one class against the rest from its binned scores: ties within a bin count half."""
    negatives, positives = histogram.tolist()
    n_neg, n_pos = sum(negatives), sum(positives)
    if not n_neg or not n_pos:
        return None
    below, twice = 0, 0  # integers: exact, then one rounding
    for neg, pos in zip(negatives, positives):
        twice += pos * (2 * below + neg)
        below += neg
    return twice / (2 * n_pos * n_neg)


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


# -- regression -----------------------------------------------------------------------

_REG = ("rows", "error", "abs_error", "squared_error", "shifted", "shifted_squared", "nonzero", "ape")


class RegressionMetrics(_Windowed):
    """MAE, RMSE, R², MAPE and mean error, from sums per sub-window.

    Sums are taken in row order (so any batching gives the same bits); targets
    are shifted by the first target seen before squaring, which keeps R²
    accurate when targets are large and vary little. MAPE skips zero targets
    (counted, ``zero_targets``); rows with a missing or non-numeric value are
    counted (``invalid``) and skipped.

    Parameters
    ----------
    window_size
        Rows in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.

    Examples
    --------
    >>> m = RegressionMetrics(window_size=4, subwindows=2)
    >>> [(w["position"], w["row"], w["report"]["mae"]) for w in m.update([3.0, -0.5, 2.0, 7.0, 0.0], [2.5, 0.0, 2.0, 8.0, 1.0])]
    [(4, 3, 0.5)]
    >>> r = m.report("window")
    >>> r["mae"], r["rmse"], round(r["r2"], 4), round(r["mape"], 4)
    (0.5, 0.6123724356957945, 0.9486, 0.3274)
    >>> m.report("cumulative")["zero_targets"]
    1
    """

    def __init__(self, window_size: int, subwindows: int = 5):
        self.window_size = window_size
        self.subwindows = subwindows
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.invalid = 0
        self.shift: float | None = None
        self.sums = np.zeros((self.subwindows + 2, len(_REG)), dtype=np.float64)

    def update(self, y_true: list | np.ndarray, y_pred: list | np.ndarray) -> list[dict]:
        """Add rows; return, per window completed within them, its ``position``, ``row`` and ``report``
        (as of that row: a batch may close several windows)."""
        y, yhat = _floats(y_true), _floats(y_pred)
        valid = np.isfinite(y) & np.isfinite(yhat)
        self.invalid += int((~valid).sum())
        y, yhat = y[valid], yhat[valid]
        positions = np.flatnonzero(valid)  # the batch row each valid row came from
        if self.shift is None and len(y):
            self.shift = float(y[0])
        error = y - yhat
        shifted = y - (self.shift or 0.0)
        nonzero = y != 0
        ape = np.divide(np.abs(error), np.abs(y), out=np.zeros_like(y), where=nonzero)
        terms = np.stack(
            [np.ones_like(y), error, np.abs(error), error**2, shifted, shifted**2, nonzero.astype(np.float64), ape],
            axis=1,
        )
        completed = []
        for slot, a, b, fresh, closes in self._chunks(len(y)):
            if fresh:
                self.sums[slot] = 0
            self.sums[slot] = _ordered_sum(self.sums[slot], terms[a:b])
            self.sums[self._cumulative] = _ordered_sum(self.sums[self._cumulative], terms[a:b])
            self.rows += b - a
            if closes and self._window_complete():
                completed.append({"position": self.rows, "row": int(positions[b - 1]), "report": self.report("window")})
        return completed

    def report(self, scope: str = "window") -> dict:
        sums = dict(zip(_REG, self.sums[self._slots(scope)].sum(axis=0).tolist()))
        n = sums["rows"]
        out = {"scope": scope, "rows": int(n), "zero_targets": int(n - sums["nonzero"]), "invalid": self.invalid}
        if not n:
            return {**out, "mae": None, "rmse": None, "r2": None, "mape": None, "mean_error": None, "mae_se": None}
        mae = sums["abs_error"] / n
        mse = sums["squared_error"] / n
        total = sums["shifted_squared"] - sums["shifted"] ** 2 / n
        out.update(
            mae=mae,
            rmse=math.sqrt(mse),
            mean_error=sums["error"] / n,
            r2=1 - sums["squared_error"] / total if total > 0 else None,
            mape=_ratio(sums["ape"], sums["nonzero"]),
            mae_se=math.sqrt(max(mse - mae * mae, 0.0) / n),
        )  # standard error of the MAE
        return out

    def state(self) -> dict:
        return {"rows": self.rows, "invalid": self.invalid, "shift": self.shift, "sums": self.sums.copy()}

    def load_state(self, state: dict) -> None:
        self.rows, self.invalid, self.shift = state["rows"], state["invalid"], state["shift"]
        self.sums = np.array(state["sums"], dtype=np.float64).reshape(self.subwindows + 2, len(_REG))


def _floats(values: list | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    return np.array([v if type(v) in (int, float) else None for v in _as_list(values)], dtype=np.float64)


# -- label-free estimate ----------------------------------------------------------------


def cbpe_accuracy(scores: np.ndarray) -> float:
    """Expected accuracy of calibrated scores (confidence-based performance estimation).

    ``scores`` is the probability of the positive class (1-D: the expected
    accuracy of a row is ``max(p, 1 - p)``) or one row of class probabilities
    per prediction (2-D: its maximum). NaN rows are skipped; NaN if none is left.

    >>> cbpe_accuracy(np.array([0.9, 0.2, 0.5, np.nan]))
    0.7333333333333334
    """
    s = np.asarray(scores, dtype=np.float64)
    confidence = np.maximum(s, 1 - s) if s.ndim == 1 else s.max(axis=1)
    confidence = confidence[~np.isnan(confidence)]
    return float(confidence.mean()) if len(confidence) else math.nan


class CBPE(_Windowed):
    """Windowed label-free accuracy estimate from the scores of predictions.

    Fed with the scores of predictions as they arrive (each waits for its
    label then), it estimates the accuracy of a window before its labels are
    in; published next to the realised accuracy of the same rows once they
    are. Confidences are fixed-point sums, so any batching gives the same state.

    Parameters
    ----------
    window_size
        Scored predictions in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> p = rng.random(3000)
    >>> y = rng.random(3000) < p   # calibrated: P(y = 1) = p
    >>> cbpe = CBPE(window_size=1000, subwindows=4)
    >>> [round(w["estimated_accuracy"], 4) for w in cbpe.update(p)][-1]
    0.7547
    >>> float(np.mean((p[-1000:] > 0.5) == y[-1000:]))   # realised, once the labels are in
    0.735
    """

    def __init__(self, window_size: int, subwindows: int = 5):
        self.window_size = window_size
        self.subwindows = subwindows
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.sums = np.zeros((self.subwindows + 2, 2), dtype=np.int64)  # rows, confidence (fixed point)

    def update(self, scores: np.ndarray) -> list[dict]:
        """Add the scores of new predictions (NaN ones are skipped); return each window completed."""
        s = np.asarray(scores, dtype=np.float64)
        positions = (~np.isnan(s if s.ndim == 1 else s.max(axis=1))).nonzero()[0]  # as np.flatnonzero
        s = s[positions]
        confidence = _fixed(np.maximum(s, 1 - s) if s.ndim == 1 else s.max(axis=1))
        completed = []
        for slot, a, b, fresh, closes in self._chunks(len(confidence)):
            if fresh:
                self.sums[slot] = 0
            counted, summed = b - a, int(np.add.reduce(confidence[a:b]))  # sum(), without its Python layer
            for row in (slot, self._cumulative):  # four numbers: no array for them
                self.sums[row, 0] += counted
                self.sums[row, 1] += summed
            self.rows += b - a
            if closes and self._window_complete():
                completed.append(
                    {"position": self.rows, "row": int(positions[b - 1]), "estimated_accuracy": self.estimate("window")}
                )
        return completed

    def estimate(self, scope: str = "window") -> float | None:
        rows, confidence = self.sums[self._slots(scope)].sum(axis=0).tolist()
        return _ratio(confidence / SCALE, rows)

    def state(self) -> dict:
        return {"rows": self.rows, "sums": self.sums.tolist()}

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        self.sums = np.array(state["sums"], dtype=np.int64).reshape(self.subwindows + 2, 2)


# -- degradation -------------------------------------------------------------------------


def wilson_interval(successes: float, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion, ``z`` standard normal quantile wide on each side.

    >>> [round(b, 4) for b in wilson_interval(80, 100, 1.959964)]
    [0.7112, 0.8666]
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


class Verdict(NamedTuple):
    degraded: bool
    statistic: float  # the windowed metric
    threshold: float  # reference - tolerance (reference + tolerance when lower is better)
    p_value: float  # one-sided: of a value this bad if the metric were at the threshold
    bound: float  # the one-sided confidence bound compared with the threshold
    reference: float


class DegradationTest:
    """Is a windowed metric worse than its reference by more than a tolerance, with confidence?

    A window is degraded when the one-sided ``1 - alpha`` confidence bound of
    its metric is beyond ``reference ∓ tolerance``: for a proportion (accuracy,
    error rate, recall...) the Wilson score bound, which inverts the score test
    whose p-value is reported; for any other metric a normal approximation,
    ``value ± z × std_error``, with the standard error supplied by the caller
    (``RegressionMetrics`` reports ``mae_se``). A point estimate just past the
    threshold is not enough: the window must be past it beyond sampling noise.

    Without a ``reference``, the first ``warmup_windows`` windows set it
    (pooled over their rows for a proportion).

    Parameters
    ----------
    tolerance
        How much worse than the reference the metric may be.
    alpha
        One-sided false-alarm probability per window when the metric sits at
        the threshold.
    reference
        The metric's reference value (e.g. from a profile); None to learn it.
    higher_is_better
        True for accuracy, F1, AUC; False for error rate, log loss, MAE.
    proportion
        The metric is a share of ``n`` rows (Wilson bound); else normal bound.
    warmup_windows
        Windows that set the reference when none is given.

    Examples
    --------
    >>> test = DegradationTest(tolerance=0.05, alpha=0.01, reference=0.9)
    >>> def show(v):
    ...     return v.degraded, round(v.threshold, 4), round(v.p_value, 4), round(v.bound, 4)
    >>> show(test.check(0.86, 1000))   # below the reference, but not surely below the threshold
    (False, 0.85, 0.8121, 0.8836)
    >>> show(test.check(0.82, 1000))
    (True, 0.85, 0.0039, 0.8465)
    >>> mae = DegradationTest(tolerance=0.02, higher_is_better=False, proportion=False)
    >>> mae.check(0.40, 1000, std_error=0.01) is None   # warm-up: sets the reference
    True
    >>> show(mae.check(0.46, 1000, std_error=0.01))
    (True, 0.42, 0.0, 0.4367)
    """

    def __init__(
        self,
        tolerance: float,
        alpha: float = 0.01,
        reference: float | None = None,
        higher_is_better: bool = True,
        proportion: bool = True,
        warmup_windows: int = 1,
    ):
        self.tolerance = tolerance
        self.alpha = alpha
        self.reference = reference
        self.higher_is_better = higher_is_better
        self.proportion = proportion
        self.warmup_windows = warmup_windows
        self._reset()

    def _reset(self) -> None:
        self.learnt: float | None = None
        self.warmup_sum = 0.0  # successes (proportion) or values
        self.warmup_weight = 0  # rows (proportion) or windows
        self.warmup_seen = 0
        self.windows = 0
        self.degraded_windows = 0

    @property
    def reference_value(self) -> float | None:
        return self.reference if self.reference is not None else self.learnt

    def check(self, value: float, n: int, std_error: float | None = None) -> Verdict | None:
        """Test one completed window's metric ``value`` over ``n`` rows; None while learning the reference."""
        if self.reference_value is None:
            self._learn(value, n)
            return None
        reference = self.reference_value
        z = _NORMAL.inv_cdf(1 - self.alpha)
        sign = 1 if self.higher_is_better else -1
        threshold = reference - sign * self.tolerance
        if self.proportion:
            low, high = wilson_interval(value * n, n, z)
            bound = high if self.higher_is_better else low
            p0 = min(max(threshold, 1e-12), 1 - 1e-12)
            statistic_z = (value - p0) / math.sqrt(p0 * (1 - p0) / n) if n > 0 else 0.0
        else:
            if std_error is None:
                raise ValueError("a metric that is not a proportion needs its std_error")
            bound = value + sign * z * std_error
            gap = value - threshold
            statistic_z = gap / std_error if std_error > 0 else (math.copysign(math.inf, gap) if gap else 0.0)
        p_value = _NORMAL.cdf(sign * statistic_z)
        degraded = bool(n > 0 and (bound < threshold if self.higher_is_better else bound > threshold))
        self.windows += 1
        self.degraded_windows += degraded
        return Verdict(degraded, float(value), threshold, p_value, bound, reference)

    def _learn(self, value: float, n: int) -> None:
        if self.proportion:
            self.warmup_sum += value * n
            self.warmup_weight += n
        else:
            self.warmup_sum += value
            self.warmup_weight += 1
        self.warmup_seen += 1
        if self.warmup_seen >= self.warmup_windows and self.warmup_weight:
            self.learnt = self.warmup_sum / self.warmup_weight

    def state(self) -> dict:
        return {
            "learnt": self.learnt,
            "warmup_sum": self.warmup_sum,
            "warmup_weight": self.warmup_weight,
            "warmup_seen": self.warmup_seen,
            "windows": self.windows,
            "degraded_windows": self.degraded_windows,
        }

    def load_state(self, state: dict) -> None:
        self.learnt, self.warmup_sum = state["learnt"], state["warmup_sum"]
        self.warmup_weight, self.warmup_seen = state["warmup_weight"], state["warmup_seen"]
        self.windows, self.degraded_windows = state["windows"], state["degraded_windows"]


# -- segments and fairness ----------------------------------------------------------------------

_SEG = ("rows", "correct", "predicted_positive", "actual_positive", "true_positive")


class SegmentMetrics(_Windowed):
    """Accuracy and positive rates per segment value, and fairness gaps for a sensitive attribute.

    For each attribute of the predictions' ``segment`` field named in
    ``attributes``, the first ``max_segments`` values seen are tracked (a
    missing value is ``__missing__``); later values share ``__other__``
    (counted). Gaps compare the tracked segments of ``sensitive_attribute``
    with at least ``min_count`` rows (``__other__`` and ``__missing__`` aside):
    the demographic parity difference is the spread (max − min) of their rates
    of positive predictions, the equal opportunity difference the spread of
    their true positive rates (segments with ``min_count`` positives).

    Parameters
    ----------
    attributes
        Segment attributes to slice by.
    window_size
        Rows in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.
    max_segments
        Values tracked per attribute.
    positive_label
        The positive class (``label_keys`` of it).
    sensitive_attribute
        The attribute whose fairness gaps are reported, or None.
    min_count
        Rows (positives, for the true positive rate) a segment needs to enter a gap.

    Examples
    --------
    >>> m = SegmentMetrics(["sex"], window_size=6, subwindows=2, sensitive_attribute="sex", min_count=2)
    >>> m.update([1, 0, 1, 1, 0, 1], [1, 0, 1, 0, 1, 1],
    ...          [{"sex": "f"}, {"sex": "f"}, {"sex": "f"}, {"sex": "m"}, {"sex": "m"}, {"sex": "m"}])
    >>> r = m.report("window")
    >>> r["segments"]["sex"]["m"]
    {'rows': 3, 'accuracy': 0.3333333333333333, 'positive_rate': 0.6666666666666666, 'tpr': 0.5}
    >>> gaps = r["fairness"]
    >>> gaps["segments"], gaps["demographic_parity_difference"], gaps["equal_opportunity_difference"]
    (['f', 'm'], 0.0, 0.5)
    """

    def __init__(
        self,
        attributes: list[str],
        window_size: int,
        subwindows: int = 5,
        max_segments: int = 20,
        positive_label: str | int | bool = "1",
        sensitive_attribute: str | None = None,
        min_count: int = 30,
    ):
        self.attributes = attributes
        self.window_size = window_size
        self.subwindows = subwindows
        self.max_segments = max_segments
        self.positive_label = positive_label
        self.sensitive_attribute = sensitive_attribute
        self.min_count = min_count
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.values = {a: _Registry(self.max_segments) for a in self.attributes}
        self.counts = {a: np.zeros((self.subwindows + 2, 0, len(_SEG)), dtype=np.int64) for a in self.attributes}

    def update(self, y_true: list | np.ndarray, y_pred: list | np.ndarray, segments: list[dict | None]) -> None:
        truth, predicted = label_keys(y_true), label_keys(y_pred)
        positive = str(label_keys([self.positive_label])[0])
        actual_pos, predicted_pos = truth == positive, predicted == positive
        measures = np.stack(
            [
                np.ones(len(truth), dtype=bool),
                truth == predicted,
                predicted_pos,
                actual_pos,
                actual_pos & predicted_pos,
            ],
            axis=1,
        ).astype(np.int64)
        index = {}
        for attribute, registry in self.values.items():
            keys = label_keys([s.get(attribute) if s else None for s in segments], missing=MISSING)
            registry.register(keys, np.arange(self.rows, self.rows + len(keys)))
            index[attribute] = registry.lookup(keys)
            grow = len(registry) - self.counts[attribute].shape[1]
            if grow:
                self.counts[attribute] = np.pad(self.counts[attribute], ((0, 0), (0, grow), (0, 0)))
        for slot, a, b, fresh, _ in self._chunks(len(truth)):
            for attribute, counts in self.counts.items():
                if fresh:
                    counts[slot] = 0
                n = counts.shape[1]
                flat = (index[attribute][a:b, None] * len(_SEG) + np.arange(len(_SEG))).ravel()
                counts[[slot, self._cumulative]] += (
                    np.bincount(flat, weights=measures[a:b].ravel(), minlength=n * len(_SEG))
                    .astype(np.int64)
                    .reshape(n, len(_SEG))
                )
            self.rows += b - a

    def report(self, scope: str = "window") -> dict:
        slots = self._slots(scope)
        segments, fairness = {}, None
        for attribute, registry in self.values.items():
            counts = self.counts[attribute][slots].sum(axis=0)
            per_value = {}
            for name, (rows, correct, pred_pos, actual_pos, tp) in zip(registry.names, counts.tolist()):
                if rows:
                    per_value[name] = {
                        "rows": rows,
                        "accuracy": correct / rows,
                        "positive_rate": pred_pos / rows,
                        "tpr": _ratio(tp, actual_pos),
                    }
            segments[attribute] = per_value
            if attribute == self.sensitive_attribute:
                fairness = self._gaps(attribute, per_value, dict(zip(registry.names, counts[:, 3].tolist())))
        return {
            "scope": scope,
            "segments": segments,
            "fairness": fairness,
            "overflow": {a: r.overflow for a, r in self.values.items()},
        }

    def _gaps(self, attribute: str, per_value: dict, positives: dict) -> dict:
        compared = {k: v for k, v in per_value.items() if k not in (OTHER, MISSING) and v["rows"] >= self.min_count}
        rates = [v["positive_rate"] for v in compared.values()]
        tprs = [v["tpr"] for k, v in compared.items() if positives[k] >= self.min_count]
        return {
            "attribute": attribute,
            "segments": sorted(compared),
            "demographic_parity_difference": max(rates) - min(rates) if len(rates) > 1 else None,
            "equal_opportunity_difference": max(tprs) - min(tprs) if len(tprs) > 1 else None,
        }

    def state(self) -> dict:
        return {
            "rows": self.rows,
            "values": {a: r.state() for a, r in self.values.items()},
            "counts": {a: c.copy() for a, c in self.counts.items()},
        }

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        for attribute, registry in self.values.items():
            registry.load_state(state["values"][attribute])
            self.counts[attribute] = np.array(state["counts"][attribute], dtype=np.int64).reshape(
                self.subwindows + 2, len(registry), len(_SEG)
            )


# -- versions side by side -----------------------------------------------------------------------


class VersionComparison(_Windowed):
    """Accuracy (or error rate) of model versions over the same window, compared pairwise.

    The difference of two versions' proportions gets Newcombe's hybrid score
    interval (from the two Wilson intervals) at confidence ``1 - alpha``; a
    version is significantly worse when the interval excludes zero on its
    side and both have ``min_count`` rows. The p-value is the pooled two-sided
    z-test's, for reference. Windows are counted in rows of all versions, so
    both are judged over the same period of the stream.

    Parameters
    ----------
    window_size
        Rows (all versions) in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.
    max_versions
        Versions tracked; later ones share ``__other__``.
    alpha
        1 − confidence of the interval.
    metric
        ``"accuracy"`` or ``"error_rate"``.
    min_count
        Rows each version needs before a difference can be significant.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> versions = np.where(rng.random(4000) < 0.5, "v1", "v2")
    >>> correct = rng.random(4000) < np.where(versions == "v1", 0.90, 0.85)
    >>> cmp = VersionComparison(window_size=4000, subwindows=4, alpha=0.05)
    >>> cmp.update(versions.tolist(), correct)
    >>> r = cmp.compare("v1", "v2")
    >>> r["n_a"], r["n_b"], round(r["difference"], 4), [round(x, 4) for x in (r["ci_low"], r["ci_high"])]
    (2033, 1967, 0.0537, [0.0331, 0.0744])
    >>> r["worse"], r["significant"]
    ('v2', True)
    """

    def __init__(
        self,
        window_size: int,
        subwindows: int = 5,
        max_versions: int = 10,
        alpha: float = 0.05,
        metric: str = "accuracy",
        min_count: int = 30,
    ):
        self.window_size = window_size
        self.subwindows = subwindows
        self.max_versions = max_versions
        self.alpha = alpha
        self.metric = metric
        self.min_count = min_count
        if metric not in ("accuracy", "error_rate"):
            raise ValueError(f"metric must be 'accuracy' or 'error_rate', not {metric!r}")
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.versions = _Registry(self.max_versions)
        self.counts = np.zeros((self.subwindows + 2, 0, 2), dtype=np.int64)  # rows, correct

    def update(self, versions: list, correct: np.ndarray) -> None:
        """Add joined rows: each row's model version and whether its prediction was right."""
        index = self._known(versions)
        if index is None:
            keys = label_keys(list(versions), missing="__none__")
            self.versions.register(keys, np.arange(self.rows, self.rows + len(keys)))
            index = self.versions.lookup(keys)
        grow = len(self.versions) - self.counts.shape[1]
        if grow:
            self.counts = np.pad(self.counts, ((0, 0), (0, grow), (0, 0)))
        right = np.asarray(correct, dtype=bool)
        n = self.counts.shape[1]
        for slot, a, b, fresh, _ in self._chunks(len(index)):
            if fresh:
                self.counts[slot] = 0
            flat = index[a:b] * 2
            counts = np.bincount(np.concatenate([flat, flat[right[a:b]] + 1]), minlength=n * 2).reshape(n, 2)
            self.counts[slot] += counts  # one basic index at a time: cheaper than a fancy index of both
            self.counts[self._cumulative] += counts
            self.rows += b - a

    def _known(self, versions: list) -> np.ndarray | None:
        """Each version's index when every one is a string already registered (the usual case), as
        ``label_keys``, ``register`` and ``lookup`` give it; else None. Registered names come from
        numpy strings, which never end with NUL: a string found is its own key."""
        try:
            return np.fromiter(map(self.versions._index.__getitem__, versions), dtype=np.int64, count=len(versions))
        except (KeyError, TypeError):  # new, None (its key is "__none__") or unhashable
            return None

    def _value(self, rows: int, correct: int) -> float | None:
        accuracy = _ratio(correct, rows)
        return accuracy if accuracy is None or self.metric == "accuracy" else 1 - accuracy

    def compare(self, a: str, b: str, scope: str = "window") -> dict:
        """Version ``a`` minus version ``b``: difference, its interval, and which one is worse, if either."""
        counts = self.counts[self._slots(scope)].sum(axis=0)
        (n_a, c_a), (n_b, c_b) = (
            counts[i].tolist() if i is not None else (0, 0) for i in (self.versions.index(a), self.versions.index(b))
        )
        out = {
            "metric": self.metric,
            "version_a": a,
            "version_b": b,
            "n_a": n_a,
            "n_b": n_b,
            "value_a": self._value(n_a, c_a),
            "value_b": self._value(n_b, c_b),
            "difference": None,
            "ci_low": None,
            "ci_high": None,
            "confidence": 1 - self.alpha,
            "p_value": None,
            "worse": None,
            "significant": False,
        }
        if not n_a or not n_b:
            return out
        z = _NORMAL.inv_cdf(1 - self.alpha / 2)
        p_a, p_b = c_a / n_a, c_b / n_b
        (l_a, u_a), (l_b, u_b) = wilson_interval(c_a, n_a, z), wilson_interval(c_b, n_b, z)
        diff = p_a - p_b
        low = diff - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
        high = diff + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
        pooled = (c_a + c_b) / (n_a + n_b)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        p_value = 2 * (1 - _NORMAL.cdf(abs(diff) / se)) if se > 0 else float(diff == 0)
        if self.metric == "error_rate":
            diff, low, high = -diff, -high, -low
        enough = min(n_a, n_b) >= self.min_count
        a_worse = high < 0 if self.metric == "accuracy" else low > 0
        b_worse = low > 0 if self.metric == "accuracy" else high < 0
        worse = (a if a_worse else b if b_worse else None) if enough else None
        out.update(
            difference=diff, ci_low=low, ci_high=high, p_value=p_value, worse=worse, significant=worse is not None
        )
        return out

    def report(self, scope: str = "window") -> dict:
        """Each version's rows and value, and every other version compared with the busiest one."""
        counts = self.counts[self._slots(scope)].sum(axis=0).tolist()
        versions = {
            name: {"rows": rows, "value": self._value(rows, correct)}
            for name, (rows, correct) in zip(self.versions.names, counts)
            if rows
        }
        if not versions:
            return {"scope": scope, "versions": {}, "baseline": None, "comparisons": []}
        baseline = min(versions, key=lambda v: (-versions[v]["rows"], v))
        return {
            "scope": scope,
            "versions": versions,
            "baseline": baseline,
            "comparisons": [self.compare(v, baseline, scope) for v in sorted(versions) if v != baseline],
        }

    def state(self) -> dict:
        return {"rows": self.rows, "versions": self.versions.state(), "counts": self.counts.tolist()}

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        self.versions.load_state(state["versions"])
        self.counts = np.array(state["counts"], dtype=np.int64).reshape(self.subwindows + 2, len(self.versions), 2)
