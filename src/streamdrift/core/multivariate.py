"""Joint drift of a model's numeric features: each pair's correlation against the reference.

A change in how two inputs move together (their correlation flips, say) leaves
every feature's own distribution as it was, so no marginal test sees it. A
``CorrelationDrift`` watches the correlation of every pair of up to
``max_features`` numeric features, over the same sliding window of sub-windows
as the sketches, against the correlations of the model's first
``reference_size`` rows.

Exact sums. A window's or the reference's state is its co-moments: the number
of rows, the sum of each feature's code and the sum of each pair's product of
codes (diagonal included). Codes are integers, so these sums are exact in any
order and whatever the batches: the state is the same bytes however the rows
were cut. A value's code is its distance to the feature's centre in units of a
power of two, ``rint((x - centre) / 2**exponent)``, clipped to 4 spreads on
either side (a winsorisation: one outlier cannot make a correlation).

Where centre and unit come from. The warm-up keeps no rows, and codes need a
scale before the first sum. So the first quarter of the warm-up's rows
(``scale_rows``) is only counted, as the sketches' warm-up counts
(``warmup.WarmupColumn``: buckets about 1 % wide, no rows). Those counts are
the features' sketch's own warm-up columns where the sketch is in its warm-up
at the same row (``update``'s ``features``: a model's usual start), so every
numeric feature is not counted twice (a fifth of a warm-up snapshot's bytes);
otherwise (a reference profile, or multivariate turned on for a model past its
warm-up) the detector counts them itself. When they are
complete the detector picks its features (numbers only, present in at least
95 % of those rows, not constant; the first ``max_features`` by name), and
each one's centre (the median's bucket boundary) and unit (the power of two
at most a 64th of the inter-quartile range, or of the range where that is
0). The rest of the warm-up sums the reference's co-moments. A row that lacks
one of the features (or holds something else than a number there) is left
out of the sums and counted in ``skipped``.

Overflow. ``|code| <= 4 * 128 = 2**9``, so a product is at most ``2**18``:
a sub-window's sums fit int32 up to 8,191 rows (``int64`` beyond, see
``sum_dtype``), and the reference's int64 sums hold ``2**45`` rows, more than
any reference (``config.MAX_ROWS``, which the settings check). A 64th of the
spread is fine enough: rounding adds a variance of ``unit**2 / 12``, under
0.01 % of a normal feature's.

The test. At each sub-window close with a full window, every pair's
correlation in the window (pooled within its sub-windows: a shift of means
between sub-windows, which the marginal tests report, makes no correlation)
and in the reference, Fisher's z of each, and the difference of the two in
standard errors, ``(atanh r_w - atanh r_ref) / sqrt(1 / (n_w - 3) + 1 /
(n_ref - 3))`` (``n_w - 1``: the window's rows less one per sub-window), with
its two-sided normal p-value. The monitor compares the smallest p-value with
its share of the false-alarm budget (Bonferroni over the pairs and the
repeated tests, as the sketches' tests).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(5)
>>> detector = CorrelationDrift(reference_size=800, window_size=400, subwindows=4, max_features=3)
>>> def feed(rho, n, start):
...     z = rng.standard_normal((n, 3))
...     z[:, 1] = rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]
...     columns = {"a": z[:, 0], "b": z[:, 1], "c": z[:, 2].tolist()}
...     return detector.update(columns, np.arange(start, start + n), np.zeros(n))
>>> feed(0.6, 800, 0), detector.names  # the warm-up: 200 scale rows, then the reference
([], ['a', 'b', 'c'])
>>> stationary = feed(0.6, 400, 800)[-1]  # a window's test of pairs (a, b), (a, c), (b, c)
>>> [round(float(r), 2) for r in stationary.reference], [round(float(r), 2) for r in stationary.window]
([0.64, -0.04, -0.01], [0.58, 0.02, 0.06])
>>> flipped = feed(-0.6, 400, 1200)[-1]
>>> flipped.pair_names(int(np.argmin(flipped.p_value))), [round(float(z), 1) for z in flipped.z]
(('a', 'b'), [-22.7, -0.6, 1.7])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from streamdrift.core.buckets import lower
from streamdrift.core.protocols import State
from streamdrift.core.records import FeatureColumn
from streamdrift.core.warmup import WarmupColumn
from streamdrift.core.warmup import states as warmup_states

UNIT_STEPS = 6  # a unit is at most spread / 2**6: codes resolve a 64th of the spread
MAX_PRODUCT = 2**18  # (CLIP_SPREADS * 2**(UNIT_STEPS + 1)) ** 2: the largest product of two codes
CLIP_SPREADS = 4  # codes are clipped to this many spreads either side of the centre
_COUNT_AT = 1024  # scale rows whose numbers wait in memory before they are counted
MIN_PRESENT = 0.95  # a feature is watched if present (a number) in at least this share of the scale rows
_NUMBER_TYPES = frozenset((int, float, type(None)))


class WindowScore(NamedTuple):
    """A window's test of every pair against the reference: pair ``k`` is features ``first[k]`` and
    ``second[k]`` (indices into ``names``)."""

    position: int  # rows seen when the window closed
    names: list[str]
    first: NDArray[np.intp]
    second: NDArray[np.intp]
    reference: NDArray[np.float64]  # each pair's correlation in the reference
    window: NDArray[np.float64]  # ... and in the window
    z: NDArray[np.float64]  # the difference of their Fisher z, in standard errors
    p_value: NDArray[np.float64]  # two-sided
    rows: int  # complete rows in the window (those that had every feature)
    reference_rows: int
    span: dict[str, Any]  # the window's start/end time and offset and its row count, as the sketches give it

    def pair_names(self, k: int) -> tuple[str, str]:
        return self.names[int(self.first[k])], self.names[int(self.second[k])]


@functools.cache
def _layout(k: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Where each product sum sits: the upper triangle of the K x K co-moments, diagonal included (made
    once per K: it costs as much as a small batch's sums)."""
    rows, cols = np.triu_indices(k)
    rows.flags.writeable = cols.flags.writeable = False
    return rows.astype(np.intp, copy=False), cols.astype(np.intp, copy=False)


