"""Binned sketches of a stream's columns against a reference, over a sliding window.

A ``StreamSketch`` watches several columns (features, the prediction, the
label) of one stream. Its life has two phases:

1. **Warm-up.** The first ``reference_size`` rows are counted, not kept
   (``warmup.WarmupColumn``: log-spaced buckets of numbers' distance to an
   anchor, counts per category); then each column gets a reference: quantile bin edges for
   numbers (bucket boundaries, within about 1 % of the warm-up's quantiles),
   the most frequent categories for everything else, plus an "other" bucket
   for unseen categories and a "missing" bin for absent values.
2. **Monitoring.** Rows are binned (numpy, a whole column of a batch at a time)
   into a ring of ``subwindows`` sub-windows. Whenever a sub-window fills and the
   ring holds a full window, every column's window histogram is compared with
   its reference (``stats.column_stats``: PSI, Jensen-Shannon, chi-square,
   KS, Wasserstein) and data-quality rates come out too.

Sub-windows close at fixed row counts, never at batch boundaries or on a
clock, so the scores depend only on the rows and their order.

All columns' bins live side by side in one flat vector, so scoring every
column is a handful of numpy calls, not a Python loop over columns.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> sk = StreamSketch(reference_size=500, window_size=400, subwindows=4, bins=10,
...                   max_categories=5, max_columns=10)
>>> def feed(x, start):
...     return sk.update({"x": x.tolist()}, np.arange(start, start + len(x)), np.zeros(len(x)))
>>> feed(rng.normal(0, 1, 500), 0)
[]
>>> [round(float(s["stats"]["p_value"][0]), 3) for s in feed(rng.normal(0, 1, 400), 500)]
[0.243]
>>> [round(float(s["stats"]["psi"][0]), 2) for s in feed(rng.normal(2, 1, 400), 900)][-1]
4.51
"""

from __future__ import annotations

import hashlib
import sys
from bisect import insort
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import orjson
from numpy.typing import ArrayLike, NDArray

from streamdrift.core import impact
from streamdrift.core.buckets import lower
from streamdrift.core.held import Batch, HeldRows
from streamdrift.core.protocols import State
from streamdrift.core.records import FeatureColumn, column_values
from streamdrift.core.stats import column_stats, layout
from streamdrift.core.warmup import (
    WarmupColumn,
    check_sketch_state,
    count_pending,
    from_sketch_state,
    from_states,
    is_sketch_state,
    sketch_state,
)

NUMERIC = "numeric"
CATEGORICAL = "categorical"
_NUMBER_TYPES = frozenset((int, float, type(None)))
_NO_CATEGORIES: list[str] = []
# the layout of a sketch with no columns yet (read only, shared)
_NO_INTS: NDArray[np.int64] = np.zeros(0, np.int64)
_NO_INTS32: NDArray[np.int32] = np.zeros(0, np.int32)
_NO_FLOATS: NDArray[np.float64] = np.zeros(0, np.float64)
_NO_BOOLS: NDArray[np.bool_] = np.zeros(0, bool)
_NO_INDICES: NDArray[np.intp] = np.zeros(0, np.intp)
_NO_UINTS8: NDArray[np.uint8] = np.zeros(0, np.uint8)
for _empty in (_NO_INTS, _NO_INTS32, _NO_FLOATS, _NO_BOOLS, _NO_INDICES, _NO_UINTS8):
    _empty.flags.writeable = False
_NO_INDEX: dict[str | None, int] = {}
_Count = TypeVar("_Count", bound=np.integer[Any])


def _is_array(values: FeatureColumn) -> bool:
    return type(values) is np.ndarray


def infer_kind(values: list[Any]) -> str:
    """Numeric if every present value is a JSON number (bools are categories)."""
    types = set(map(type, values))
    return NUMERIC if types <= _NUMBER_TYPES and types != {type(None)} else CATEGORICAL


def to_float(values: list[Any]) -> tuple[NDArray[np.float64], int]:
    """A float column, NaN where missing; also how many values were not numbers."""
    if set(map(type, values)) <= _NUMBER_TYPES:
        return np.array(values, dtype=np.float64), 0
    out = np.array([v if type(v) in (int, float) else None for v in values], dtype=np.float64)
    mismatched = sum(1 for v in values if v is not None and type(v) not in (int, float))
    return out, mismatched


def category_keys(values: list[Any]) -> tuple[NDArray[np.str_], NDArray[np.intp]]:
    """Unique category strings and each value's index into them; None stays apart."""
    arr = np.asarray(values, dtype=object)
    missing = np.equal(arr, np.array(None, dtype=object))  # None as an array: numpy's stubs refuse a bare None
    uniq, inverse = np.unique(arr.astype(str), return_inverse=True)
    return uniq, np.where(missing, -1, inverse)


def _categories(categories: list[str]) -> tuple[list[str], dict[str | None, int]]:
    """A column's categories and the bin of each, None -> the missing bin (one lookup per value).
    Numeric columns (most of them) share one empty list and dict: never mutated."""
    if not categories:
        return _NO_CATEGORIES, _NO_INDEX
    index: dict[str | None, int] = {c: i for i, c in enumerate(categories)}
    index[None] = len(categories) + 1
    return list(categories), index


