"""What a sketch keeps of a column during its warm-up: counts, never the rows.

A model's reference is fitted from its first ``reference_size`` rows. Holding
those rows would put users' raw values at rest in every snapshot taken during a
warm-up (issue 17). A ``WarmupColumn`` holds instead:

- numbers as a histogram of log-spaced buckets of their distance to an
  ``anchor`` (as DDSketch does, relative width ``2 * ACCURACY``, about 1 %):
  bucket ``k`` holds the ``x`` with ``lower(k) <= x - anchor < lower(k + 1)``,
  above and below the anchor mirrored around a zero bucket
  ``[-SMALLEST, SMALLEST)``. The anchor is the first number's bucket boundary
  (within 1 % of it, no more than the histogram tells): buckets around zero
  alone would put a column of values near 1000 that vary by 1 in one or two
  buckets of width 10, and its reference in two bins. (A first number far
  from all the others, an outlier, makes the buckets coarse around them the
  same way: the anchor cannot wait for more numbers, which would have to be
  kept until then.) Only the buckets that
  hold values are kept (sorted keys and counts), so a column costs at most 8
  bytes per row, whatever its values;
- the distinct numbers and their counts, exactly, while there are at most
  ``limit`` of them (a 0/1 label, a small count): such a column's bin edges
  are those values, as before; one more distinct number and the table is
  dropped for good;
- the other values (strings, booleans) as counts per category, for the first
  ``max_kept`` distinct categories in row order; later new ones are counted
  together as ``other``. Categories are what the decoder passes on (longer
  strings, or all of them with ``hash_categories``, as hashes).

Everything depends on the rows and their order only, never on how they were
cut into batches. ``sketch.Column.from_summary`` fits a reference from it:
bin edges are bucket boundaries, so every bucket falls in one bin and the
reference counts are exactly those of binning the warm-up rows themselves.

Examples
--------
>>> column = WarmupColumn(limit=3, max_kept=10)
>>> column.add([1.0, 2.5, None, 2.5, 3, "x"])
>>> column.numbers, column.distinct, column.categories
(4, {'1.0': 1, '2.5': 2, '3': 1}, {'x': 1})
>>> column.add([1000.0]); column.distinct is None
True
>>> column.anchor  # the first number 1.0 is a bucket boundary
1.0
>>> keys, counts = column.histogram()
>>> [(round(float(column.anchor + lower(k)), 3), int(c)) for k, c in zip(keys, counts)]
[(1.0, 1), (2.492, 2), (2.994, 1), (993.332, 1)]
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.protocols import State

ACCURACY = 0.005  # relative accuracy of a bucket's middle (DDSketch's alpha)
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
SMALLEST_EXPONENT = math.floor(math.log(1e-30) / _LOG_GAMMA)  # |x| below GAMMA ** this: the zero bucket
SMALLEST = GAMMA**SMALLEST_EXPONENT
_LARGEST = 1e300  # larger magnitudes (the decoder bounds them far lower) share the outermost buckets
_COMPACT_AT = 1024  # numbers held (in memory, never in a snapshot) before they are counted into buckets
_NUMBERS = (int, float)
_NUMBER_TYPES = frozenset((int, float, type(None)))


def lower(keys: NDArray[np.int64] | int) -> NDArray[np.float64]:
    """The lower boundary of buckets ``keys`` (the upper boundary of ``k`` is ``lower(k + 1)``)."""
    k = np.asarray(keys, dtype=np.int64)
    exponent = np.where(k > 0, k - 1 + SMALLEST_EXPONENT, np.where(k < 0, -k + SMALLEST_EXPONENT, SMALLEST_EXPONENT))
    magnitude = np.power(GAMMA, exponent.astype(np.float64))
    return np.where(k > 0, magnitude, -magnitude)


def bucket_keys(x: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each finite value's bucket: the ``k`` with ``lower(k) <= x < lower(k + 1)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log(np.clip(np.abs(x), SMALLEST, _LARGEST))
    log *= 1 / _LOG_GAMMA
    keys = np.where(x >= 0, np.floor(log) + (1 - SMALLEST_EXPONENT), SMALLEST_EXPONENT - np.ceil(log))
    keys[np.abs(x) < SMALLEST] = 0
    out: NDArray[np.int64] = keys.astype(np.int64)
    # the logarithm may be a last bit off near a boundary: there, the boundaries themselves decide
    near = np.flatnonzero(np.abs(log - np.rint(log)) < 1e-6)
    if len(near):
        at, k = x[near], out[near]
        k -= at < lower(k)
        k += at >= lower(k + 1)
        out[near] = k
    return out


class WarmupColumn:
    """One column's warm-up summary (see the module's docstring).

    Parameters
    ----------
    limit
        Distinct numbers counted exactly; one more and they no longer are.
    max_kept
        Distinct categories counted; later new ones count as ``other``.
    """

    __slots__ = (
        "limit",
        "max_kept",
        "numbers",
        "anchor",
        "keys",
        "counts",
        "_pending",
        "distinct",
        "categories",
        "other",
    )

    def __init__(self, limit: int, max_kept: int):
        self.limit = limit
        self.max_kept = max_kept
        self.numbers = 0  # present numbers
        self.anchor = 0.0  # buckets are of x - anchor (set by the first number)
        self.keys: NDArray[np.int64] = np.zeros(0, np.int64)  # the histogram: sorted bucket keys ...
        self.counts: NDArray[np.int64] = np.zeros(0, np.int64)  # ... and their counts
        # numbers not counted into buckets yet (the Python objects of the batch, 8 bytes each): bucketing costs
        # a dozen numpy calls, so it is done a thousand numbers at a time; state() buckets them first, so a
        # snapshot never holds them
        self._pending: list[Any] = []
        self.distinct: dict[str, int] | None = {}  # str(number) -> count, while few; None: too many
        self.categories: dict[str, int] = {}  # str(value) -> count of the first max_kept categories
        self.other = 0  # values of categories past max_kept

    @property
    def categorical(self) -> bool:
        """Whether the column holds other values than numbers, or nothing but missing values."""
        return bool(self.categories) or self.other > 0 or self.numbers == 0

    @property
    def present(self) -> int:
        """Values counted, numbers or not (the rest of the warm-up's rows had none)."""
        return self.numbers + sum(self.categories.values()) + self.other

    def add(self, values: list[Any] | NDArray[np.float64], numbers_only: bool = False) -> None:
        """Count ``values`` (None, or NaN in an array, where missing). ``numbers_only``: a list known
        to hold only numbers and None (an array always does)."""
        # plain Python, no numpy call: a model's batches are a few rows each (a handful of numpy calls per
        # column would cost more than the rows)
        if isinstance(values, np.ndarray):
            numbers = [v for v in values.tolist() if v == v]  # NaN is not equal to itself: missing
        elif numbers_only or set(map(type, values)) <= _NUMBER_TYPES:
            numbers = [v for v in values if v is not None]
        else:
            self._add_categories([v for v in values if v is not None and type(v) not in _NUMBERS])
            numbers = [v for v in values if type(v) in _NUMBERS]
        if not numbers:
            return
        if not self.numbers:
            self.anchor = float(lower(bucket_keys(np.array(numbers[:1], dtype=np.float64)))[0])
        self.numbers += len(numbers)
        if self.distinct is not None:
            self._add_distinct(numbers)
        self._pending += numbers
        if len(self._pending) >= _COMPACT_AT:
            self._compact()

    def _add_distinct(self, numbers: list[Any]) -> None:
        """By their text, as categories are counted: an int 3 is "3", a float 3.0 is "3.0"."""
        assert self.distinct is not None
        distinct = self.distinct
        for value, n in Counter(map(str, numbers)).items():
            distinct[value] = distinct.get(value, 0) + n
        if len(distinct) > self.limit:
            self.distinct = None

    def _add_categories(self, values: list[Any]) -> None:
        kept = self.categories
        for value, n in Counter(v if type(v) is str else str(v) for v in values).items():  # in order of first row
            if value in kept:
                kept[value] += n
            elif len(kept) < self.max_kept:
                kept[value] = n
            else:
                self.other += n

    def _compact(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self.keys, bucket_keys(np.array(self._pending, dtype=np.float64) - self.anchor)])
        counts = np.concatenate([self.counts, np.ones(len(self._pending), np.int64)])
        self.keys, at = np.unique(keys, return_inverse=True)
        self.counts = np.bincount(at.ravel(), weights=counts, minlength=len(self.keys)).astype(np.int64)
        self._pending = []

    def histogram(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The numbers' buckets: sorted keys and their counts (bucket ``k``: from ``anchor + lower(k)``)."""
        self._compact()
        return self.keys, self.counts

    def state(self) -> State:
        keys, counts = self.histogram()
        return {
            "numbers": self.numbers,
            "anchor": self.anchor,
            "buckets": keys.astype(np.int32),  # |key| < 80,000
            "counts": counts.astype(np.uint32),
            "distinct": None if self.distinct is None else dict(self.distinct),
            "categories": dict(self.categories),
            "other": self.other,
        }

    @classmethod
    def from_state(cls, state: State, limit: int, max_kept: int) -> WarmupColumn:
        column = cls(limit, max_kept)
        column.numbers = state["numbers"]
        column.anchor = float(state["anchor"])
        column.keys = np.array(state["buckets"], dtype=np.int64)
        column.counts = np.array(state["counts"], dtype=np.int64)
        column.distinct = None if state["distinct"] is None else dict(state["distinct"])
        column.categories = dict(state["categories"])
        column.other = state["other"]
        return column