def co_moments(codes: NDArray[np.int64]) -> NDArray[np.int64]:
    """The sums of rows of ``codes`` (one column per feature): ``[n, sum of each code, sum of each pair's
    product (upper triangle, diagonal included)]``. Integers: the same whatever the order of the rows.

    >>> co_moments(np.array([[1, 2], [3, -1]])).tolist()
    [2, 4, 1, 10, -1, 5]
    """
    k = codes.shape[1]
    rows, cols = _layout(k)
    largest = int(np.abs(codes).max(initial=0))
    if len(codes) * largest**2 < 2**53:
        # in floats (BLAS, ten times numpy's integer matmul): every product and partial sum is an integer under
        # 2**53, so exact in any order; a sub-window of codes under 2**9 is far inside that
        x = codes.astype(np.float64)
        products = (x.T @ x)[rows, cols].astype(np.int64)
    else:
        products = (codes.T @ codes)[rows, cols]
    return np.concatenate(([len(codes)], codes.sum(axis=0), products)).astype(np.int64)


@functools.cache
def _pairs(k: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The pairs of ``k`` features: the upper triangle without the diagonal (made once per K)."""
    first, second = np.triu_indices(k, 1)
    first.flags.writeable = second.flags.writeable = False
    return first.astype(np.intp, copy=False), second.astype(np.intp, copy=False)


def correlations(blocks: NDArray[np.int64], k: int) -> tuple[NDArray[np.float64], int]:
    """Each pair's correlation (in ``np.triu_indices(k, 1)`` order) pooled within blocks (rows of
    ``co_moments`` sums: the sub-windows of a window, or the reference alone), and its degrees of freedom
    (rows less one per block with rows); 0 for a pair whose feature did not vary.

    Pooled within sub-windows, each centred on its own means: a shift of the features' means from one
    sub-window to the next (data drift, which the marginal tests see) makes no correlation of its own;
    across a whole window, two features that shift together at one row would look correlated while the
    window holds rows from both sides.
    """
    blocks = np.atleast_2d(blocks)
    if not np.logical_and.reduce(blocks[:, 0] > 0):
        blocks = blocks[blocks[:, 0] > 0]
    dof = int(np.add.reduce(blocks[:, 0])) - len(blocks)
    if dof < 1:
        return np.zeros(k * (k - 1) // 2), max(dof, 0)
    rows, cols = _layout(k)
    diagonal, pairs = _positions(k)
    f = blocks.astype(np.float64)
    sums = f[:, 1 : 1 + k]
    # centred products per block, S_ij - S_i S_j / n, summed over the blocks (upper triangle, diagonal included)
    centred = np.add.reduce(f[:, 1 + k :], axis=0) - np.add.reduce(sums[:, rows] * sums[:, cols] / f[:, :1], axis=0)
    var = np.maximum(centred[diagonal], 0.0)
    first, second = _pairs(k)
    scale = np.sqrt(var[first] * var[second])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(scale > 0, centred[pairs] / scale, 0.0)
    return np.clip(r, -1.0, 1.0), dof


@functools.cache
def _positions(k: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Where in ``_layout(k)``'s order each feature's own product sum is, and each pair's (``_pairs`` order)."""
    rows, cols = _layout(k)
    at = {(int(i), int(j)): n for n, (i, j) in enumerate(zip(rows, cols))}
    first, second = _pairs(k)
    diagonal = np.array([at[i, i] for i in range(k)], np.intp)
    pairs = np.array([at[int(i), int(j)] for i, j in zip(first, second)], np.intp)
    diagonal.flags.writeable = pairs.flags.writeable = False
    return diagonal, pairs