class Column:
    """One column's reference: how values map to bins, and the reference's count per bin.

    Bin layout, numeric: ``below`` the reference minimum, the quantile bins,
    ``above`` the reference maximum, ``missing``, ``invalid`` (a value of the
    wrong type). Categorical: the tracked categories, ``other`` (unseen or
    rare), ``missing``, ``invalid`` (always empty: any value is a category).
    """

    # 10,000s of them: slots, and edges and reference counts as slices of arrays that a sketch
    # shares between its columns (``share``), made into views only when asked for
    __slots__ = ("name", "kind", "categories", "_index", "n_edges", "_edges", "_edges_at", "_ref", "_ref_at")
    _edges: NDArray[np.float64]
    _ref: NDArray[np.integer[Any]]

    def __init__(self, name: str, kind: str, edges: list[float], categories: list[str], ref_counts: list[int]):
        self.name = name
        self.kind = kind
        self.edges = edges  # numeric: [min, inner quantiles..., max]
        self.categories, self._index = _categories(categories)
        self.ref_counts = ref_counts

    @property
    def edges(self) -> NDArray[np.float64]:
        return self._edges[self._edges_at : self._edges_at + self.n_edges]

    @edges.setter
    def edges(self, edges: ArrayLike) -> None:
        self._edges, self._edges_at = np.asarray(edges, dtype=np.float64), 0
        self.n_edges = len(self._edges)

    @property
    def ref_counts(self) -> NDArray[np.integer[Any]]:
        return self._ref[self._ref_at : self._ref_at + self.n_bins]

    @ref_counts.setter
    def ref_counts(self, counts: ArrayLike) -> None:
        self._ref, self._ref_at = np.asarray(counts, dtype=np.int64), 0

    @classmethod
    def shared(cls, name: str, kind: str, categories: list[str], n_edges: int) -> Column:
        """A column whose edges and reference counts a sketch is about to ``share``."""
        column = cls.__new__(cls)
        column.name, column.kind, column.n_edges = name, kind, n_edges
        column.categories, column._index = _categories(categories)
        return column

    def share(self, edges: NDArray[np.float64], edges_at: int, ref: NDArray[np.integer[Any]], ref_at: int) -> None:
        """Keep edges and reference counts as slices of these arrays (same values)."""
        self._edges, self._edges_at, self._ref, self._ref_at = edges, edges_at, ref, ref_at

    @property
    def n_bins(self) -> int:
        return self.n_edges + 3 if self.kind == NUMERIC else len(self.categories) + 3

    @property
    def missing_bin(self) -> int:
        return self.n_bins - 2

    @property
    def invalid_bin(self) -> int:
        return self.n_bins - 1

    @classmethod
    def fit(cls, name: str, values: list[Any], bins: int, max_categories: int, min_count: int = 5) -> Column:
        """The reference of ``values``: quantile bins, or the categories seen at least ``min_count`` times."""
        kind = infer_kind(values)
        if kind == NUMERIC:
            x, _ = to_float(values)
            present = x[~np.isnan(x)]
            distinct = np.unique(present)
            if 0 < len(distinct) <= bins:  # few values (0/1 labels, small counts): one bin each
                inner, lo, hi = distinct[1:], distinct[0], distinct[-1]
            else:
                qs = np.quantile(present, np.linspace(0, 1, bins + 1)) if present.size else np.zeros(2)
                lo, hi = qs[0], qs[-1]
                inner = np.unique(qs[1:-1])
                inner = inner[(inner > lo) & (inner < hi)]
            column = cls(name, kind, [float(lo), *inner.tolist(), float(hi)], [], [])
        else:
            uniq, inverse = category_keys(values)
            counts = np.bincount(inverse[inverse >= 0], minlength=len(uniq))
            # most frequent first, ties by name: deterministic whatever the input order;
            # rare categories go to "other" so every tracked bin has a sound expected count
            order = sorted(range(len(uniq)), key=lambda i: (-counts[i], uniq[i]))
            column = cls(name, kind, [], [str(uniq[i]) for i in order[:max_categories] if counts[i] >= min_count], [])
        column.ref_counts, _ = column.bin(values)
        return column

    @classmethod
    def from_summary(
        cls, name: str, summary: WarmupColumn, rows: int, bins: int, max_categories: int, min_count: int = 5
    ) -> Column:
        """The reference of ``rows`` warm-up rows summarised by ``summary``, as ``fit`` makes it from the rows
        themselves, except that quantile edges are the bucket boundaries nearest the quantiles (so that each
        bucket's count falls in one bin, and the reference counts are exact for those edges)."""
        missing = rows - summary.present
        if summary.categorical:
            seen = dict(summary.categories)
            for number, n in (summary.distinct or {}).items():  # numbers among categories: by their text
                seen[number] = seen.get(number, 0) + n
            order = sorted(seen, key=lambda c: (-seen[c], c))
            column = cls(name, CATEGORICAL, [], [c for c in order[:max_categories] if seen[c] >= min_count], [])
            tracked = [seen[c] for c in column.categories]
            column.ref_counts = [*tracked, summary.present - sum(tracked), missing, 0]
            return column
        if summary.distinct is not None:
            values = np.array(list(map(float, summary.distinct)))
            distinct, at = np.unique(values, return_inverse=True)
            weights = np.bincount(at.ravel(), weights=list(summary.distinct.values()), minlength=len(distinct))
            if len(distinct) <= bins:  # few values (0/1 labels, small counts): one bin each
                column = cls(name, NUMERIC, [*distinct.tolist(), float(distinct[-1])], [], [])
                column.ref_counts = column._weighted(distinct, weights, missing)
                return column
        keys, counts = summary.histogram()
        lows = summary.anchor + lower(keys)
        lo, hi = float(lows[0]), float(summary.anchor + lower(keys[-1] + 1))
        below = np.cumsum(counts) - counts  # values below each bucket's lower boundary
        targets = np.linspace(0, 1, bins + 1)[1:-1] * summary.numbers
        inner = np.unique(lows[np.abs(below[None, :] - targets[:, None]).argmin(axis=1)])
        inner = inner[(inner > lo) & (inner < hi)]
        column = cls(name, NUMERIC, [lo, *inner.tolist(), hi], [], [])
        column.ref_counts = column._weighted(lows, counts, missing)
        return column

    def summary_scores(self, summary: WarmupColumn, total: ArrayLike, bins: int) -> NDArray[np.int64]:
        """The reference's scored rows (first row) and fixed-point score sums (second row) per bin, for the
        column ``from_summary`` fitted from the scored ``summary``; ``total``: [scored rows, score sum] of all
        the warm-up's rows (those without a value are the missing bin's). Each bucket, distinct number and
        category falls in one bin, as for the counts, so the sums are exact."""
        present = summary.present_scores
        missing = np.asarray(total, dtype=np.int64) - present
        out = np.zeros((2, self.n_bins), dtype=np.int64)
        if self.kind == CATEGORICAL:
            for i, category in enumerate(self.categories):  # numbers among categories: by their text, too
                out[0, i] = summary.category_scored.get(category, 0) + summary.distinct_scored.get(category, 0)
                out[1, i] = summary.category_sums.get(category, 0) + summary.distinct_sums.get(category, 0)
            out[:, len(self.categories)] = present - np.add.reduce(out[:, : len(self.categories)], axis=1)
            out[:, self.missing_bin] = missing
            return out
        if summary.distinct is not None:
            texts = list(summary.distinct)
            values = np.array(list(map(float, texts)))
            if len(np.unique(values)) <= bins:  # one bin per value, as from_summary made them
                return np.stack(
                    [
                        self._weighted(values, [float(tally.get(t, 0)) for t in texts], int(missing[j]))
                        for j, tally in enumerate((summary.distinct_scored, summary.distinct_sums))
                    ]
                )
        keys, _ = summary.histogram()
        lows = summary.anchor + lower(keys)
        pairs = summary.bucket_scores.astype(np.float64)
        return np.stack([self._weighted(lows, pairs[:, j], int(missing[j])) for j in (0, 1)])

    def scores_of(self, values: list[Any], fixed: list[int]) -> NDArray[np.int64]:
        """Scored rows and fixed-point score sums per bin (as ``summary_scores``) of ``values`` themselves,
        ``fixed`` their rows' scores (``impact.fixed``)."""
        idx, _ = self.indices(values)
        scores = np.array(fixed, dtype=np.int64)
        scored = scores >= 0
        counts = np.bincount(idx[scored], minlength=self.n_bins)
        sums = np.bincount(idx[scored], weights=scores[scored].astype(np.float64), minlength=self.n_bins)
        return np.stack([counts, np.rint(sums)]).astype(np.int64)

    def _weighted(self, values: NDArray[np.float64], counts: ArrayLike, missing: int) -> NDArray[np.int64]:
        """Reference counts: ``counts[i]`` values in the bin of ``values[i]``, and ``missing`` missing values."""
        idx, _ = self.indices(values.tolist())
        ref = np.rint(np.bincount(idx, weights=counts, minlength=self.n_bins)).astype(np.int64)
        ref[self.missing_bin] += missing
        return ref

    def bin(self, values: list[Any]) -> tuple[NDArray[np.intp], int]:
        """Histogram of ``values`` over this column's bins, and how many had the wrong type."""
        idx, mismatched = self.indices(values)
        return np.bincount(idx, minlength=self.n_bins), mismatched

    def indices(self, values: list[Any]) -> tuple[NDArray[np.intp], int]:
        """Each value's bin (as ``bin`` counts them), and how many had the wrong type."""
        if self.kind == NUMERIC:
            x, mismatched = to_float(values)
            idx = np.searchsorted(self.edges[1:-1], x, side="right") + 1
            idx[x < self.edges[0]] = 0
            idx[x > self.edges[-1]] = len(self.edges)
            idx[np.isnan(x)] = self.missing_bin
            if mismatched:
                idx[[v is not None and type(v) not in (int, float) for v in values]] = self.invalid_bin
            return idx, mismatched
        index, other, missing = self._index, len(self.categories), self.missing_bin
        return np.array(
            [missing if v is None else index.get(v if type(v) is str else str(v), other) for v in values],
            dtype=np.int64,
        ), 0

    def state(self) -> State:
        return {
            "name": self.name,
            "kind": self.kind,
            "edges": self.edges.tolist(),
            "categories": self.categories,
            "ref_counts": self.ref_counts.tolist(),
        }


