"""A sketch's warm-up rows held back, then counted together: fewer, longer ``WarmupColumn.add`` calls.

A fleet's model gets a few rows per batch, and every batch of its warm-up cost one ``WarmupColumn.add``
per column (two dozen features, each call a few microseconds of fixed cost for two or three values). A
warm-up column's counts depend on its rows and their order only, never on how they were cut into calls
(``warmup.py``), so a sketch may hold a batch's warm-up rows here and count them later in one call per
column, with the same result: the plain path counts every batch at once (``StreamSketch.hold_warmup =
False``), and ``tests/unit/test_warmup_held.py`` checks both give the same state for any split.

The sketch counts what is held before anyone reads its warm-up (``StreamSketch.warmup``), before its
reference is built, and before ``state()``: held rows are never in a snapshot, and nothing outside the
sketch sees a count they miss. At most ``HOLD_ROWS`` rows wait, copies (never a view of the decoder's
blocks, which would keep a whole poll's numbers alive), numbers as 8-byte floats: a few KiB per sketch.

Examples
--------
>>> from streamdrift.core.warmup import WarmupColumn
>>> held = HeldWarmup()
>>> held.hold({"x": [1.0, 2.0], "c": ["a", "b"]}, 2, frozenset({"x"}), None)
>>> held.hold({"x": [3.0]}, 1, frozenset({"x"}), None)
>>> columns = {}
>>> held.count_into(columns, lambda: WarmupColumn(limit=10, max_kept=10))
>>> held.rows, list(columns), columns["x"].numbers, columns["c"].categories
(0, ['x', 'c'], 3, {'a': 1, 'b': 1})
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from streamdrift.core.records import FeatureColumn
from streamdrift.core.warmup import WarmupColumn

# rows a sketch holds before it counts them: most of the gain (a call per column per 32 rows, not per 2-5),
# at most 8 bytes a number and 8 a score while held (a list's Python floats would be 32)
HOLD_ROWS = 32


class _Held:
    """One column's held values: 8-byte floats while every piece was a number array, else a list; and the
    spans of the held rows it has (``[start, stop]``, for its scores: a column may miss a batch)."""

    __slots__ = ("values", "numbers_only", "spans")

    def __init__(self, values: array[float] | list[Any], numbers_only: bool, spans: list[list[int]]):
        self.values = values
        self.numbers_only = numbers_only
        self.spans = spans


class HeldWarmup:
    """Warm-up rows of one sketch not counted yet, per column in row order (see the module's docstring)."""

    __slots__ = ("columns", "scores", "rows")

    def __init__(self) -> None:
        # in the order the columns first appeared, which is the order the plain path makes them in
        self.columns: dict[str, _Held] = {}
        self.scores: array[int] | None = None  # every held row's fixed-point score, where the warm-up keeps them
        self.rows = 0

    def hold(
        self, columns: Mapping[str, FeatureColumn], take: int, numeric: frozenset[str], fixed: list[int] | None
    ) -> None:
        """The first ``take`` rows of ``columns`` (``numeric``: the names known to hold only numbers and None),
        with their scores ``fixed`` (already the first ``take``) where the warm-up keeps them."""
        held, start, stop = self.columns, self.rows, self.rows + take
        whole = take == len(next(iter(columns.values()), ()))  # all the batch's rows (not the warm-up's last)
        for name, values in columns.items():
            entry = held.get(name)
            if isinstance(values, np.ndarray) and values.dtype == np.float64:  # the decoder's numbers
                # a copy (never a view), by frombytes: array("d", some_bytes) costs ten times as much
                raw = (values if whole else values[:take]).tobytes()
                if entry is not None and isinstance(entry.values, array):
                    entry.values.frombytes(raw)
                    self._extend_span(entry, start, stop)
                    continue
                floats = array("d")
                floats.frombytes(raw)
                part: array[float] | list[Any] = floats
                numbers_only = True
            elif isinstance(values, np.ndarray):
                part, numbers_only = values[:take].tolist(), True
            else:
                part, numbers_only = values[:take], name in numeric
            if entry is None:
                held[name] = _Held(part, numbers_only, [[start, stop]])
                continue
            listed = entry.values.tolist() if isinstance(entry.values, array) else entry.values  # a list from here on
            listed.extend(part)
            entry.values = listed
            entry.numbers_only = entry.numbers_only and numbers_only
            self._extend_span(entry, start, stop)
        if fixed is not None:
            if self.scores is None:
                self.scores = array("q")
            self.scores.extend(fixed)
        self.rows = stop

    @staticmethod
    def _extend_span(entry: _Held, start: int, stop: int) -> None:
        last = entry.spans[-1]
        if last[1] == start:
            last[1] = stop
        else:
            entry.spans.append([start, stop])

    def count_into(self, warmup: dict[str, WarmupColumn], new_column: Callable[[], WarmupColumn]) -> None:
        """Count every held row into ``warmup`` (a column first seen now made by ``new_column``); then none is
        held."""
        scores = None if self.scores is None else self.scores.tolist()
        for name, entry in self.columns.items():
            column = warmup.get(name)
            if column is None:
                column = warmup[name] = new_column()
            values = entry.values.tolist() if isinstance(entry.values, array) else entry.values
            fixed = scores
            if scores is not None and entry.spans != [[0, self.rows]]:
                fixed = [s for start, stop in entry.spans for s in scores[start:stop]]
            column.add(values, numbers_only=entry.numbers_only, scores=fixed)
        self.columns = {}
        self.scores = None
        self.rows = 0