def fisher_test(
    window: NDArray[np.float64], dof_window: int, reference: NDArray[np.float64], dof_reference: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The difference of two independent correlations' Fisher z, in standard errors, and its two-sided
    p-value (1 where either side has 2 degrees of freedom or fewer). A correlation of ``n`` rows has
    ``n - 1`` degrees of freedom and its z a variance of ``1 / (n - 3)``.

    >>> z, p = fisher_test(np.array([-0.5, 0.5]), 999, np.array([0.5, 0.5]), 1499)
    >>> [round(float(v), 1) for v in z], [float(v) for v in p]
    ([-26.9, 0.0], [4.2608425140432406e-159, 1.0])
    """
    if dof_window <= 2 or dof_reference <= 2:
        return np.zeros(len(window)), np.ones(len(window))
    bound = 1 - 1e-12  # a correlation of exactly +-1 has an infinite z
    difference = np.arctanh(np.clip(window, -bound, bound)) - np.arctanh(np.clip(reference, -bound, bound))
    z = difference / math.sqrt(1 / (dof_window - 2) + 1 / (dof_reference - 2))
    return z, 2 * ndtr(-np.abs(z))


def sum_dtype(rows: int) -> np.dtype[np.signedinteger[Any]]:
    """The integer type that holds the co-moment sums of ``rows`` rows: int32 while a sum of products of codes
    fits (a sub-window's, usually: half the memory), else int64.

    >>> sum_dtype(200), sum_dtype(8191), sum_dtype(8192)
    (dtype('int32'), dtype('int32'), dtype('int64'))
    """
    return np.dtype(np.int32) if rows * MAX_PRODUCT < 2**31 else np.dtype(np.int64)


def _is_number_type(kind: type) -> bool:
    """int, float, or a numpy integer or float scalar (a direct caller's list may hold ``x[i]`` of an array);
    bools are not numbers, Python's or numpy's."""
    return kind is int or kind is float or issubclass(kind, (np.integer, np.floating))


def _numbers_or_none(values: list[Any]) -> bool:
    """Whether a list column holds only numbers and None."""
    kinds = set(map(type, values))
    return kinds <= _NUMBER_TYPES or all(kind is type(None) or _is_number_type(kind) for kind in kinds)


def _as_floats(values: FeatureColumn, numbers_only: bool = False) -> NDArray[np.float64]:
    """A feature column as floats, NaN where missing or not a number (bools are not numbers).
    ``numbers_only``: a list known to hold only numbers and None."""
    if isinstance(values, np.ndarray):
        return values
    if numbers_only or _numbers_or_none(values):
        return np.array(values, dtype=np.float64)
    return np.array([v if _is_number_type(type(v)) else None for v in values], dtype=np.float64)


class CorrelationDrift:
    """Each pair's correlation over a sliding window against the reference's (see the module's docstring).

    Parameters
    ----------
    reference_size
        Rows of warm-up: the first quarter sets the features' centres and units, the rest is the reference.
    window_size
        Rows in the window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.
    max_features
        Numeric features watched at most (the first by name): ``max_features * (max_features - 1) / 2`` pairs.
    """

    def __init__(self, reference_size: int, window_size: int, subwindows: int, max_features: int):
        self.reference_size = reference_size
        self.window_size = window_size
        self.subwindows = subwindows
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.origin = 0  # rows before the reference being learnt or learnt: 0, or where a rebaseline began
        self.skipped = 0  # rows past the scale rows that lacked a watched feature: in no sum
        self.scale: dict[str, WarmupColumn] | None = {}  # the scale rows' counts per feature, until chosen
        # whether those counts are the features' sketch's warm-up columns (decided at the first row)
        self.borrowed = False
        self.mixed: set[str] = set()  # features of the scale rows with something else than numbers: left out
        self._pending: dict[str, list[FeatureColumn]] = {}  # numbers of the scale rows not counted yet
        self._pending_rows = 0
        self.names: list[str] = []
        self.centres = np.zeros(0)
        self.exponents = np.zeros(0, np.int64)
        self.clips = np.zeros(0, np.int64)
        self._derive()
        self.reference = np.zeros(1, np.int64)
        self._reference_correlations: tuple[NDArray[np.float64], int] | None = None  # derived, not state
        self.ring = np.zeros((self.subwindows, 1), sum_dtype(self.slot_size))
        # per sub-window: rows, first/last source offset, first/last event time
        self.slot_rows = np.zeros(self.subwindows, np.int64)
        self.slot_offsets = np.zeros((self.subwindows, 2), np.int64)
        self.slot_times = np.zeros((self.subwindows, 2), np.float64)
        self.slot = 0
        self.slots_filled = 0

    @property
    def scale_rows(self) -> int:
        return self.reference_size // 4

    @property
    def slot_size(self) -> int:
        return self.window_size // self.subwindows

    @property
    def pairs(self) -> int:
        k = len(self.names)
        return k * (k - 1) // 2

    @property
    def ready(self) -> bool:
        """Whether the reference is complete (windows are tested from then on, if there are pairs)."""
        return self.rows - self.origin >= self.reference_size

    def rows_to_next_step(self) -> int:
        """Rows until the detector next reports: its reference completes, or a window is tested."""
        if not self.ready:
            return self.reference_size - (self.rows - self.origin)
        closes = max(1, self.subwindows - self.slots_filled)  # sub-windows to fill before a window is tested
        return closes * self.slot_size - int(self.slot_rows[self.slot])

    def rebaseline(self) -> None:
        """Learn everything again from the next ``reference_size`` rows, as from the model's first: the
        features, their centres and units (its first quarter, counted by the detector itself), then the
        reference's co-moments; the window starts again after it. The position (``rows``) and the count
        of rows left out (``skipped``) go on."""
        rows, skipped = self.rows, self.skipped
        self._reset()
        self.rows, self.skipped, self.origin = rows, skipped, rows

    def update(
        self,
        columns: Mapping[str, FeatureColumn],
        offsets: NDArray[np.int64],
        times: NDArray[np.float64],
        numeric: frozenset[str] | None = None,
        features: tuple[Mapping[str, WarmupColumn], int] | None = None,
    ) -> list[WindowScore]:
        """Add rows; return the test of each window completed within them. ``numeric``: names of columns
        known to hold only numbers and None (the decoder checked). ``features``: the features' sketch's
        warm-up columns and rows, before these rows, while it is in its warm-up (the scale rows' counts
        are taken from them if it started with this detector)."""
        n = len(offsets)
        start = 0
        if self.scale is not None:
            if self.rows == 0:  # the first rows: the sketch's warm-up counts them too, or the detector must
                self.borrowed = features is not None and features[1] == 0
            start = min(n, self.scale_rows - (self.rows - self.origin))
            if not self.borrowed:
                self._count_scale(columns, start, numeric or frozenset())
            self.rows += start
            if self.rows - self.origin == self.scale_rows:
                self._choose(self._summaries(columns, start, features) if self.borrowed else None)
        if start == n or not self.pairs:
            self.rows += n - start
            return []
        codes, complete = self._codes(columns, start, n, numeric or frozenset())
        if not self.ready:
            take = min(n - start, self.reference_size - (self.rows - self.origin))
            self.reference += self._sums(codes[:take], complete[:take])
            self.rows += take
            start += take
            codes, complete = codes[take:], complete[take:]
        return self._slide(codes, complete, offsets, times, start)

    def _slide(
        self,
        codes: NDArray[np.int64],
        complete: NDArray[np.bool_],
        offsets: NDArray[np.int64],
        times: NDArray[np.float64],
        start: int,
    ) -> list[WindowScore]:
        """Rows ``start:`` of the batch (``codes`` from there on) into the ring, sub-window by sub-window."""
        scores = []
        first, n = start, len(offsets)
        while start < n:
            slot, filled = self.slot, int(self.slot_rows[self.slot])
            stop = min(n, start + self.slot_size - filled)
            self.ring[slot] += self._sums(codes[start - first : stop - first], complete[start - first : stop - first])
            if not filled:
                self.slot_offsets[slot, 0], self.slot_times[slot, 0] = offsets[start], times[start]
            self.slot_offsets[slot, 1], self.slot_times[slot, 1] = offsets[stop - 1], times[stop - 1]
            self.slot_rows[slot] = filled + stop - start
            self.rows += stop - start
            start = stop
            if self.slot_rows[slot] == self.slot_size:
                self.slots_filled = min(self.slots_filled + 1, self.subwindows)
                if self.slots_filled == self.subwindows:
                    scores.append(self._score())
                self.slot = (slot + 1) % self.subwindows
                self.ring[self.slot] = 0
                self.slot_rows[self.slot] = 0
        return scores

    def _sums(self, codes: NDArray[np.int64], complete: NDArray[np.bool_]) -> NDArray[np.int64]:
        whole = codes[complete]
        self.skipped += len(codes) - len(whole)
        return co_moments(whole)

    def _count_scale(self, columns: Mapping[str, FeatureColumn], take: int, numeric: frozenset[str]) -> None:
        """Note the first ``take`` rows for the scale rows' summaries (rows of a feature's batches before it
        first appears count as missing: only its present share matters). A feature with something else than
        numbers is left out for good (``mixed``). The numbers wait in memory (``_pending``, never in a
        snapshot) and are counted a thousand rows at a time: counting costs a few calls per feature, which
        would be most of a small batch's cost (a fleet of models in their warm-up gets batches of a row or two)."""
        assert self.scale is not None
        if not take:
            return
        mixed = self.mixed
        for name, values in columns.items():
            if name in mixed:
                continue
            part = values[:take]
            if isinstance(part, np.ndarray):
                part = part.copy()  # not a view that would keep the batch's whole block of floats alive
            elif name not in numeric and not _numbers_or_none(part):
                mixed.add(name)
                self._pending.pop(name, None)
                self.scale.pop(name, None)
                continue
            self._pending.setdefault(name, []).append(part)
        self._pending_rows += take
        if self._pending_rows >= _COUNT_AT:
            self._count_pending()

    def _summaries(
        self,
        columns: Mapping[str, FeatureColumn],
        take: int,
        features: tuple[Mapping[str, WarmupColumn], int] | None,
    ) -> dict[str, WarmupColumn]:
        """The scale rows' counts from the features' sketch's warm-up columns, which hold the rows before
        this batch, and the batch's first ``take`` rows (counted into copies: the sketch counts them too)."""
        # both count every row from the model's first, and the sketch's warm-up (reference_size rows) outlasts
        # the scale rows: the sketch is at the same row, or the state is not one this code made
        assert features is not None and features[1] == self.rows - take, "the features' warm-up is not aligned"
        summaries = {name: column.numbers_copy() for name, column in features[0].items()}
        for name, values in columns.items():
            if name not in summaries:
                summaries[name] = WarmupColumn(limit=0, max_kept=0)
            summaries[name].add(values[:take])
        return summaries

    def _count_pending(self) -> None:
        """Count the numbers waiting into the scale rows' summaries, in row order (so the same counts, and
        the same anchor, whenever it happens)."""
        assert self.scale is not None
        for name, parts in self._pending.items():
            column = self.scale.get(name)
            if column is None:
                column = self.scale[name] = WarmupColumn(limit=0, max_kept=0)
            column.add(np.concatenate([np.asarray(part, dtype=np.float64) for part in parts]))
        self._pending, self._pending_rows = {}, 0

    def _choose(self, summaries: Mapping[str, WarmupColumn] | None = None) -> None:
        """The scale rows are complete: pick the features and each one's centre, unit and clip, from
        ``summaries`` (the features' warm-up's) or the detector's own counts. A feature with something
        else than numbers is categorical there (own counts: ``mixed``, left out already)."""
        assert self.scale is not None
        if summaries is None:
            self._count_pending()
            summaries = self.scale
        else:  # noted as own counts note them (part of the state)
            self.mixed = {name for name, summary in summaries.items() if summary.other}
        chosen: list[tuple[str, float, int, int]] = []
        for name in sorted(summaries):
            summary = summaries[name]
            if summary.categorical or summary.numbers < MIN_PRESENT * self.scale_rows:
                continue
            keys, counts = summary.histogram()
            lows = summary.anchor + lower(keys)
            cumulative = np.cumsum(counts)

            def quantile(
                q: float, lows: NDArray[np.float64] = lows, cumulative: NDArray[np.int64] = cumulative
            ) -> float:
                return float(lows[int(np.searchsorted(cumulative, q * cumulative[-1]))])

            spread = quantile(0.75) - quantile(0.25)
            if spread <= 0:
                spread = float(lows[-1] - lows[0])
            if spread <= 0 or not math.isfinite(spread):
                continue  # constant: nothing to correlate
            exponent = math.floor(math.log2(spread)) - UNIT_STEPS
            chosen.append((name, quantile(0.5), exponent, int(CLIP_SPREADS * spread / 2.0**exponent)))
            if len(chosen) == self.max_features:
                break
        self.scale, self.borrowed = None, False
        if len(chosen) < 2:
            return  # no pair: the detector only counts rows
        self.names = [c[0] for c in chosen]
        self.centres = np.array([c[1] for c in chosen], np.float64)
        self.exponents = np.array([c[2] for c in chosen], np.int64)
        self.clips = np.array([c[3] for c in chosen], np.int64)
        self._derive()
        size = 1 + len(chosen) + len(chosen) * (len(chosen) + 1) // 2
        self.reference = np.zeros(size, np.int64)
        self.ring = np.zeros((self.subwindows, size), sum_dtype(self.slot_size))

    def _derive(self) -> None:
        """What coding derives from the features' exponents and clips (not state)."""
        self._scales = np.exp2(-self.exponents.astype(np.float64))
        self._low, self._high = -self.clips.astype(np.float64), self.clips.astype(np.float64)

    def _codes(
        self, columns: Mapping[str, FeatureColumn], start: int, stop: int, numeric: frozenset[str]
    ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """Rows ``start:stop``'s codes (one column per watched feature) and whether each row has them all.
        ``numeric``: features known to hold only numbers and None."""
        missing = np.full(stop - start, np.nan)
        x = np.stack(
            [
                missing if values is None else _as_floats(values[start:stop], name in numeric)
                for name, values in zip(self.names, map(columns.get, self.names))
            ],
            axis=1,
        )
        absent = np.isnan(x)
        complete = ~np.logical_or.reduce(absent, axis=1)
        # (x - centre) * 2**-exponent is exact scaling by a power of two: the same float for the same value
        x -= self.centres
        x *= self._scales
        np.rint(x, out=x)
        np.maximum(x, self._low, out=x)  # the ufuncs, not np.clip's Python layer: a small batch's cost
        np.minimum(x, self._high, out=x)
        np.copyto(x, 0.0, where=absent)
        return x.astype(np.int64), complete

    def _score(self) -> WindowScore:
        k = len(self.names)
        in_window, dof_window = correlations(self.ring, k)
        if self._reference_correlations is None:  # complete, so fixed: once, not at every close
            self._reference_correlations = correlations(self.reference, k)
        in_reference, dof_reference = self._reference_correlations
        z, p_value = fisher_test(in_window, dof_window, in_reference, dof_reference)
        first, second = _pairs(k)
        oldest = (self.slot + 1) % self.subwindows
        span = {
            "start_time": float(self.slot_times[oldest, 0]),
            "end_time": float(self.slot_times[self.slot, 1]),
            "count": int(self.slot_rows.sum()),
            "start_offset": int(self.slot_offsets[oldest, 0]),
            "end_offset": int(self.slot_offsets[self.slot, 1]),
        }
        return WindowScore(
            self.rows,
            list(self.names),
            first,
            second,
            in_reference,
            in_window,
            z,
            p_value,
            int(self.ring[:, 0].sum()),
            int(self.reference[0]),
            span,
        )

    def _counted(self) -> dict[str, WarmupColumn]:
        """The scale rows' summaries with every number counted (a snapshot never holds the numbers)."""
        assert self.scale is not None
        self._count_pending()
        return self.scale

    def state(self) -> State:
        return {
            "rows": self.rows,
            "origin": self.origin,
            "skipped": self.skipped,
            # "features": the counts are the features' sketch's warm-up columns
            "scale": None if self.scale is None else "features" if self.borrowed else warmup_states(self._counted()),
            "mixed": sorted(self.mixed),
            "names": list(self.names),
            "centres": self.centres.copy(),
            "exponents": self.exponents.copy(),
            "clips": self.clips.copy(),
            "reference": self.reference.copy(),
            "ring": self.ring.copy(),
            "slot_rows": self.slot_rows.tolist(),
            "slot_offsets": self.slot_offsets.tolist(),
            "slot_times": self.slot_times.tolist(),
            "slot": self.slot,
            "slots_filled": self.slots_filled,
        }

    def load_state(self, state: State) -> None:
        self.rows = state["rows"]
        self.origin = state.get("origin", 0)  # none in a snapshot from before rebaselines
        self.skipped = state["skipped"]
        scale = state["scale"]
        self.borrowed = scale == "features"
        if scale is None or self.borrowed:
            self.scale = None if scale is None else {}
        else:
            self.scale = {n: WarmupColumn.from_state(c, 0, 0) for n, c in scale.items()}
        self.mixed = set(state["mixed"])
        self._pending, self._pending_rows = {}, 0
        self.names = list(state["names"])
        self.centres = np.array(state["centres"], np.float64)
        self.exponents = np.array(state["exponents"], np.int64)
        self.clips = np.array(state["clips"], np.int64)
        self._derive()
        self.reference = np.array(state["reference"], np.int64)
        self._reference_correlations = None
        self.ring = np.array(state["ring"], sum_dtype(self.slot_size)).reshape(self.subwindows, -1)
        self.slot_rows = np.array(state["slot_rows"], np.int64)
        self.slot_offsets = np.array(state["slot_offsets"], np.int64).reshape(self.subwindows, 2)
        self.slot_times = np.array(state["slot_times"], np.float64).reshape(self.subwindows, 2)
        self.slot = state["slot"]
        self.slots_filled = state["slots_filled"]