def count_dtype(limit: int, unsigned: bool = False) -> np.dtype[np.integer[Any]]:
    """The smallest integer dtype that holds the counts 0 to ``limit``.

    Live arrays are signed, so that their sums, and differences with int64
    arrays, stay int64 (numpy sums small signed integers into int64);
    snapshots store counts unsigned, as they are never negative.
    """
    for dtype, largest in _COUNT_DTYPES[unsigned]:
        if limit <= largest:
            return dtype
    return np.dtype(np.int64)


_COUNT_DTYPES: dict[bool, list[tuple[np.dtype[np.integer[Any]], int]]] = {
    unsigned: [(np.dtype(t), int(np.iinfo(t).max)) for t in types]
    for unsigned, types in ((False, (np.int8, np.int16, np.int32)), (True, (np.uint8, np.uint16, np.uint32)))
}


def _numbers_only(values: FeatureColumn) -> bool:
    """Whether every value is a number or None (an array column holds floats only)."""
    return _is_array(values) or set(map(type, values)) <= _NUMBER_TYPES


class _Shape:
    """What a sketch's bin layout derives from its columns' kinds and sizes alone, not from their
    values: the same for every model with the same features, so made once and shared (read only)."""

    _made: dict[tuple[tuple[bool, ...], tuple[int, ...], tuple[int, ...]], _Shape] = {}
    MAX_SHAPES = 4096

    def __init__(self, ordered: list[bool], n_edges: list[int], n_bins: list[int]):
        self.sizes = np.array(n_bins, dtype=np.int64)
        ends = np.cumsum(self.sizes)
        self.starts = ends - self.sizes
        self.starts_list = self.starts.tolist()
        self.ordered = np.array(ordered, dtype=bool)
        mask = np.ones(int(ends[-1]), dtype=bool)
        mask[ends - 2] = False
        mask[ends - 1] = False
        self.value_mask = mask
        # numeric: "below" is the first bin, "above" the one before missing; categorical: "other"
        self.below_at = np.where(self.ordered, self.starts, ends - 3)
        self.above_at = ends - 3
        # what scoring a window needs: the statistics' layout, the tails it folds, the bins it rates
        self.stats_layout = layout(self.sizes, mask)
        self.fold_below, self.fold_above = self.below_at[self.ordered], self.above_at[self.ordered]
        self.fold_below_into, self.fold_above_into = self.fold_below + 1, self.fold_above - 1
        self.rated = np.stack((self.below_at, self.above_at, ends - 2, ends - 1))
        self.ref_rated = np.stack((ends - 2, self.above_at))
        edges = np.array(n_edges, dtype=np.int64)
        edges_at = np.cumsum(edges) - edges
        self.edges_at = edges_at.tolist()
        # numeric columns: where their inner edges, minimum and maximum sit in the flat edge array
        self.numeric = np.flatnonzero(self.ordered).astype(np.intp)
        # the rows of a batch's bins that each kind fills
        self.numeric_list = self.numeric.tolist()
        self.categorical = [i for i, o in enumerate(ordered) if not o]
        self.first, count = edges_at[self.numeric], edges[self.numeric]
        self.last = self.first + count - 1
        # the thresholds a value is compared with, one row each: the minimum, the inner edges
        # (padded), the maximum; one column per numeric column (see StreamSketch._set_columns)
        width = max(int(count.max(initial=2)) - 2, 1)
        j = np.arange(width)[:, None]
        self.inside = j < (count - 2)[None, :]
        self.take = np.where(self.inside, self.first[None, :] + 1 + j, 0)
        # bins of numeric columns fit a byte (always, with at most 100 bins): counted as bytes
        self.narrow = bool(count.max(initial=0) + 1 < 256)
        self.missing_bin = (count + 1)[:, None].astype(np.uint8 if self.narrow else np.int64)
        for value in (*vars(self).values(), *self.stats_layout):
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    @classmethod
    def of(cls, columns: list[Column]) -> _Shape:
        ordered = [c.kind == NUMERIC for c in columns]
        n_edges = [c.n_edges for c in columns]
        n_bins = [c.n_bins for c in columns]
        key = (tuple(ordered), tuple(n_edges), tuple(n_bins))
        shape = cls._made.get(key)
        if shape is None:
            shape = cls(ordered, n_edges, n_bins)
            if len(cls._made) < cls.MAX_SHAPES:
                cls._made[key] = shape
        return shape


NO_VERSION = "__none__"  # the version key of rows without a model_version
OTHER_VERSION = "__other__"  # the rows of versions over the bound, counted together


class VersionTally:
    """Rows per model version in each sub-window of a ring, bounded.

    A drift event of a window names the window's busiest version, so the counts
    close and roll with the sketch's sub-windows (``StreamSketch.update``): they
    depend on the rows and their order only. At most ``max_versions`` names are
    counted at a time, first come first counted; rows of further versions count
    as ``__other__``. A name no sub-window counts any more is forgotten when its
    last sub-window is cleared, so a model that moves from version to version
    keeps naming them, and a stream of unique versions costs at most
    ``max_versions + 1`` columns.

    Examples
    --------
    >>> tally = VersionTally(slots=2, max_versions=2)
    >>> tally.add(0, ["v1", "v1", "v2", None])
    >>> tally.window()
    {'__other__': 1, 'v1': 2, 'v2': 1}
    >>> tally.clear(1); tally.add(1, ["v3"]); tally.window()["__other__"]
    2
    >>> tally.clear(0); tally.window(), tally.names
    ({'__other__': 1}, ['__other__'])
    >>> tally.add(0, ["v3"]); tally.window()
    {'__other__': 1, 'v3': 1}
    """

    # one per sketch, three per model: slots, and names looked up in their short list rather than a dict
    __slots__ = ("max_versions", "names", "counts")

    def __init__(self, slots: int, max_versions: int, dtype: np.dtype[np.integer[Any]] | None = None):
        self.max_versions = max_versions
        self.names: list[str] = []
        self.counts: NDArray[np.integer[Any]] = np.zeros((slots, 0), dtype=dtype or np.dtype(np.uint32))

    def add(self, slot: int, versions: Sequence[str | None]) -> None:
        """Count ``versions`` (one per row, None: no version) into sub-window ``slot``."""
        if not versions:
            return
        first = versions[0]
        if versions.count(first) == len(versions):  # the usual batch: one version throughout
            tallied: Mapping[str | None, int] = {first: len(versions)}
        else:
            tallied = Counter(versions)
        for version, n in tallied.items():
            column = self._column(NO_VERSION if version is None else version)  # before indexing: it may widen counts
            self.counts[slot, column] += n

    def _column(self, key: str) -> int:
        """The column of a version: its own, a new one, or ``__other__``'s past the bound."""
        names = self.names
        if key in names:
            return names.index(key)
        if len(names) - (OTHER_VERSION in names) >= self.max_versions:
            key = OTHER_VERSION
            if key in names:
                return names.index(key)
        names.append(key)
        self.counts = np.pad(self.counts, ((0, 0), (0, 1)))
        return len(names) - 1

    def clear(self, slot: int) -> None:
        """Sub-window ``slot`` starts again: its counts go, and the names no sub-window counts any more."""
        self.counts[slot] = 0
        if not self.names:
            return
        live = np.logical_or.reduce(self.counts != 0, axis=0)
        if not np.logical_and.reduce(live):
            self._keep(live)

    def _keep(self, live: NDArray[np.bool_]) -> None:
        self.names = [name for name, kept in zip(self.names, live.tolist()) if kept]
        self.counts = self.counts[:, live]

    def window(self) -> dict[str, int]:
        """Rows per version over the whole ring (versions with rows only), by name."""
        totals = np.add.reduce(self.counts, axis=0, dtype=np.int64).tolist()
        return {name: n for name, n in sorted(zip(self.names, totals)) if n}

    def state(self) -> State:
        return {"names": list(self.names), "counts": self.counts.copy()}

    def load_state(self, state: State) -> None:
        self.names = list(state["names"])
        slots = self.counts.shape[0]
        self.counts = np.array(state["counts"], dtype=self.counts.dtype).reshape(slots, len(self.names))


