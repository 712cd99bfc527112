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

A column of the features' sketch is *scored* (``scored=True``): it also keeps,
next to each count (bucket, distinct number, category, ``other``), the rows of
it that carried a score and the sum of their scores in fixed point
(``impact.SCALE``), so the reference knows the model's mean score per bin
(``core/impact.py``).

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
>>> from streamdrift.core.buckets import lower
>>> keys, counts = column.histogram()
>>> [(round(float(column.anchor + lower(k)), 3), int(c)) for k, c in zip(keys, counts)]
[(1.0, 1), (2.492, 2), (2.994, 1), (993.332, 1)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.buckets import LARGEST, LOG_GAMMA, SMALLEST_EXPONENT, bucket_keys
from streamdrift.core.buckets_small import bucket_key, lower_of
from streamdrift.core.protocols import State
from streamdrift.core.warmup_tables import MOST_DECIMALS, Key, TableParts, table_parts

try:  # _add_distinct's row loop in C (``_speedups.c``), the same dicts; without it, the loop below
    from streamdrift.core._speedups import count_numbers as _count_numbers
except ImportError:  # not built (setup.py's extension is optional); mypy types the name by the stub
    _count_numbers = None  # type: ignore[assignment]
try:  # what a state writes of a distinct-number table, in C (``_speedups.c``), the same parts (``warmup_tables``)
    from streamdrift.core._speedups import table_parts as _table_parts_c
except ImportError:
    _table_parts_c = None  # type: ignore[assignment]
try:  # compact's counting in C (``_speedups.c``), the same histograms as its numpy calls
    from streamdrift.core._speedups import merge_buckets as _merge_buckets
except ImportError:
    _merge_buckets = None  # type: ignore[assignment]
try:  # add's paths for an array of floats and a list of strings in C, the same lists and dicts (``_speedups.c``)
    from streamdrift.core._speedups import add_categories as _add_categories_c
    from streamdrift.core._speedups import add_floats as _add_floats
except ImportError:
    _add_floats = _add_categories_c = None  # type: ignore[assignment]

_COMPACT_AT = 1024  # numbers held (in memory, never in a snapshot) before they are counted into buckets
_NUMBERS = (int, float)
_NUMBER_TYPES = frozenset((int, float, type(None)))
# a histogram before any bucket, and its scores (read only, shared: a column replaces them, never changes them in
# place; a fleet's new model makes 26 columns, and two arrays each were half of making one)
_NO_KEYS: NDArray[np.int64] = np.zeros(0, np.int64)
_NO_KEYS.flags.writeable = False
_NO_SCORES: NDArray[np.int64] = np.zeros((0, 2), np.int64)
_NO_SCORES.flags.writeable = False


class WarmupColumn:
    """One column's warm-up summary (see the module's docstring).

    Parameters
    ----------
    limit
        Distinct numbers counted exactly; one more and they no longer are.
    max_kept
        Distinct categories counted; later new ones count as ``other``.
    scored
        Whether to keep, with every count, its scored rows and their score sum (``add``'s ``scores``).
    """

    __slots__ = (
        "limit",
        "max_kept",
        "numbers",
        "anchor",
        "keys",
        "counts",
        "_pending",
        "_distinct",
        "categories",
        "other",
        "scored",
        "bucket_scores",
        "_pending_scores",
        "_distinct_scored",
        "_distinct_sums",
        "category_scored",
        "category_sums",
        "other_scored",
        "other_sum",
    )

    def __init__(self, limit: int, max_kept: int, scored: bool = False):
        self.limit = limit
        self.max_kept = max_kept
        self.scored = scored
        self.numbers = 0  # present numbers
        self.anchor = 0.0  # buckets are of x - anchor (set by the first number)
        self.keys: NDArray[np.int64] = _NO_KEYS  # the histogram: sorted bucket keys ...
        self.counts: NDArray[np.int64] = _NO_KEYS  # ... and their counts
        # numbers not counted into buckets yet (the Python objects of the batch, 8 bytes each): bucketing costs
        # a dozen numpy calls, so it is done a thousand numbers at a time; state() buckets them first, so a
        # snapshot never holds them
        self._pending: list[Any] = []
        # the distinct numbers' counts by their keys (``_key``), while few; None: too many (``distinct``: by text)
        self._distinct: dict[Key, int] | None = {}
        self.categories: dict[str, int] = {}  # str(value) -> count of the first max_kept categories
        self.other = 0  # values of categories past max_kept
        # scored columns: [scored rows, fixed-point score sum] with each count above
        self.bucket_scores: NDArray[np.int64] = _NO_SCORES  # one row per bucket
        self._pending_scores: list[int] = []  # one per pending number, UNSCORED where the row had none
        # per distinct number (while ``distinct`` is kept) and per category kept: scored rows, score sums
        self._distinct_scored: dict[Key, int] = {}
        self._distinct_sums: dict[Key, int] = {}
        self.category_scored: dict[str, int] = {}
        self.category_sums: dict[str, int] = {}
        self.other_scored = self.other_sum = 0

    @property
    def distinct(self) -> dict[str, int] | None:
        """The distinct numbers' counts by their text (``str(number)``: 3 and 3.0 two, as categories are told
        apart) while few; None: too many."""
        return None if self._distinct is None else _by_text(self._distinct)

    @distinct.setter
    def distinct(self, by_text: Mapping[str, int] | None) -> None:  # texts as str writes numbers (``_checked_texts``)
        self._distinct = None if by_text is None else _by_key(by_text)

    @property
    def distinct_scored(self) -> dict[str, int]:
        """Per distinct number (by its text, as ``distinct``): its scored rows."""
        return _by_text(self._distinct_scored)

    @distinct_scored.setter
    def distinct_scored(self, by_text: Mapping[str, int]) -> None:
        self._distinct_scored = _by_key(by_text)

    @property
    def distinct_sums(self) -> dict[str, int]:
        """Per distinct number (by its text, as ``distinct``): the fixed-point sum of its rows' scores."""
        return _by_text(self._distinct_sums)

    @distinct_sums.setter
    def distinct_sums(self, by_text: Mapping[str, int]) -> None:
        self._distinct_sums = _by_key(by_text)

    @property
    def categorical(self) -> bool:
        """Whether the column holds other values than numbers, or nothing but missing values."""
        return bool(self.categories) or self.other > 0 or self.numbers == 0

    @property
    def present(self) -> int:
        """Values counted, numbers or not (the rest of the warm-up's rows had none)."""
        return self.numbers + sum(self.categories.values()) + self.other

    @property
    def present_scores(self) -> NDArray[np.int64]:
        """[scored rows, fixed-point score sum] of the values counted (see ``present``)."""
        self._compact()
        out: NDArray[np.int64] = np.add.reduce(self.bucket_scores, axis=0, dtype=np.int64)
        out += (self.other_scored, self.other_sum)
        out += (sum(self.category_scored.values()), sum(self.category_sums.values()))
        return out

    def add(
        self, values: list[Any] | NDArray[np.float64], numbers_only: bool = False, scores: list[int] | None = None
    ) -> None:
        """Count ``values`` (None or NaN where missing). ``numbers_only``: a list known to hold only
        numbers, None and NaN (an array always does). ``scores``: each row's fixed-point score
        (``UNSCORED`` where it has none), for a scored column."""
        if self.scored:
            assert scores is not None  # a scored column is given every row's score
        else:
            scores = None
        # a fleet's model adds a few rows at a time to each of dozens of columns (issue 19): most of the cost is
        # per call, so the usual two kinds of column, an array of floats and a list of strings, have a C path
        # each that takes the batch in one call (``_add_array``; ``_speedups.add_categories`` below hands a list
        # holding anything but str and None back to the plain path), tested equal to the plain one
        # (``tests/unit/test_warmup_c_paths.py``)
        if type(values) is np.ndarray and _add_floats is not None and values.dtype == np.float64:
            self._add_array(values, scores)
            return
        if not numbers_only and _add_categories_c is not None and type(values) is list:
            counted = _add_categories_c(
                values, scores, self.categories, self.category_scored, self.category_sums, self.max_kept
            )
            if counted is not None:  # every value a string or None
                other, other_scored, other_sum = counted
                if other:
                    self.other += other
                    self.other_scored += other_scored
                    self.other_sum += other_sum
                return
        # plain Python, no numpy call: a model's batches are a few rows each (a handful of numpy calls per
        # column would cost more than the rows); the scores of the rows kept, where some are left out.
        # NaN is missing, as the monitoring phase bins it, in a list too (a prediction sketch's score column
        # is a list, NaN where a row has no score): counted as a number it had no bucket a snapshot could
        # keep, so a restart changed the reference. NaN is the one value not equal to itself.
        if isinstance(values, np.ndarray):
            values = values.tolist()
            numbers = [v for v in values if v == v]
            if scores is not None and len(numbers) < len(values):
                scores = [s for v, s in zip(values, scores) if v == v]
        elif numbers_only or set(map(type, values)) <= _NUMBER_TYPES:
            numbers = [v for v in values if v is not None and v == v]
            if scores is not None and len(numbers) < len(values):
                scores = [s for v, s in zip(values, scores) if v is not None and v == v]
        else:
            others = [v for v in values if v is not None and type(v) not in _NUMBERS]
            numbers = [v for v in values if type(v) in _NUMBERS and v == v]
            if scores is None:
                self._add_categories(others)
            else:
                if len(others) < len(values):
                    self._add_categories(
                        others, [s for v, s in zip(values, scores) if v is not None and type(v) not in _NUMBERS]
                    )
                else:  # the usual categorical column: every value a category
                    self._add_categories(others, scores)
                scores = [s for v, s in zip(values, scores) if type(v) in _NUMBERS and v == v] if numbers else []
        if not numbers:
            return
        if not self.numbers:
            self.anchor = lower_of(bucket_key(numbers[0]))
        self.numbers += len(numbers)
        if self._distinct is not None:
            self._add_distinct(numbers, scores)
        self._pending += numbers
        if scores is not None:
            self._pending_scores += scores
        if len(self._pending) >= _COMPACT_AT:
            self._compact()

    def _add_array(self, values: NDArray[np.float64], scores: list[int] | None) -> None:
        """``add`` of an array of floats in C (``_speedups.add_floats``): its numbers appended to those pending
        and counted in the distinct numbers' tables, as the plain path does."""
        distinct = self._distinct
        added, kept = _add_floats(
            values,
            scores,
            distinct,
            self._distinct_scored,
            self._distinct_sums,
            self._pending,
            self._pending_scores,
            self.limit,
        )
        if not added:
            return
        if not self.numbers:
            self.anchor = lower_of(bucket_key(self._pending[0]))
        self.numbers += added
        if not kept:
            self._drop_distinct()
        if len(self._pending) >= _COMPACT_AT:
            self._compact()

    def numbers_copy(self) -> WarmupColumn:
        """A copy of what a summary of the numbers needs (their count, anchor and buckets; every category
        counted as ``other``), without distinct numbers or scores: for ``multivariate``, which picks its
        features from a sketch's warm-up columns and adds rows of its own to a copy."""
        copy = WarmupColumn(limit=0, max_kept=0)
        copy.numbers, copy.anchor, copy.distinct = self.numbers, self.anchor, None
        copy.keys, copy.counts = self.keys, self.counts  # replaced, never changed in place: shared
        copy._pending = list(self._pending)
        copy.other = sum(self.categories.values()) + self.other
        return copy

    def _add_distinct(self, numbers: list[Any], scores: list[int] | None) -> None:
        """Counted by their keys (``_key``): one per text ``str`` writes, an int 3 "3" and a float 3.0 "3.0"."""
        distinct, limit = self._distinct, self.limit
        assert distinct is not None
        if len(numbers) > limit and len(set(numbers)) > limit:
            # more distinct numbers than the table may count, whatever it holds: it is dropped at one of them.
            # (No two numbers of one key are unequal, so the keys are at least as many: 3 and 3.0, 0.0 and
            # -0.0 are one number and two keys.)
            self._drop_distinct()
            return
        # row by row, not a Counter: a fleet's model adds a few numbers at a time, and making a Counter costs
        # more than counting them (issue 19); and a column of many distinct numbers stops at the first too many.
        # The C loop does the same (``tests/unit/test_warmup.py`` compares them): a scored column's three dict
        # updates a number were most of the Python loop's time
        if _count_numbers is not None:
            if not _count_numbers(distinct, self._distinct_scored, self._distinct_sums, numbers, scores, limit):
                self._drop_distinct()
            return
        keys = [str(n) if isinstance(n, float) and n.is_integer() else n for n in numbers]  # _key of each
        if scores is None:
            for key in keys:
                distinct[key] = distinct.get(key, 0) + 1
                if len(distinct) > limit:
                    self._drop_distinct()
                    return
            return
        scored, sums = self._distinct_scored, self._distinct_sums
        for key, score in zip(keys, scores):
            distinct[key] = distinct.get(key, 0) + 1
            if len(distinct) > limit:
                self._drop_distinct()
                return
            if score >= 0:
                scored[key] = scored.get(key, 0) + 1
                sums[key] = sums.get(key, 0) + score

    def _drop_distinct(self) -> None:
        """Too many distinct numbers: they are no longer counted (the histogram counts them all)."""
        self._distinct = None
        self._distinct_scored, self._distinct_sums = {}, {}

    def _add_categories(self, values: list[Any], scores: list[int] | None = None) -> None:
        kept = self.categories
        if scores is None:
            for v in values:  # row by row (see _add_distinct): a category is kept if there is room at its first row
                value = v if type(v) is str else str(v)
                if value in kept:
                    kept[value] += 1
                elif len(kept) < self.max_kept:
                    kept[value] = 1
                else:
                    self.other += 1
            return
        # the same with the rows' scores: a category kept has its own; the others count together, as "other" does
        scored, sums = self.category_scored, self.category_sums
        for v, score in zip(values, scores):
            value = v if type(v) is str else str(v)
            if value in kept:
                kept[value] += 1
            elif len(kept) < self.max_kept:
                kept[value] = 1
            else:
                self.other += 1
                if score >= 0:
                    self.other_scored += 1
                    self.other_sum += score
                continue
            if score >= 0:
                scored[value] = scored.get(value, 0) + 1
                sums[value] = sums.get(value, 0) + score

    def _compact(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self.keys, bucket_keys(np.array(self._pending, dtype=np.float64) - self.anchor)])
        counts = np.concatenate([self.counts, np.ones(len(self._pending), np.int64)])
        self.keys, at = np.unique(keys, return_inverse=True)
        self.counts = np.bincount(at.ravel(), weights=counts, minlength=len(self.keys)).astype(np.int64)
        if self.scored:
            fixed = np.array(self._pending_scores, dtype=np.int64)
            pairs = np.concatenate([self.bucket_scores, np.stack((fixed >= 0, np.maximum(fixed, 0)), axis=1)])
            # float64 weights add integers exactly below 2**53 (a reference's sums are far below)
            self.bucket_scores = np.stack(
                [np.bincount(at.ravel(), weights=pairs[:, j], minlength=len(self.keys)) for j in (0, 1)], axis=1
            ).astype(np.int64)
            self._pending_scores = []
        self._pending = []

    def histogram(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The numbers' buckets: sorted keys and their counts (bucket ``k``: from ``anchor + lower(k)``)."""
        self._compact()
        return self.keys, self.counts

    def state(self) -> State:
        """The summary as plain data (format version 4; a sketch writes its columns together, ``sketch_state``).
        While the distinct numbers are kept, the histogram and its scores are theirs, made again on load
        (``from_state``), so not written: a fleet's model in its warm-up is mostly such columns (issue 16).
        Otherwise the histogram's keys are written as steps from the one before (the first from 0), which
        are small, and every array in the narrowest dtype that holds it: a long warm-up's histograms were
        half their size in zlib's bytes."""
        state = self._plain_state(self.distinct)
        if self._distinct is None:
            keys, counts = self.histogram()
            state["steps"] = narrow_signed(_steps(keys))
            state["counts"] = _narrow(counts)
        if self.scored:
            state["scores"] = self._scores_state()
        return state

    def _plain_state(self, distinct: object) -> State:
        """What ``state()`` writes as JSON values, ``distinct`` the distinct numbers as it writes them (by
        text; ``sketch_state`` writes most tables as integers instead)."""
        return {
            "numbers": self.numbers,
            "anchor": self.anchor,
            "distinct": distinct,
            "categories": dict(self.categories),
            "other": self.other,
        }

    def _scores_state(self) -> State:
        """The scored rows and score sums of ``_score_tables`` in one narrow array each (a warm-up snapshot
        of 10,000 models is mostly skeleton: no names written twice, no key per table); the scored rows left
        out (None) where they are the counts, as when every row had a score."""
        counted: list[int] = []
        scored: list[int] = []
        sums: list[int] = []
        self._score_tables(counted, scored, sums)
        return {"scored": None if scored == counted else _narrow(scored), "sums": _narrow(sums)}

    def _score_tables(self, counted: list[int], scored: list[int], sums: list[int]) -> None:
        """Append the counts, scored rows and score sums of the buckets (only where the histogram is
        written), the distinct numbers (by sorted text), the categories (by sorted name) and ``other``."""
        if self._distinct is None:
            bucket_scored, bucket_sums = self.bucket_scores.T.tolist()
            counted += self.counts.tolist()
            scored += bucket_scored
            sums += bucket_sums
        self._table_entries(counted, scored, sums)

    def _table_entries(
        self, counted: list[int], scored: list[int], sums: list[int], parts: TableParts | None = None
    ) -> None:
        """``_score_tables`` but the buckets: the distinct numbers' entries (while kept), the categories' and
        ``other``'s. ``parts``: the distinct numbers' (``table_parts``), where the caller made them."""
        distinct = self._distinct
        if parts is not None and parts.scored is not None and parts.sums is not None:
            counted += parts.counted
            scored += parts.scored
            sums += parts.sums
        elif distinct is not None:
            by_text = sorted(distinct, key=_text)  # texts are unique
            counted += [distinct[k] for k in by_text]
            scored += [self._distinct_scored.get(k, 0) for k in by_text]
            sums += [self._distinct_sums.get(k, 0) for k in by_text]
        if self.categories:  # (a numeric column has none: no sort, no lists)
            categories = sorted(self.categories)
            counted += [self.categories[c] for c in categories]
            scored += [self.category_scored.get(c, 0) for c in categories]
            sums += [self.category_sums.get(c, 0) for c in categories]
        counted.append(self.other)
        scored.append(self.other_scored)
        sums.append(self.other_sum)

    def _load_scores(self, scores: State, with_buckets: bool) -> None:
        """What ``_scores_state`` kept (the counts already loaded); ``with_buckets``: the buckets' scores
        are in it (else they are made from the distinct numbers')."""
        sums = np.asarray(scores["sums"]).tolist()
        counted = self.counts.tolist() if with_buckets else []
        tables = ((self.distinct or {}, "distinct"), (self.categories, "category"))
        for table, _ in tables:
            counted += [table[k] for k in sorted(table)]
        counted.append(self.other)
        scored = counted if scores["scored"] is None else np.asarray(scores["scored"]).tolist()
        n = len(self.counts) if with_buckets else 0
        if with_buckets:
            self.bucket_scores = np.array([scored[:n], sums[:n]], dtype=np.int64).T.reshape(-1, 2)
        for table, name in tables:
            keys = sorted(table)
            setattr(self, f"{name}_scored", dict(zip(keys, scored[n : n + len(keys)])))
            setattr(self, f"{name}_sums", dict(zip(keys, sums[n : n + len(keys)])))
            n += len(keys)
        self.other_scored, self.other_sum = scored[n], sums[n]

    @classmethod
    def from_state(cls, state: State, limit: int, max_kept: int) -> WarmupColumn:
        """``state()`` restored; scored if it kept scores (a snapshot from before issue 23 did not). Reads
        format version 3 too, whose histogram is always written, its keys as they are (``buckets``)."""
        return from_states([state], limit, max_kept)[0]


def from_states(
    states: Sequence[State], limit: int, max_kept: int, made: frozenset[int] = frozenset()
) -> list[WarmupColumn]:
    """``WarmupColumn.from_state`` of each of ``states``; the histograms that the distinct numbers make
    (``state()`` leaves them out) made together, in one pass of numpy calls (``_bucketed``). The distinct
    numbers' texts are checked (``_checked_texts``), but those of the states at the indices ``made``, which
    ``from_sketch_state`` made itself."""
    columns = []
    derived = []
    for i, state in enumerate(states):
        scores = state.get("scores")
        column = WarmupColumn(limit, max_kept, scored=scores is not None)
        column.numbers = state["numbers"]
        column.anchor = float(state["anchor"])
        distinct = state["distinct"]
        column.distinct = None if distinct is None else dict(distinct) if i in made else _checked_texts(distinct)
        column.categories = dict(state["categories"])
        column.other = state["other"]
        with_buckets = True
        if "buckets" in state:  # format version 3
            column.keys = np.array(state["buckets"], dtype=np.int64)
            column.counts = np.array(state["counts"], dtype=np.int64)
        elif "steps" in state:
            column.keys = np.cumsum(np.asarray(state["steps"]), dtype=np.int64)
            column.counts = np.array(state["counts"], dtype=np.int64)
        else:  # the distinct numbers' histogram, made below
            with_buckets = False
            derived.append(column)
        if scores is not None:
            column._load_scores(scores, with_buckets)
        columns.append(column)
    _bucketed(derived)
    return columns


def _key(number: int | float) -> Key:
    """A distinct number's key: one per text ``str`` writes of it, without writing most (a fleet's models spent a
    fifth of their warm-up writing texts, issue 19). An int is its own key, so is a float not equal to an integer;
    a float equal to one (3.0, 0.0, -0.0) is keyed by its text, which tells it from the int and -0.0 from 0.0.
    No key of one kind equals a key of another, and equal keys have one text (``_text``)."""
    return str(number) if isinstance(number, float) and number.is_integer() else number


def _text(key: Key) -> str:
    return key if type(key) is str else str(key)


def _by_text(table: Mapping[Key, int]) -> dict[str, int]:
    """A table by its keys' texts, in its order."""
    return {_text(key): n for key, n in table.items()}


def _by_key(by_text: Mapping[str, int]) -> dict[Key, int]:
    """A table by its texts (as ``str`` writes numbers: ``_checked_texts``) by their keys, in its order."""
    return {_key(int(text) if text.lstrip("-").isdigit() else float(text)): n for text, n in by_text.items()}


def _checked_texts(distinct: Mapping[str, int]) -> dict[str, int]:
    """A distinct-number table read from a state, each text as ``str`` writes its number (``_add_distinct``):
    another text of a number (``"1.50"``, ``"1_0"``) would be written back as the number's own since version 6
    (``warmup_tables.decimal_table``), so it is refused."""
    for text in distinct:
        try:
            canonical = str(int(text)) if text.lstrip("-").isdigit() else repr(float(text))
        except ValueError:
            canonical = ""
        if canonical != text:  # the text itself left out of the message: it is a user's value
            raise ValueError("a warm-up column's distinct number is not written as str() writes a number")
    return dict(distinct)


def _bucketed(columns: Sequence[WarmupColumn]) -> None:
    """Set each column's histogram (and its buckets' scores) to its distinct numbers': exactly the one
    its rows made, since every number it counted is in the table, and numbers of one text are equal.
    A text is ``str`` of a Python int or float, and ``float`` of it is the float64 that number was bucketed as
    (both round correctly to the nearest: 3 and "3", 2**53 + 1 and "9007199254740993" alike)."""
    if not columns:
        return
    tables = [sorted(column._distinct or {}, key=_text) for column in columns]  # in the order of their texts
    sizes = [len(table) for table in tables]
    values = np.array([float(key) for table in tables for key in table], dtype=np.float64)
    anchors = np.repeat(np.array([column.anchor for column in columns], dtype=np.float64), sizes)
    keys = bucket_keys(values - anchors)
    counts = np.array([(c._distinct or {})[k] for c, table in zip(columns, tables) for k in table], np.int64)
    scored = np.array([c._distinct_scored.get(k, 0) for c, table in zip(columns, tables) for k in table], np.int64)
    sums = np.array([c._distinct_sums.get(k, 0) for c, table in zip(columns, tables) for k in table], np.int64)
    if len(columns) == 1 or (
        len(keys) and not -_OFFSET < np.minimum.reduce(keys) <= np.maximum.reduce(keys) < _OFFSET
    ):  # one column, or a key no finite number has: one column at a time
        ends = np.cumsum(sizes).tolist()
        for column, size, end in zip(columns, sizes, ends):
            _bucketed_one(column, *(a[end - size : end] for a in (keys, counts, scored, sums)))
        return
    index = np.arange(len(columns), dtype=np.int64) * _SPAN + _OFFSET  # each column's part of the number
    merged, at_ = np.unique(np.repeat(index, sizes) + keys, return_inverse=True)
    at_ = at_.ravel()
    summed = [np.bincount(at_, weights=w, minlength=len(merged)).astype(np.int64) for w in (counts, scored, sums)]
    bounds = np.searchsorted(merged, np.append(index - _OFFSET, len(columns) * _SPAN)).tolist()
    for i, column in enumerate(columns):
        lo, hi = bounds[i], bounds[i + 1]
        column.keys = merged[lo:hi] - int(index[i])
        column.counts = summed[0][lo:hi].copy()
        if column.scored:
            column.bucket_scores = np.stack((summed[1][lo:hi], summed[2][lo:hi]), axis=1)


def _bucketed_one(
    column: WarmupColumn,
    keys: NDArray[np.int64],
    counts: NDArray[np.int64],
    scored: NDArray[np.int64],
    sums: NDArray[np.int64],
) -> None:
    column.keys, at = np.unique(keys, return_inverse=True)
    at = at.ravel()
    summed = [np.bincount(at, weights=w, minlength=len(column.keys)).astype(np.int64) for w in (counts, scored, sums)]
    column.counts = summed[0]
    if column.scored:
        column.bucket_scores = np.stack((summed[1], summed[2]), axis=1)


# a column's bucket keys are below this in magnitude (the int32 of ``state``): keys of several columns made one
# number each, column * _SPAN + key + _OFFSET, sort by column, then key
_OFFSET = 1 << 17
_SPAN = 1 << 18


def compact(columns: Sequence[WarmupColumn], in_c: bool = True) -> None:
    """Count the numbers every column of ``columns`` holds into its histogram, as ``histogram()`` does one
    column at a time, in one pass for all of them: one C call where it is built (below), else numpy calls.

    A checkpoint takes every column's histogram; a fleet's model holds a few dozen numbers per column by
    then, and a dozen numpy calls per column was most of the checkpoint's time (issue 19). The histograms
    are those of one column at a time (``tests/unit/test_buckets.py``): in the numpy path the keys of each
    column are made one number with its column's index, so one ``unique`` sorts and counts them column by
    column.

    The numbers' bucket keys are numpy's (``bucket_keys``) either way; their counting into the histograms is
    in C where it is built and ``in_c`` (``_speedups.merge_buckets``, ``_merged_in_c``): at a fleet's final
    checkpoint every float column of a model's features holds its 40-odd numbers, and the numpy calls that
    merge them with the histograms and their scores were half of ``compact`` (issue 19).
    """
    pending = [column for column in columns if column._pending]
    if len(pending) < 2:
        for column in pending:
            column._compact()
        return
    new = [len(column._pending) for column in pending]
    anchors = np.repeat(np.array([column.anchor for column in pending]), new)
    numbers = np.fromiter(itertools.chain.from_iterable(c._pending for c in pending), np.float64, sum(new))
    numbers -= anchors
    if in_c and _merge_buckets is not None:
        _merged_in_c(pending, new, bucket_keys(numbers))
        return
    column_keys = np.concatenate([np.concatenate([c.keys for c in pending]), bucket_keys(numbers)])
    if len(column_keys) and not -_OFFSET < np.minimum.reduce(column_keys) <= np.maximum.reduce(column_keys) < _OFFSET:
        # a key no finite number has (NaN is counted as missing, and the decoder passes no infinity): one at a time
        for column in pending:
            column._compact()
        return
    index = np.arange(len(pending), dtype=np.int64) * _SPAN + _OFFSET  # each column's part of the number
    keys = np.concatenate([np.repeat(index, [len(c.keys) for c in pending]), np.repeat(index, new)])
    keys += column_keys
    counts = np.concatenate([np.concatenate([c.counts for c in pending]), np.ones(len(numbers), np.int64)])
    merged, at = np.unique(keys, return_inverse=True)
    summed = np.bincount(at.ravel(), weights=counts, minlength=len(merged)).astype(np.int64)
    scores = _bucket_scores(pending, at.ravel(), len(merged))
    bounds = np.searchsorted(merged, np.append(index - _OFFSET, len(pending) * _SPAN))
    merged -= np.repeat(index, np.diff(bounds))  # each column's keys its own again
    _set_histograms(pending, bounds.tolist(), merged, summed, scores)


def _merged_in_c(pending: Sequence[WarmupColumn], new: list[int], new_keys: NDArray[np.int64]) -> None:
    """``compact``'s histograms of ``pending`` (``new`` numbers each, their bucket keys ``new_keys``) counted in
    C, each column's sorted with its old buckets (a few dozen rows: no numpy call per column), then set as
    ``compact`` sets them. The old histograms go in concatenated: a buffer costs about a microsecond to
    lend, three per column were as much as the counting."""
    old = [len(column.keys) for column in pending]
    room = len(new_keys) + sum(old)
    keys = np.empty(room, np.int64)
    counts = np.empty(room, np.int64)
    scores = np.empty((room, 2), np.int64)
    if any(old):
        old_keys = np.concatenate([column.keys for column in pending])
        old_counts = np.concatenate([column.counts for column in pending])
        old_scores = np.concatenate(
            [column.bucket_scores if column.scored else np.zeros((n, 2), np.int64) for column, n in zip(pending, old)]
        )
    else:  # a first write: no histogram yet
        old_keys = old_counts = _NO_KEYS
        old_scores = _NO_SCORES
    bounds = _merge_buckets(
        new_keys,
        new,
        [column._pending_scores if column.scored else None for column in pending],
        old_keys,
        old_counts,
        old_scores,
        old,
        keys,
        counts,
        scores,
    )
    _set_histograms(pending, bounds, keys, counts, scores)


def _set_histograms(
    pending: Sequence[WarmupColumn],
    bounds: list[int],
    keys: NDArray[np.int64],
    counts: NDArray[np.int64],
    scores: NDArray[np.int64],
) -> None:
    """Each column of ``pending`` its histogram, rows ``bounds[i]:bounds[i + 1]`` of the arrays of them all, its
    numbers counted. A copy each (a slice costs a fifth of a subtraction), no shared base."""
    for i, column in enumerate(pending):
        lo, hi = bounds[i], bounds[i + 1]
        column.keys = keys[lo:hi].copy()
        column.counts = counts[lo:hi].copy()
        column._pending = []
        if column.scored:
            column.bucket_scores = scores[lo:hi].copy()
            column._pending_scores = []


def _bucket_scores(pending: Sequence[WarmupColumn], at: NDArray[np.intp], buckets: int) -> NDArray[np.int64]:
    """``compact``'s scored rows and score sums per merged bucket, ``at`` each old bucket's and new number's
    (in the same order: every column's old buckets, then every column's new numbers); zeros where no
    column is scored."""
    if not any(column.scored for column in pending):
        return np.zeros((buckets, 2), np.int64)
    old = [c.bucket_scores if c.scored else np.zeros((len(c.keys), 2), np.int64) for c in pending]
    fixed = np.fromiter(
        itertools.chain.from_iterable(c._pending_scores if c.scored else [-1] * len(c._pending) for c in pending),
        np.int64,
        sum(len(c._pending) for c in pending),
    )
    pairs = np.concatenate([*old, np.stack((fixed >= 0, np.maximum(fixed, 0)), axis=1)])
    # float64 weights add integers exactly below 2**53 (a reference's sums are far below)
    return np.stack([np.bincount(at, weights=pairs[:, j], minlength=buckets) for j in (0, 1)], axis=1).astype(np.int64)


def count_pending(columns: Mapping[str, WarmupColumn], at_least: int = 1) -> None:
    """``compact`` of the columns that write a histogram (the others keep their distinct numbers, which make it)
    and keep at least ``at_least`` numbers uncounted."""
    compact([column for column in columns.values() if column._distinct is None and len(column._pending) >= at_least])


def states(columns: Mapping[str, WarmupColumn]) -> dict[str, State]:
    """Each column's ``state()``, their numbers bucketed together first (``compact``)."""
    count_pending(columns)
    return {name: column.state() for name, column in columns.items()}


Parts = Callable[[dict[Key, int], dict[Key, int] | None, dict[Key, int] | None], TableParts]


def _table_parts_in_c(table: dict[Key, int], scored: dict[Key, int] | None, sums: dict[Key, int] | None) -> TableParts:
    """``warmup_tables.table_parts`` in C (``_speedups.table_parts``, a tuple of the same fields)."""
    return TableParts(*_table_parts_c(table, scored, sums))


_TABLE_PARTS: Parts = table_parts if _table_parts_c is None else _table_parts_in_c


def sketch_state(columns: Mapping[str, WarmupColumn], parts_of: Parts = _TABLE_PARTS) -> State:
    """A sketch's warm-up columns as one state (format version 6): each column's plain values under its name
    in ``columns``, and the arrays of all of them, in the order of their names, one array each: the
    histograms' keys as ``steps`` and their ``counts`` (of the columns that write one, ``buckets`` of them
    each), and the score arrays of ``WarmupColumn.state``, ``scored`` left out (None) where it is the counts
    in every column. A fleet's model in its warm-up writes two dozen columns per sketch at each checkpoint,
    and an array costs its place in the skeleton and numpy calls each way (``from_sketch_state`` reads it).
    The columns' numbers are bucketed together first (``compact``). Columns some scored and some not, which
    no sketch makes, are written as ``states()`` writes them (format version 4).

    Since version 6 (issue 16) two of a column's plain values are written as integers in arrays too, where
    that gives them back exactly: its ``anchor``, a bucket boundary, as that bucket's key in ``anchors``
    (one per column; the anchor itself where it is none); and its distinct numbers, whose texts as JSON
    keys were most of a short warm-up's bytes, as ``warmup_tables.decimal_table`` makes them (``distinct``
    their number, ``decimals`` the scale, None for ints), in ``distinct_first``, ``distinct_steps`` and
    ``distinct_counts``, the others by text as version 5 wrote them.

    ``parts_of``: what makes a distinct-number table's parts (``warmup_tables.table_parts``, or its C twin
    ``_speedups.table_parts`` where it is built)."""
    if len({column.scored for column in columns.values()}) > 1:
        return states(columns)
    count_pending(columns)
    written: dict[str, State] = {}
    anchors: list[int] = []
    histograms: list[WarmupColumn] = []  # the columns that write one, in order
    # the tables written as integers, in order: the smallest of each, the steps from one to the next, the counts
    first: list[int] = []
    steps: list[int] = []
    counts_by_number: list[int] = []
    # the score arrays' entries, column after column (``_score_tables``' order): the buckets' come from the
    # histograms' arrays (``_sketch_entries``), the others' (``_table_entries``) are gathered here with their places
    entries = _Entries()
    for name in sorted(columns):
        column = columns[name]
        table = column._distinct
        parts = None
        if table:
            scored = column.scored
            parts = parts_of(
                table, column._distinct_scored if scored else None, column._distinct_sums if scored else None
            )
        written[name] = plain = column._plain_state(_written_table(table, parts))
        if parts is not None and parts.decimals is not None:
            plain["decimals"] = None if parts.decimals < 0 else parts.decimals
            first.append(parts.first)
            steps += parts.steps
            counts_by_number += parts.counts_by_number
        key = _anchor_key(column)
        anchors.append(0 if key is None else key)
        if key is not None or (column.numbers == 0 and column.anchor == 0.0):
            del plain["anchor"]  # made again from its key (or the fresh column's 0.0) on load
        if table is None:
            plain["buckets"] = len(column.keys)
            histograms.append(column)
            if column.scored:
                entries.buckets(len(column.keys))
        if column.scored:
            entries.tables(column, parts)
    state: State = {"columns": written}
    if anchors:
        state["anchors"] = narrow_signed(anchors)
    if first:
        state["distinct_first"] = narrow_signed(first)
        state["distinct_steps"] = _narrow(steps)
        state["distinct_counts"] = _narrow(counts_by_number)
    counts = None
    if histograms:
        keys = np.concatenate([column.keys for column in histograms])
        counts = np.concatenate([column.counts for column in histograms])
        state["steps"] = narrow_signed(_sketch_steps(keys, [len(column.keys) for column in histograms]))
        state["counts"] = _narrow(counts)
    if any(column.scored for column in columns.values()):
        state["scores"] = _sketch_scores(*entries.arrays(histograms, counts))
    return state


def _sketch_steps(keys: NDArray[np.int64], sizes: list[int]) -> NDArray[np.int64]:
    """``_steps`` of each column's keys, concatenated (``keys``, ``sizes`` of them each), in one pass: a step from
    the key before, the first of each column from 0."""
    steps = keys.copy()
    steps[1:] -= keys[:-1]
    firsts = list(itertools.accumulate(sizes[:-1], initial=0))
    starts = [first for first, size in zip(firsts, sizes) if size]
    steps[starts] = keys[starts]
    return steps


class _Entries:
    """A scored sketch's score entries (``_sketch_scores``' ``counted``, ``scored`` and ``sums``) in
    ``WarmupColumn._score_tables``' order, column after column, made without a Python list of every bucket's:
    a short warm-up's numeric columns write a histogram of a bucket or two per row, and their ``tolist``
    per column was a third of a warm-up sketch's state (issue 19). The tables' entries (distinct numbers,
    categories, ``other``) are gathered with their places, the buckets' places are noted, and ``arrays``
    puts both in three arrays."""

    def __init__(self) -> None:
        self.size = 0  # entries so far
        self.bucket_at: list[int] = []  # each histogram's first entry
        self.bucket_sizes: list[int] = []
        self.at: list[int] = []  # each table entry's place
        self.counted: list[int] = []
        self.scored: list[int] = []
        self.sums: list[int] = []

    def buckets(self, n: int) -> None:
        self.bucket_at.append(self.size)
        self.bucket_sizes.append(n)
        self.size += n

    def tables(self, column: WarmupColumn, parts: TableParts | None) -> None:
        before = len(self.counted)
        column._table_entries(self.counted, self.scored, self.sums, parts)
        added = len(self.counted) - before
        self.at += range(self.size, self.size + added)
        self.size += added

    def arrays(
        self, histograms: list[WarmupColumn], counts: NDArray[np.int64] | None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """``counted``, ``scored`` and ``sums``; ``histograms`` the scored columns whose buckets were noted,
        ``counts`` their counts concatenated."""
        counted = np.empty(self.size, np.int64)
        scored = np.empty(self.size, np.int64)
        sums = np.empty(self.size, np.int64)
        if self.bucket_sizes and counts is not None:
            places = np.arange(len(counts), dtype=np.int64)
            places += np.repeat(
                np.array(self.bucket_at, np.int64) - np.cumsum([0, *self.bucket_sizes[:-1]]), self.bucket_sizes
            )
            pairs = np.concatenate([column.bucket_scores for column in histograms])
            counted[places] = counts
            scored[places] = pairs[:, 0]
            sums[places] = pairs[:, 1]
        at = np.array(self.at, np.intp)
        counted[at] = self.counted
        scored[at] = self.scored
        sums[at] = self.sums
        return counted, scored, sums


def _sketch_scores(
    counted: list[int] | NDArray[np.int64], scored: list[int] | NDArray[np.int64], sums: list[int] | NDArray[np.int64]
) -> State:
    """The score arrays of a sketch's columns (``WarmupColumn._score_tables``' lists, column after column), with
    ``scored`` left out (None) where it is ``counted``. Since version 7 the sum of an entry counted once (a
    bucket, distinct number or category of one row) is written as its place in ``row_sums``, the distinct
    sums of such entries sorted (``row_at``), and only the others' in ``sums``: in a short warm-up each entry
    of a numeric column is one row, whose score is in every column's sums, and a place among a few dozen
    costs zlib half a score's bytes."""
    counts = np.array(counted, dtype=np.int64)
    single = counts == 1
    totals = np.array(sums, dtype=np.int64)
    row_sums, row_at = np.unique(totals[single], return_inverse=True)
    return {
        "scored": None if np.array_equal(scored, counts) else _narrow(scored),
        "sums": _narrow(totals[~single]),
        "row_sums": _narrow(row_sums),
        "row_at": _narrow(row_at.ravel()),
    }


def _sums_of(scores: State, counted: list[int]) -> NDArray[np.int64]:
    """Every entry's score sum, in ``counted``'s order, from ``_sketch_scores``' arrays (or version 5's and 6's
    ``sums`` of every entry)."""
    if "row_at" not in scores:
        sums: NDArray[np.int64] = np.asarray(scores["sums"], dtype=np.int64)
        if len(sums) != len(counted):
            raise ValueError(f"a warm-up state has {len(sums)} score sums for {len(counted)} counts")
        return sums
    single = np.array(counted, dtype=np.int64) == 1
    row_sums = np.asarray(scores["row_sums"], dtype=np.int64)
    row_at = np.asarray(scores["row_at"], dtype=np.int64)
    others = np.asarray(scores["sums"], dtype=np.int64)
    if len(row_at) != np.count_nonzero(single) or len(others) != len(single) - len(row_at):
        raise ValueError("a warm-up state's score sums do not match its counts")
    if len(row_at) and not 0 <= np.minimum.reduce(row_at) <= np.maximum.reduce(row_at) < len(row_sums):
        raise ValueError("a warm-up state's score sums refer to sums it does not have")
    out = np.empty(len(single), dtype=np.int64)
    out[single] = row_sums[row_at]
    out[~single] = others
    return out


def is_sketch_state(warmup: State) -> bool:
    """Whether a sketch's warm-up state is ``sketch_state``'s (version 5 and later), not a column state per name
    (3 and 4) or raw rows per name (2). Exact whatever the features are named: its ``columns`` are column states
    by name, where a column named "columns" has its state there, whose ``numbers`` is a count."""
    columns = warmup.get("columns")
    return type(columns) is dict and type(columns.get("numbers")) is not int


def check_sketch_state(state: State) -> None:
    """What ``from_sketch_state`` refuses without making a column: arrays of other lengths than its columns
    say (ValueError). A restored warm-up is kept as it is until it is first used (``StreamSketch.load_state``),
    which may be at a checkpoint; checked at its restore, a state no writer makes quarantines its model there
    (or at the model's first event), wherever checkpoints come, and never breaks a write of its state
    (``compact``'s arrays of other lengths)."""
    columns = state["columns"]
    anchors = state.get("anchors")  # version 6
    if anchors is not None and len(anchors) != len(columns):
        raise ValueError(f"a warm-up state has {len(anchors)} anchors for {len(columns)} columns")
    buckets = entries = 0  # the histograms' buckets, and every score entry (``_score_tables``)
    for name, column in columns.items():
        n = column.get("buckets", 0)
        if type(n) is not int or n < 0:
            raise ValueError(f"the warm-up column {name!r} has {n!r} buckets")
        distinct = column["distinct"]
        for table in (distinct if type(distinct) is dict else {}, column["categories"]):
            if not all(type(count) is int and count > 0 for count in table.values()):
                raise ValueError(f"the warm-up column {name!r} has a count that is no positive integer")
        buckets += n
        entries += n + (distinct if type(distinct) is int else len(distinct or ())) + len(column["categories"]) + 1
    steps, counts = state.get("steps", ()), state.get("counts", ())  # none where no column writes a histogram
    if not buckets == len(steps) == len(counts):
        raise ValueError(f"a warm-up state has {buckets} buckets, {len(steps)} steps and {len(counts)} counts")
    scored = (state.get("scores") or {}).get("scored")
    if scored is not None and len(scored) != entries:
        raise ValueError(f"a warm-up state has {len(scored)} scored counts for {entries} entries")


def from_sketch_state(state: State, limit: int, max_kept: int) -> dict[str, WarmupColumn]:
    """The columns of ``sketch_state()``, by name, in the order of their names (version 5's too, which wrote
    every anchor and distinct number in its column's plain values)."""
    check_sketch_state(state)
    steps, counts, scores = state.get("steps", ()), state.get("counts", ()), state.get("scores")
    names = sorted(state["columns"])
    anchors = state.get("anchors")
    tables = _DecimalTables.of(state)
    made: set[int] = set()
    at_bucket = 0
    alone = []
    counted: list[int] = []  # each column's counts in the order of its score arrays (``_score_tables``)
    for i, name in enumerate(names):
        column = dict(state["columns"][name])  # as WarmupColumn.state() writes it alone
        if "anchor" not in column:
            if anchors is None:
                raise ValueError(f"the warm-up column {name!r} has no anchor")
            column["anchor"] = lower_of(int(anchors[i])) if column["numbers"] else 0.0
        if type(column["distinct"]) is int:
            column["distinct"] = tables.take(name, column.pop("distinct"), column.pop("decimals"))
            made.add(i)
        buckets = column.pop("buckets", None)
        if buckets is not None:
            column["steps"] = steps[at_bucket : at_bucket + buckets]
            column["counts"] = counts[at_bucket : at_bucket + buckets]
            at_bucket += buckets
            counted += np.asarray(column["counts"]).tolist()
        for table in (column["distinct"] or {}, column["categories"]):
            counted += [table[key] for key in sorted(table)]
        counted.append(column["other"])
        alone.append(column)
    if scores is not None:
        sums = _sums_of(scores, counted)
        scored, at_score = scores["scored"], 0
        for column in alone:
            n = len(column.get("counts", ())) + len(column["distinct"] or ()) + len(column["categories"]) + 1
            column["scores"] = {
                "scored": None if scored is None else scored[at_score : at_score + n],
                "sums": sums[at_score : at_score + n],
            }
            at_score += n
    tables.check_used()
    return dict(zip(names, from_states(alone, limit, max_kept, frozenset(made))))


def _anchor_key(column: WarmupColumn) -> int | None:
    """The key of the bucket whose lower boundary is ``column``'s anchor, as ``add`` set it from its first
    number; None for a column without numbers, or one whose anchor is no boundary (written as it is)."""
    anchor = column.anchor
    if column.numbers == 0 or not 0 < abs(anchor) < LARGEST:
        return None
    # a boundary is +-GAMMA ** exponent: its logarithm is within rounding of that integer (cheaper than
    # bucket_key, whose boundaries are the numbers it checks the slow way); the boundary of the key checked
    exponent = round(math.log(abs(anchor)) / LOG_GAMMA)
    key = exponent + 1 - SMALLEST_EXPONENT if anchor > 0 else SMALLEST_EXPONENT - exponent
    return key if lower_of(key) == anchor else None


def _written_table(table: dict[Key, int] | None, parts: TableParts | None) -> object:
    """A column's distinct numbers as ``sketch_state`` writes them in its plain values: None (not kept), by
    text where they are no integers (``parts``: the table's), else their number (the integers are in the
    sketch's arrays)."""
    if table is None or parts is None:
        return None if table is None else {}
    if parts.decimals is None:
        return dict(zip(parts.texts, parts.counted))
    return len(table)


def _texts(scale: int | None, numbers: list[int]) -> list[str]:
    """The texts ``warmup_tables.decimal_table`` made ``numbers`` of."""
    if scale is None:
        return [str(n) for n in numbers]
    divisor = 10**scale
    return [repr(n / divisor) for n in numbers]


class _DecimalTables:
    """The distinct numbers of a sketch's columns as ``warmup_tables.decimal_table``'s integers, sorted, in three arrays
    for all of them: each table's smallest (``distinct_first``), the steps from one to the next
    (``distinct_steps``, each at least 1) and every number's count (``distinct_counts``)."""

    def __init__(self) -> None:
        self.first: list[int] = []
        self.steps: list[int] = []
        self.counts: list[int] = []
        self._at = self._at_step = 0

    @classmethod
    def of(cls, state: State) -> _DecimalTables:
        """The tables of a sketch's warm-up state, to ``take`` in the order they were added."""
        tables = cls()
        tables.first = np.asarray(state.get("distinct_first", ()), dtype=np.int64).tolist()
        tables.steps = np.asarray(state.get("distinct_steps", ()), dtype=np.uint64).tolist()
        tables.counts = np.asarray(state.get("distinct_counts", ()), dtype=np.uint64).tolist()
        if len(tables.steps) != len(tables.counts) - len(tables.first):
            raise ValueError("a warm-up state's distinct numbers and their counts do not match")
        return tables

    def take(self, name: str, n: object, scale: object) -> dict[str, int]:
        """The next table, of ``n`` numbers at ``scale``: text -> count, in the order of their texts."""
        if type(n) is not int or not 0 < n <= len(self.counts) - self._at_step - self._at:
            raise ValueError(f"the warm-up column {name!r} has {n!r} distinct numbers, not as many as are written")
        if scale is not None and (type(scale) is not int or not 0 <= scale <= MOST_DECIMALS):
            raise ValueError(f"the warm-up column {name!r} has distinct numbers of {scale!r} decimals")
        if self._at >= len(self.first):
            raise ValueError("a warm-up state has more distinct-number tables than first numbers")
        numbers = [self.first[self._at]]
        for step in self.steps[self._at_step : self._at_step + n - 1]:
            if step < 1:
                raise ValueError(f"the warm-up column {name!r} has a distinct number twice")
            numbers.append(numbers[-1] + step)
        start = self._at_step + self._at
        counts = self.counts[start : start + n]
        self._at += 1
        self._at_step += n - 1
        return dict(sorted(zip(_texts(scale, numbers), counts)))

    def check_used(self) -> None:
        if self._at != len(self.first):
            raise ValueError("a warm-up state has distinct numbers that no column reads")


def _steps(keys: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sorted keys as steps from the one before, the first from 0 (``np.cumsum`` gives them back)."""
    steps = keys.copy()
    steps[1:] -= keys[:-1]
    return steps


def _narrow(values: list[int] | NDArray[np.int64]) -> NDArray[np.unsignedinteger[Any]]:
    """Counts (never negative) in the narrowest unsigned dtype that holds them."""
    largest = max(values, default=0) if isinstance(values, list) else int(np.maximum.reduce(values, initial=0))
    for dtype, most in _UNSIGNED:
        if largest <= most:
            return np.array(values, dtype=dtype)
    raise OverflowError(f"a count of {largest} does not fit 64 bits")


def narrow_signed(values: list[int] | NDArray[np.int64]) -> NDArray[np.signedinteger[Any]]:
    """Numbers (below 2 ** 63 in magnitude) in the narrowest signed dtype that holds them; an array of any shape
    keeps its shape."""
    if isinstance(values, list):  # a few numbers: no numpy call but the array's
        low, high = min(values, default=0), max(values, default=0)
    else:
        low = int(np.minimum.reduce(values, axis=None, initial=0))
        high = int(np.maximum.reduce(values, axis=None, initial=0))
    for dtype, most in _SIGNED:
        if -most - 1 <= low and high <= most:
            return np.array(values, dtype=dtype)
    return np.array(values, dtype=np.int64)


_UNSIGNED = [(np.dtype(t), int(np.iinfo(t).max)) for t in (np.uint8, np.uint16, np.uint32, np.uint64)]
_SIGNED = [(np.dtype(t), int(np.iinfo(t).max)) for t in (np.int8, np.int16, np.int32, np.int64)]