# uncounted numbers a warm-up column keeps from which the loop counts them before a forked checkpoint
# (``StreamSketch.count_pending``): the copy counts at most this many again per checkpoint
COUNT_PENDING_FROM = 64


class StreamSketch:
    """Reference + sliding window of binned counts for the columns of one stream.

    Parameters
    ----------
    reference_size
        Rows of warm-up that form the reference.
    window_size
        Rows in the window compared with the reference.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.
    bins
        Quantile bins per numeric column.
    max_categories
        Categories tracked per column; others fall into "other".
    max_columns
        Columns tracked; columns beyond it (by name order) are counted, not tracked.
    max_versions
        Model versions counted per window (``VersionTally``); others count as ``__other__``.
    scored
        Whether ``update`` is given the rows' scores: the reference then keeps the model's scored rows
        and score sum per bin, the window its scored rows and score sum, and each scored window says how
        much of the change in the mean score each column's shift explains (``core/impact.py``).
    """

    vectorised = True  # False: bin column by column (the reference the tests compare with)
    # warm-up rows held back stay fewer than this (``core/held.py``; a batch that brings them to it is counted with
    # them): a fleet's model gets a few rows a poll, and an update costs dozens of calls whatever its rows; 0 (or
    # 1): every batch updates at once (what the tests compare with)
    hold_rows = 64
    # ... and their values (rows x columns) fewer than this: a row of a thousand features, or of long strings,
    # held would cost more than what the warm-up keeps of it (a model of 1,000 distinct 64-character strings:
    # 8.8 MiB held at 63 rows against 1.9 without holding; 2,048 values are 24 features' 64 rows and more)
    hold_values = 2048

    def __init__(
        self,
        reference_size: int,
        window_size: int,
        subwindows: int,
        bins: int,
        max_categories: int,
        max_columns: int,
        state: State | None = None,
        max_versions: int = 10,
        scored: bool = False,
    ):
        self.scored = scored
        self.reference_size = reference_size
        self.window_size = window_size
        self.subwindows = subwindows
        self.bins = bins
        self.max_categories = max_categories
        self.max_columns = max_columns
        self.max_versions = max_versions
        # a warm-up column's bounds, of the settings alone (made once: a fleet's new model makes 26 columns):
        # exact distinct numbers while they could be the bin edges or categories; categories: ten times those
        # tracked, so that the most frequent are among them (the rows bound them too)
        self._column_limit = max(bins, max_categories)
        self._column_kept = min(10 * max_categories, reference_size)
        self._held = HeldRows()  # rows not counted yet (``settle``): never state
        if state is None:
            self._reset()
        else:  # restored: not made fresh first
            self.load_state(state)

    def _reset(self) -> None:
        self.rows = 0
        self._stored_warmup: State | None = None  # a restored warm-up's state, its columns not made yet
        self._warmup: dict[str, WarmupColumn] | None = {}  # the columns (``warmup``), once made
        self.warmup_rows = 0
        self._set_columns([])
        self.untracked_columns = 0
        # `_name_hash` of the names the warm-up saw but keeps no column of: all of them, or past UNTRACKED_SAMPLE
        # those below 2**64 >> level (``_count_untracked``)
        self._warmup_untracked: set[int] = set()
        self._untracked_level = 0
        self._warmup_names: list[str] | None = None  # the warm-up's column names, sorted (made when first needed)
        self.type_mismatches: dict[str, int] = {}
        # counts per sub-window, at most slot_size each: unsigned and narrow (uint8 at 200 rows), summed as int64
        self.ring: NDArray[np.unsignedinteger[Any]] = np.zeros(
            (self.subwindows, 0), dtype=count_dtype(self.slot_size, unsigned=True)
        )
        # per sub-window: rows, first/last source offset, first/last event time
        self.slot_rows = np.zeros(self.subwindows, dtype=np.int64)
        self.slot_offsets = np.zeros((self.subwindows, 2), dtype=np.int64)
        self.slot_times = np.zeros((self.subwindows, 2), dtype=np.float64)
        self.slot = 0
        self.slots_filled = 0
        self.last_scores: dict[str, float] = {}
        self.versions = self._version_tally()
        # scored sketches: [scored rows, fixed-point score sum] of the warm-up's rows (None: not known, the
        # warm-up of a snapshot from before issue 23); the reference's per bin (2 x bins, None: not known);
        # and per sub-window
        self.warmup_scores: list[int] | None = [0, 0] if self.scored else None
        self._ref_scores: NDArray[np.int64] | None = None
        self.score_ring = np.zeros((self.subwindows, 2), dtype=np.int64)
        # the latest window's explained change per column and observed change of the mean score (the summary's)
        self.last_impact: dict[str, float] = {}
        self.last_score_change: float | None = None

    def rows_to_next_step(self) -> int:
        """Rows until the sketch next reports: its reference completes, or a window is scored."""
        return self._rows_to_step() - self._held.rows

    def _rows_to_step(self) -> int:
        """Rows until the sketch next reports, counting from the last row counted (the rows held not)."""
        if not self.ready:
            return self.reference_size - self.warmup_rows
        closes = max(1, self.subwindows - self.slots_filled)  # sub-windows to fill before a window scores
        return closes * self.slot_size - int(self.slot_rows[self.slot])

    def rebaseline(self) -> None:
        """Learn a new reference from the next ``reference_size`` rows; the window starts again after it.
        The position (``rows``) and the type-mismatch counts go on."""
        self.settle()
        rows, mismatches = self.rows, self.type_mismatches
        self._reset()
        self.rows, self.type_mismatches = rows, mismatches

    def _version_tally(self) -> VersionTally:
        return VersionTally(self.subwindows, self.max_versions, count_dtype(self.slot_size, unsigned=True))

    @property
    def ready(self) -> bool:
        """Whether the reference is complete (asked without making a restored warm-up's columns)."""
        if "_warmup" not in self.__dict__:  # restored during its warm-up, its columns not made yet
            return False
        return self._warmup is None

    @property
    def warmup(self) -> dict[str, WarmupColumn] | None:
        """The warm-up's columns (None once the reference is complete); a restored warm-up's are made now."""
        self.settle()
        return self._warmup_columns()

    def _warmup_columns(self) -> dict[str, WarmupColumn] | None:
        if "_warmup" not in self.__dict__:
            assert self._stored_warmup is not None
            self._warmup = self._load_warmup(self._stored_warmup)
            self._stored_warmup = None  # the columns are the state from now on
        return self._warmup

    @property
    def knows_scores(self) -> bool:
        """Whether the reference has the model's scores per bin (a scored sketch's windows then explain them)."""
        return self._ref_scores is not None

    @property
    def slot_size(self) -> int:
        return self.window_size // self.subwindows

    def update(
        self,
        columns: Mapping[str, FeatureColumn],
        offsets: NDArray[np.int64],
        times: NDArray[np.float64],
        numeric: frozenset[str] | None = None,
        versions: Sequence[str | None] | None = None,
        scores: NDArray[np.float64] | None = None,
    ) -> list[dict[str, Any]]:
        """Add rows; return one score record per window completed within them.

        ``numeric``: names of columns known to hold only numbers and None (the decoder checked).
        ``versions``: each row's model version (None: it has none), counted per sub-window: a score
        record's ``versions`` are the window's rows per version. ``scores``: each row's score (NaN: it
        has none), given to a scored sketch.

        Rows of the warm-up that do not complete it may be held and counted later (``core/held.py``):
        nothing a reader sees differs (``settle``).
        """
        held = self._held
        if held.rows and not held.fits(columns, versions, scores):
            self.settle()  # a batch of another layout: those held are counted first
        rows = held.rows + len(offsets)
        if (
            not self.ready
            and rows < min(self._rows_to_step(), self.hold_rows)
            and rows * len(columns) < self.hold_values
        ):
            held.add(columns, offsets, times, numeric, versions, scores)
            return []
        if not held.rows:
            return self._update((columns, offsets, times, numeric, versions, scores))
        held.add(columns, offsets, times, numeric, versions, scores)
        return self._update(held.take())

    def settle(self) -> None:
        """Count the rows held (``update``), as every reader of what they change does first: ``state()``, the
        warm-up's columns, a rebaseline, a reference set. Only warm-up rows are held, which count no type
        mismatch and score no window: the rest of what the sketch shows does not wait for them."""
        if self._held.rows:
            self._update(self._held.take())

    def count_pending(self) -> None:
        """Count into their histograms the numbers the warm-up's columns keep uncounted (up to 1,024 each), where
        a column keeps at least ``COUNT_PENDING_FROM``, as ``state()`` counts them all (``warmup.count_pending``;
        what a reader sees is the same either way). A worker that takes states in a forked copy does it in the
        loop first (``ModelMonitor.settle``): else only the copy counts them, and every later checkpoint's copy
        counts them all again. Fewer are left to the copy: counting a model's columns costs the loop's pause
        about 70 us whatever their numbers (10,000 models: 0.7 s), and the copy counts them again for less."""
        warmup = self.__dict__.get("_warmup")  # (none made yet for a restored warm-up: it has nothing uncounted)
        if warmup:
            count_pending(warmup, COUNT_PENDING_FROM)

    @property
    def seen(self) -> int:
        """Rows given to ``update``, those held included (``rows``: those counted)."""
        return self.rows + self._held.rows

    def _update(self, batch: Batch) -> list[dict[str, Any]]:
        """``update``'s rows (its arguments, in order) counted now."""
        columns, offsets, times, numeric, versions, scores = batch
        n = len(offsets)
        results: list[dict[str, Any]] = []
        start = 0
        fixed = None
        if self.scored:
            assert scores is not None  # a scored sketch is given every row's score
            fixed = impact.fixed(scores)
        if not self.ready:
            take = min(n, self.reference_size - self.warmup_rows)
            self._add_warmup(columns, take, numeric or frozenset(), None if fixed is None else fixed[:take])
            start = take
            if self.warmup_rows == self.reference_size:
                self._build_reference()
        if start == n or not self.columns:  # all rows went to the warm-up, or it saw no column (every
            self.rows += n  # event had "features": {})
            return results
        bins = self._bin(columns, start, n, numeric)
        first, slot_size = start, self.slot_size
        while start < n:
            filled = int(self.slot_rows[self.slot])
            stop = min(n, start + slot_size - filled)
            self._add_slot(bins[:, start - first : stop - first], offsets, times, start, stop, filled)
            if fixed is not None:
                self.score_ring[self.slot] += impact.tally(fixed[start:stop])
            if versions is not None:
                self.versions.add(self.slot, versions[start:stop])
            full = filled + stop - start == slot_size
            start = stop
            if full:
                self.slots_filled = min(self.slots_filled + 1, self.subwindows)
                if self.slots_filled == self.subwindows:
                    results.append(self._score(self.rows + stop, int(offsets[stop - 1]), float(times[stop - 1])))
                self.slot = (self.slot + 1) % self.subwindows
                self.ring[self.slot] = 0
                self.score_ring[self.slot] = 0
                self.slot_rows[self.slot] = 0
                self.versions.clear(self.slot)
        self.rows += n
        return results

    def _add_warmup(
        self, columns: Mapping[str, FeatureColumn], take: int, numeric: frozenset[str], fixed: list[int] | None
    ) -> None:
        """Count rows into the warm-up summaries (a column's rows before it first appears: missing), with
        their fixed-point scores ``fixed`` if the warm-up keeps them."""
        if self.warmup_scores is None:
            fixed = None
        warmup = self._warmup_columns()
        assert warmup is not None
        for name, values in columns.items():
            if take < len(values):  # (no slice of every column of every batch but the reference's last)
                values = values[:take]
            column = warmup.get(name)
            if column is None:
                # a name first comes with its first value: a batch's column holds None where an event lacks the
                # name, so one across the reference's end has columns of names first seen after it
                # (its first row usually has one: no list of the others made, as _has_value makes for an array)
                first = values[0] if len(values) else None
                if not (first is not None and first == first or _has_value(values)) or not self._keeps(name, warmup):
                    continue
                column = warmup[name] = self._warmup_column()
            column.add(values, numbers_only=name in numeric, scores=fixed)
        if fixed is not None and self.warmup_scores is not None:
            scored, total = impact.tally(fixed)
            self.warmup_scores = [self.warmup_scores[0] + scored, self.warmup_scores[1] + total]
        self.warmup_rows += take

    def _keeps(self, name: str, warmup: dict[str, WarmupColumn]) -> bool:
        """Whether the warm-up makes a column for ``name``, seen for the first time. The reference tracks the
        first ``max_columns`` names by name order, so the warm-up keeps the first ``max_columns`` of the names
        seen so far, no more (a name past them never comes back among them: its column would only cost
        memory and state, up to ``reference_size`` x 1,000 of them): the others are counted
        (``untracked_columns``), each by a hash, so that a name seen again is not counted twice."""
        names = self._warmup_names
        if names is None:
            if len(warmup) < self.max_columns:  # room for it: no order to keep yet (a new model's first columns)
                return True
            names = self._warmup_names = sorted(warmup)
        if len(names) >= self.max_columns:
            if name > names[-1]:
                self._count_untracked(name)
                return False
            dropped = names.pop()  # past the max_columns first now
            del warmup[dropped]
            self._count_untracked(dropped)
        insort(names, name)
        return True

    def _count_untracked(self, name: str) -> None:
        """Count ``name`` among the names the warm-up keeps no column of, by its hash, so that a name seen again
        is not counted twice. Past ``UNTRACKED_SAMPLE`` hashes only those below ``2**64 >> level`` are kept, the
        level raised until they fit (a model whose names are new at every event saw up to ``reference_size`` x
        1,000 of them): their number times ``2**level`` estimates all of them. The names kept are a function of
        the names seen, whatever their order and wherever batches end."""
        at = _name_hash(name)
        if at >> (64 - self._untracked_level):  # above the bound (nothing is, at level 0)
            return
        self._warmup_untracked.add(at)
        self._fit_untracked()

    def _fit_untracked(self) -> None:
        """Raise the level of the untracked names' sample until it holds at most ``UNTRACKED_SAMPLE`` hashes."""
        while len(self._warmup_untracked) > UNTRACKED_SAMPLE:
            self._untracked_level += 1
            bound = 1 << (64 - self._untracked_level)
            self._warmup_untracked = {kept for kept in self._warmup_untracked if kept < bound}

    def _untracked_names(self) -> int:
        """How many names the warm-up keeps no column of: exact up to ``UNTRACKED_SAMPLE``, estimated past it."""
        return len(self._warmup_untracked) << self._untracked_level

    def _warmup_column(self) -> WarmupColumn:
        return WarmupColumn(self._column_limit, self._column_kept, scored=self.warmup_scores is not None)

    def _build_reference(self) -> None:
        warmup = self._warmup_columns()
        assert warmup is not None
        names = sorted(warmup)
        self.untracked_columns = max(0, len(names) + self._untracked_names() - self.max_columns)
        rows, bins, max_categories = self.warmup_rows, self.bins, self.max_categories
        columns = [
            Column.from_summary(name, warmup[name], rows, bins, max_categories) for name in names[: self.max_columns]
        ]
        scores = None
        total = self.warmup_scores
        if total is not None and columns and all(warmup[c.name].scored for c in columns):
            scores = np.concatenate([c.summary_scores(warmup[c.name], total, bins) for c in columns], axis=1)
        self.set_reference(columns, scores)

    def set_reference(self, columns: list[Column], scores: NDArray[np.int64] | None = None) -> None:
        """Start monitoring against ``columns`` (from the warm-up, or from a reference profile); ``scores``:
        the reference's scored rows and fixed-point score sums per bin, the columns' side by side (2 x bins)."""
        self.settle()
        self._warmup, self._stored_warmup = None, None
        self._warmup_untracked, self._untracked_level, self._warmup_names = set(), 0, None
        self.warmup_scores = None
        self._set_columns(columns)
        self._ref_scores = scores if self.scored else None
        self.ring = np.zeros(
            (self.subwindows, int(self._sizes.sum())), dtype=count_dtype(self.slot_size, unsigned=True)
        )

    def _set_columns(
        self, columns: list[Column], edges: ArrayLike | None = None, ref: NDArray[np.integer[Any]] | None = None
    ) -> None:
        """The columns, and the flat bin layout derived from them (rebuilt on load, not state).

        ``edges`` and ``ref``: the columns' edges and reference counts already
        side by side in column order (a snapshot has them so): used as they are.
        """
        self.__dict__.pop("_restored", None)  # the layout of load_state, if not made yet: replaced
        self.columns = columns
        self._layout: orjson.Fragment | None = None
        self._names: tuple[str, ...]
        if not columns:  # a fresh sketch: nothing to lay out (10,000 restored models make 30,000 of these)
            self._shape: _Shape | None = None
            self._sizes = self._starts = self._ref_n = self._below_at = self._above_at = _NO_INTS
            self._ordered = self._value_mask = _NO_BOOLS
            self._ref = self._ref_folded = _NO_INTS32
            self._ref_stored = _NO_UINTS8
            self._edges = _NO_FLOATS
            self._numeric, self._names = _NO_INDICES, ()
            return
        shape = self._shape = _Shape.of(columns)
        self._sizes, self._starts, self._ordered = shape.sizes, shape.starts, shape.ordered
        self._value_mask, self._below_at, self._above_at = shape.value_mask, shape.below_at, shape.above_at
        self._numeric, self._missing_bin = shape.numeric, shape.missing_bin
        self._names = tuple(c.name for c in columns)  # looked up in every batch
        # reference counts (at most reference_size each: int32 is plenty)
        self._ref = (np.concatenate([c.ref_counts for c in columns]) if ref is None else ref).astype(np.int32)
        self._ref_n = np.add.reduceat(self._ref, shape.starts)
        self._ref_folded = self._fold_tails(self._ref)
        self._ref_stored = self._ref.astype(count_dtype(int(self._ref.max(initial=0)), unsigned=True))
        # all edges in one array, each column a slice of it: what state() writes, at no cost
        self._edges = np.concatenate([c.edges for c in columns]) if edges is None else np.asarray(edges, np.float64)
        for column, at, ref_at in zip(columns, shape.edges_at, shape.starts_list):
            column.share(self._edges, at, self._ref, ref_at)
        # numeric columns binned all at once: a value's bin is how many thresholds it reaches (>=):
        # the minimum, the inner edges (padded with NaN, which nothing reaches), and the smallest
        # float above the maximum (NaN if that is +inf); side by side, one column per numeric column
        if len(shape.numeric) and len(self._edges):
            above = np.nextafter(self._edges[shape.last], np.inf)
            above[np.isinf(above)] = np.nan
            self._thresholds = np.concatenate(
                (
                    self._edges[shape.first][None, :],
                    np.where(shape.inside, self._edges[shape.take], np.nan),
                    above[None, :],
                )
            )[:, :, None]
        else:
            self._thresholds = np.full((1, len(shape.numeric), 1), np.nan)

    def _fold_tails(self, counts: NDArray[_Count]) -> NDArray[_Count]:
        """Counts with numeric values outside the reference range moved into the outermost value bins.

        The reference has nothing out of its own range, so those two bins would
        test every outlier against an expected count of zero: a few values past
        the reference's minimum would pass for drift. They stay visible as the
        out-of-range data-quality rate.
        """
        folded = counts.copy()
        shape = self._shape
        assert shape is not None  # a sketch with columns: the only kind that folds or bins
        below, above = shape.fold_below, shape.fold_above
        folded[shape.fold_below_into] += folded[below]
        folded[shape.fold_above_into] += folded[above]
        folded[below] = 0
        folded[above] = 0
        return folded

    def _bin(
        self, columns: Mapping[str, FeatureColumn], start: int, stop: int, numeric: frozenset[str] | None
    ) -> NDArray[np.int64]:
        """Rows ``start:stop`` as bins of the flat layout: one row per column, one column per row.

        The reference bins column by column (``Column.indices``). The numeric columns whose
        values are all numbers or None (``numeric``: the names the decoder found so) are binned
        together instead (``_bin_numbers``), unless ``vectorised`` is off: the same bins.
        """
        rows = stop - start
        out = np.empty((len(self.columns), rows), dtype=np.int64)
        shape = self._shape
        assert shape is not None
        values = [[None] * rows if v is None else v[start:stop] for v in map(columns.get, self._names)]
        by_column: Sequence[int] = range(len(self.columns))
        known = numeric or frozenset()
        if (
            self.vectorised
            and shape.numeric_list
            and all(self._names[i] in known or _numbers_only(values[i]) for i in shape.numeric_list)
        ):
            out[shape.numeric_list] = self._bin_numbers(np.array([values[i] for i in shape.numeric_list], np.float64))
            by_column = shape.categorical
        for i in by_column:
            column = self.columns[i]
            out[i], mismatched = column.indices(column_values(values[i]))
            if mismatched:
                self.type_mismatches[column.name] = self.type_mismatches.get(column.name, 0) + mismatched
        out += self._starts[:, None]
        return out

    def _bin_numbers(self, x: NDArray[np.float64]) -> NDArray[np.integer[Any]]:
        """The bins of the numeric columns' values ``x`` (one row per column, NaN where missing), as
        ``Column.indices`` gives them: a value's bin is how many of its column's thresholds it
        reaches (see ``_set_columns``), and NaN goes to the missing bin."""
        shape = self._shape
        assert shape is not None
        reached = x[None] >= self._thresholds
        # counted in bytes where every bin number fits one (at most 100 bins)
        bins: NDArray[np.integer[Any]] = reached.sum(axis=0, dtype=np.uint8 if shape.narrow else np.int64)
        np.copyto(bins, self._missing_bin, where=np.isnan(x))
        return bins

    def _add_slot(
        self,
        bins: NDArray[np.int64],
        offsets: NDArray[np.int64],
        times: NDArray[np.float64],
        start: int,
        stop: int,
        filled: int,
    ) -> None:
        """Rows ``start:stop`` into the current sub-window, which holds ``filled`` rows."""
        slot = self.slot
        self.ring[slot] += np.bincount(bins.ravel(), minlength=self.ring.shape[1]).astype(self.ring.dtype, copy=False)
        if not filled:
            self.slot_offsets[slot, 0], self.slot_times[slot, 0] = offsets[start], times[start]
        self.slot_offsets[slot, 1], self.slot_times[slot, 1] = offsets[stop - 1], times[stop - 1]
        self.slot_rows[slot] = filled + stop - start

    def _score(self, position: int, offset: int, time: float) -> dict[str, Any]:
        """Drift statistics and data-quality rates of the window, ``position`` rows in."""
        shape = self._shape
        assert shape is not None
        counts = self.ring.sum(axis=0, dtype=np.int64)
        folded = self._fold_tails(counts)
        stats = column_stats(folded, self._ref_folded, self._sizes, self._ordered, self._value_mask, shape.stats_layout)
        # the reference's rates: a few numbers per column, not worth their memory in every model
        ref_rates = self._ref[shape.ref_rated] / np.maximum(self._ref_n, 1)
        missing_ref, other_ref = ref_rates
        rated = counts[shape.rated]
        below, above, missing, invalid = rated
        n = np.maximum(stats["n"], 1)
        quality = {
            "missing_rate": missing / n,
            "missing_rate_ref": missing_ref,
            "invalid_rate": invalid / n,
            "out_of_range_rate": np.where(self._ordered, below + above, 0) / n,
            "new_category_rate": np.where(self._ordered, 0.0, np.maximum(above / n - other_ref, 0.0)),
        }
        names = list(self._names)
        self.last_scores = dict(zip(names, stats["psi"].tolist()))
        oldest = (self.slot + 1) % self.subwindows
        scored = {
            "position": position,
            "names": names,
            "stats": stats,
            "quality": quality,
            "versions": self.versions.window(),
            "window": {
                "start_time": float(self.slot_times[oldest, 0]),
                "end_time": time,
                "count": int(self.slot_rows.sum()),
                "start_offset": int(self.slot_offsets[oldest, 0]),
                "end_offset": offset,
            },
        }
        if self._ref_scores is not None:
            scored["impact"] = self._impact(folded)
        return scored

    def _impact(self, folded: NDArray[np.int64]) -> dict[str, Any]:
        """How much of the change in the mean score each column's shift explains (``core/impact.py``), the
        window's and the reference's mean scores. Tail bins have no reference rows: folded as for the tests."""
        assert self._ref_scores is not None
        explained = impact.explained_change(folded, self._ref_folded, self._ref_scores, self._starts)
        self.last_impact = {n: x for n, x in zip(self._names, explained.tolist()) if x == x}
        window = impact.mean_score(*np.add.reduce(self.score_ring, axis=0).tolist())
        # every column's bins add up to every reference row: the first column's tell the reference's mean
        reference = impact.mean_score(*np.add.reduce(self._ref_scores[:, : int(self._sizes[0])], axis=1).tolist())
        self.last_score_change = None if window is None or reference is None else window - reference
        return {"explained": explained, "window_mean": window, "reference_mean": reference}

    def state(self) -> State:
        """Plain data and numpy arrays (copies): columns side by side, counts unsigned and narrow."""
        self.settle()
        untracked = self._warmup_untracked
        return {
            "rows": self.rows,
            "warmup": self._warmup_state(),
            "warmup_rows": self.warmup_rows,
            # only while the warm-up saw names past max_columns: no key otherwise (nor in a state before it)
            **({"warmup_untracked": np.array(sorted(untracked), dtype=np.uint64)} if untracked else {}),
            **({"warmup_untracked_level": self._untracked_level} if self._untracked_level else {}),
            "columns": {
                "layout": self._layout_json(),
                "edges": self._edges,  # never changes: no copy
                "ref_counts": self._ref_stored,  # never changes: made once
            },
            "untracked_columns": self.untracked_columns,
            "type_mismatches": dict(self.type_mismatches),
            "ring": self.ring.copy(),
            # a few numbers each: lists cost less than arrays to write and to read
            "slot_rows": self.slot_rows.tolist(),
            "slot_offsets": self.slot_offsets.tolist(),
            "slot_times": self.slot_times.tolist(),
            "slot": self.slot,
            "slots_filled": self.slots_filled,
            "last_scores": list(self.last_scores.values()),  # in column order
            "versions": self.versions.state(),
            **({"scores": self._scores_state()} if self.scored else {}),
        }

    def _warmup_state(self) -> State | None:
        """The warm-up columns' states; a restored warm-up not made yet gives back what it was restored
        from, the same values (``WarmupColumn.from_state`` then ``state()`` is the identity)."""
        if "_warmup" not in self.__dict__:
            return self._stored_warmup
        return None if self._warmup is None else sketch_state(self._warmup)

    def _scores_state(self) -> State:
        """A scored sketch's scores: the warm-up's, the reference's per bin (narrow), the sub-windows'."""
        ref = self._ref_scores
        return {
            "warmup": self.warmup_scores,
            "reference": None
            if ref is None
            else {
                "counts": ref[0].astype(count_dtype(int(ref[0].max(initial=0)), unsigned=True)),
                "sums": ref[1].astype(count_dtype(int(ref[1].max(initial=0)), unsigned=True)),
            },
            "ring": self.score_ring.ravel().tolist(),  # ten numbers: a list costs less than an array
            # in the order of last_scores, NaN where not known
            "last": np.array([self.last_impact.get(name, np.nan) for name in self.last_scores], dtype=np.float64),
            "last_change": self.last_score_change,
        }

    def _layout_json(self) -> orjson.Fragment:
        """Names, kinds, categories and edge counts of the columns: fixed once the reference is,
        so encoded once (a checkpoint of 10,000 models would otherwise rebuild them every time)."""
        if self._layout is None:
            layout = self.__dict__.get("_restored")  # as loaded, if the columns are not made yet
            if layout is None:
                columns = self.columns
                layout = {
                    "names": [c.name for c in columns],
                    "kinds": [c.kind for c in columns],
                    "categories": [c.categories for c in columns],
                    "edge_counts": [c.n_edges for c in columns],
                }
            # a copy: orjson's own result keeps its whole 4-8 KiB output buffer allocated
            self._layout = orjson.Fragment(bytes(memoryview(orjson.dumps(layout, option=orjson.OPT_SORT_KEYS))))
        return self._layout

    def load_state(self, state: State) -> None:
        """Restore ``state()`` (its arrays, or lists of the same numbers).

        The columns and what the bin layout derives from them are made when first used
        (``__getattr__``), not here: a worker restoring 10,000 models is ready sooner, and a
        model without events after the restart never makes them. ``state()`` needs none of it.
        So are the warm-up's columns (``warmup``), most of a model's state during its warm-up
        and of what restoring it cost (issue 16): until then ``state()`` gives back their state
        as restored (its arrays copied: never a view of the snapshot's bytes).
        """
        self._held = HeldRows()  # what was held is no longer the state
        self.rows = state["rows"]
        scores = state.get("scores")  # before the warm-up columns: they are scored if it kept scores
        self.warmup_scores = None if not self.scored or scores is None or scores["warmup"] is None else [0, 0]
        if "columns" in self.__dict__:  # made: forgotten, to be made again from the state's layout
            for name in _DERIVED:
                self.__dict__.pop(name, None)
        warmup = state["warmup"]
        self._stored_warmup = None
        # kept as it is where it is what state() gives: a decoded snapshot's arrays (lists would come back as lists)
        if warmup is not None and _arrays_kept(warmup):
            if is_sketch_state(warmup):  # refused now, not when first used (at a checkpoint, maybe)
                check_sketch_state(warmup)
            self.__dict__.pop("_warmup", None)  # made when first used (``warmup``)
            self._stored_warmup = _copied(warmup)
        else:  # none (the reference is complete), lists, or raw rows of format version 2 (counted now, not kept)
            self._warmup = None if warmup is None else self._load_warmup(warmup)
        self.warmup_rows = state["warmup_rows"]
        # a warm-up before this key kept a column per name it saw: their names are its columns' (``_keeps``)
        self._warmup_untracked = set(np.asarray(state.get("warmup_untracked", ()), dtype=np.uint64).tolist())
        level = state.get("warmup_untracked_level", 0)  # none: every name's hash (level 0)
        if type(level) is not int or not 0 <= level < 64:
            raise ValueError(f"a warm-up's untracked names have the level {level!r}")
        if level and any(at >> (64 - level) for at in self._warmup_untracked):
            raise ValueError("a warm-up's untracked names have a hash above their sample's bound")
        self._untracked_level = level
        self._fit_untracked()  # a state of before the sample kept every hash
        self._warmup_names = None
        c = {**state["columns"]["layout"], **state["columns"]}
        # models often share feature names: one string for all of them
        names = list(map(sys.intern, c["names"]))
        self._layout = None
        self._edges = np.array(c["edges"], dtype=np.float64)  # copies: never a view of the snapshot's bytes
        ref = np.array(c["ref_counts"])
        self._ref_stored = ref.astype(count_dtype(int(ref.max(initial=0)), unsigned=True), copy=False)
        self._restored = {
            "names": names,
            "kinds": c["kinds"],
            "categories": c["categories"],
            "edge_counts": c["edge_counts"],
        }
        self.untracked_columns = state["untracked_columns"]
        self.type_mismatches = dict(state["type_mismatches"])
        self.ring = np.array(state["ring"], dtype=count_dtype(self.slot_size, unsigned=True)).reshape(
            self.subwindows, -1
        )
        self.slot_rows = np.array(state["slot_rows"], dtype=np.int64)
        self.slot_offsets = np.array(state["slot_offsets"], dtype=np.int64).reshape(self.subwindows, 2)
        self.slot_times = np.array(state["slot_times"], dtype=np.float64).reshape(self.subwindows, 2)
        self.slot = state["slot"]
        self.slots_filled = state["slots_filled"]
        self.last_scores = dict(zip(names, map(float, state["last_scores"])))
        self.versions = self._version_tally()
        if "versions" in state:  # snapshots written before windows counted versions have none: counted from here
            self.versions.load_state(state["versions"])
        self._load_scores(state.get("scores"))

    def _load_scores(self, scores: State | None) -> None:
        """Restore ``_scores_state()``. A scored sketch from a snapshot written before issue 23 has none: its
        reference's scores are not known (nor those of a warm-up under way), so its windows explain nothing
        until the reference is learnt again (a rebaseline, or fresh state)."""
        self.warmup_scores, self._ref_scores = None, None
        self.score_ring = np.zeros((self.subwindows, 2), dtype=np.int64)
        self.last_impact, self.last_score_change = {}, None
        if not self.scored or scores is None:
            return
        self.warmup_scores = None if scores["warmup"] is None else list(scores["warmup"])
        ref = scores["reference"]
        if ref is not None:
            self._ref_scores = np.stack([np.array(ref["counts"], np.int64), np.array(ref["sums"], np.int64)])
        self.score_ring = np.array(scores["ring"], dtype=np.int64).reshape(self.subwindows, 2)
        last = np.array(scores["last"], dtype=np.float64).tolist()
        self.last_impact = {name: x for name, x in zip(self.last_scores, last) if x == x}
        self.last_score_change = scores["last_change"]

    def _load_warmup(self, warmup: State) -> dict[str, WarmupColumn]:
        """The warm-up summaries of ``state()`` (``warmup.sketch_state``; or a column state per name, as format
        version 3 and 4 wrote them); or those of the raw rows that snapshots of format version 2 held (lists,
        one value per row), counted now: they are not kept."""
        empty = self._warmup_column()
        if is_sketch_state(warmup):
            return from_sketch_state(warmup, empty.limit, empty.max_kept)
        summaries = [name for name, column in warmup.items() if not isinstance(column, list)]
        out = dict(zip(summaries, from_states([warmup[n] for n in summaries], empty.limit, empty.max_kept)))
        for name, column in warmup.items():
            if isinstance(column, list):
                out[name] = self._warmup_column()
                out[name].add(column)
        return {name: out[name] for name in warmup}  # in the state's order

    def __getattr__(self, name: str) -> Any:
        """A derived attribute (``_DERIVED``) of a restored sketch, made now: only called when ``name`` is
        not set, which after ``load_state`` means "not made yet"."""
        restored = self.__dict__.get("_restored")
        if restored is None or name not in _DERIVED:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        # one kind string for every column
        columns = [
            Column.shared(column, NUMERIC if kind == NUMERIC else CATEGORICAL, categories, n_edges)
            for column, kind, categories, n_edges in zip(
                restored["names"], restored["kinds"], restored["categories"], restored["edge_counts"]
            )
        ]
        layout, stored = self._layout, self._ref_stored
        self._set_columns(columns, self._edges, stored)
        self._layout, self._ref_stored = layout, stored  # the same values: kept, not made again
        return getattr(self, name)


# a warm-up column state's arrays (``buckets``: format version 3), and a sketch's (``anchors``, ``distinct_*``: 6)
_WARMUP_ARRAYS = ("steps", "buckets", "counts", "anchors", "distinct_first", "distinct_steps", "distinct_counts")


def _arrays_kept(warmup: State) -> bool:
    """Whether a warm-up's state holds its numbers as arrays (a decoded snapshot's), not lists."""
    parts = [warmup] if is_sketch_state(warmup) else list(warmup.values())
    arrays = []
    for part in parts:
        if type(part) is not dict:
            return False
        arrays += [part.get(key) for key in _WARMUP_ARRAYS]
        scores = part.get("scores")
        if scores is not None:
            arrays += list(scores.values())
    return all(array is None or type(array) is np.ndarray for array in arrays)


def _copied(warmup: State) -> State:
    """A warm-up's state (``warmup.sketch_state``, or a column state per name) with its own arrays, never
    views of the snapshot's bytes: a model restored from a local cache file would otherwise hold all of
    the file in memory until its first event. Its other values are shared: nothing changes them in place
    (``WarmupColumn.from_state`` copies what it keeps, and a state is only ever encoded)."""
    if is_sketch_state(warmup):
        return _arrays_copied(warmup)
    return {name: _arrays_copied(column) for name, column in warmup.items()}


def _arrays_copied(part: State) -> State:
    part = part.copy()
    for key in _WARMUP_ARRAYS:
        if key in part:
            part[key] = np.array(part[key])
    scores = part.get("scores")
    if scores is not None:  # scored (or None) and sums; since version 7 row_sums and row_at too
        part["scores"] = {key: None if array is None else np.array(array) for key, array in scores.items()}
    return part


# what StreamSketch._set_columns derives from the columns: not state, made again on load (when first used)
_DERIVED = frozenset(
    (
        "columns",
        "_shape",
        "_sizes",
        "_starts",
        "_ordered",
        "_value_mask",
        "_below_at",
        "_above_at",
        "_numeric",
        "_missing_bin",
        "_names",
        "_ref",
        "_ref_n",
        "_ref_folded",
        "_thresholds",
    )
)


def _has_value(values: FeatureColumn) -> bool:
    """Whether a column holds a value (None and NaN are missing, as ``WarmupColumn.add`` counts them)."""
    # row by row, an array's too, up to the first value (usually the first row): numpy's isnan and all cost
    # three times as much for the few rows of a new model's first batch, which asks it of every column (issue 19)
    rows = values.tolist() if isinstance(values, np.ndarray) else values
    return any(v is not None and v == v for v in rows)


# the hashes of names a warm-up keeps no column of, at most (``StreamSketch._count_untracked``): about 300 KB
UNTRACKED_SAMPLE = 4096


def _name_hash(name: str) -> int:
    """A name's 64-bit hash, the same in every process (``hash()`` is salted): two of n names share one with
    a probability of about n * n / 2**65 (3e-10 at 100,000 names)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
