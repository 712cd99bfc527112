"""A sketch's warm-up rows held back until they complete it or are read (issue 19).

A fleet's poll gives each of its models a few rows, and a sketch's ``update``
pays a few dozen Python and numpy calls per batch, whatever its rows; at
2,000 models every model is in its warm-up, where nothing of a batch shows:
the warm-up only counts rows until the reference completes, at a row count.
So a sketch in its warm-up holds a batch whose rows, with those held, do not
complete it, a copy of its columns, and updates with them and the next
batch's as one batch when they would, when they reach
``StreamSketch.hold_rows`` (or their values, rows x columns, reach
``hold_values``), or when anything reads what they change
(``StreamSketch.settle``: its state, its warm-up's columns, a rebaseline, a
reference set; ``PartitionEngine.settle`` before a snapshot, and a worker
before it forks a checkpoint's writer, so that the copy does not count them
and the loop again later). The warm-up counts rows in order, whatever the batches, so holding
changes nothing a reader can see, only how many calls the rows cost
(``tests/unit/test_held.py`` compares a sketch that holds with one that does
not, batch by batch). Past the warm-up nothing is held: a monitoring
sketch's batches are binned in a few numpy calls, its type mismatches are
published every second, and its windows score every sub-window.

Only batches of one layout are held together: the same column names in the
same order, each an array or a list in all of them, the same optional
parts given. A batch of another layout first updates the sketch with those
held (a model's layout seldom changes). The arrays are copied, a batch's
in one block: a batch's arrays are views of its poll's, and holding them
would keep every poll a held row came from.

Examples
--------
>>> import numpy as np
>>> held = HeldRows()
>>> held.add({"x": np.array([1.0, 2.0]), "c": ["a", "b"]}, np.array([0, 1]), np.zeros(2), frozenset({"x"}))
>>> held.fits({"x": np.array([3.0]), "c": ["c"]}), held.fits({"c": ["d"]})  # the second: another layout
(True, False)
>>> held.add({"x": np.array([3.0]), "c": ["c"]}, np.array([2]), np.zeros(1), frozenset({"x"}))
>>> columns, offsets, times, numeric, versions, scores = held.take()
>>> columns["x"].tolist(), columns["c"], offsets.tolist(), numeric, held.rows
([1.0, 2.0, 3.0], ['a', 'b', 'c'], [0, 1, 2], frozenset({'x'}), 0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.records import FeatureColumn

# a batch as ``StreamSketch.update`` takes it
Batch = tuple[
    Mapping[str, FeatureColumn],  # columns
    NDArray[np.int64],  # offsets
    NDArray[np.float64],  # times
    frozenset[str] | None,  # numeric
    Sequence[str | None] | None,  # versions
    NDArray[np.float64] | None,  # scores
]
# what batches held together share (``_layout``)
Layout = tuple[tuple[str, ...], tuple[type[Any], ...], bool, bool]


class HeldRows:
    """Batches of one layout held for a sketch (see the module's docstring); ``rows``: how many rows."""

    __slots__ = ("rows", "_layout", "_blocks", "_lists", "_offsets", "_times", "_numeric", "_versions", "_scores")

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.rows = 0
        self._layout: Layout | None = None
        self._blocks: list[NDArray[np.float64]] = []  # per batch, its arrays (a row each, in the layout's order)
        self._lists: list[list[list[Any]]] = []  # per batch, its lists (in the layout's order)
        self._offsets: list[NDArray[np.int64]] = []
        self._times: list[NDArray[np.float64]] = []
        self._numeric: frozenset[str] | None = None  # the names numeric in every batch held
        self._versions: list[Sequence[str | None]] = []
        self._scores: list[NDArray[np.float64]] = []

    def fits(
        self,
        columns: Mapping[str, FeatureColumn],
        versions: Sequence[str | None] | None = None,
        scores: NDArray[np.float64] | None = None,
    ) -> bool:
        """Whether a batch is of the layout of those held (any is, while none is held)."""
        return not self.rows or _layout(columns, versions, scores) == self._layout

    def add(
        self,
        columns: Mapping[str, FeatureColumn],
        offsets: NDArray[np.int64],
        times: NDArray[np.float64],
        numeric: frozenset[str] | None,
        versions: Sequence[str | None] | None = None,
        scores: NDArray[np.float64] | None = None,
    ) -> None:
        """Hold a batch (as ``StreamSketch.update`` takes one) that ``fits``."""
        layout = _layout(columns, versions, scores)
        assert not self.rows or layout == self._layout, "a batch of another layout than those held"
        values = columns.values()
        arrays = [v for v in values if not isinstance(v, list)]
        self._blocks.append(np.array(arrays, dtype=np.float64) if arrays else _NO_BLOCK)
        self._lists.append([v for v in values if isinstance(v, list)])  # a column is an array or a list
        self._offsets.append(np.array(offsets, dtype=np.int64))
        self._times.append(np.array(times, dtype=np.float64))
        numeric = numeric or frozenset()
        self._numeric = numeric if not self.rows else self._numeric & numeric  # type: ignore[operator]
        if versions is not None:
            self._versions.append(versions)
        if scores is not None:
            self._scores.append(np.array(scores, dtype=np.float64))
        self._layout = layout
        self.rows += len(offsets)

    def take(self) -> Batch:
        """The rows held as one batch, in order; nothing is held after."""
        assert self._layout is not None, "no rows held"
        names, types, no_versions, no_scores = self._layout
        block = self._blocks[0] if len(self._blocks) == 1 else np.concatenate(self._blocks, axis=1)
        lists = zip(*self._lists)  # per list column, its batches' lists
        arrays = iter(block)
        columns: dict[str, FeatureColumn] = {
            name: next(arrays) if kind is np.ndarray else list(chain.from_iterable(next(lists)))
            for name, kind in zip(names, types)
        }
        batch: Batch = (
            columns,
            np.concatenate(self._offsets),
            np.concatenate(self._times),
            self._numeric,
            None if no_versions else list(chain.from_iterable(self._versions)),
            None if no_scores else np.concatenate(self._scores),
        )
        self._clear()
        return batch


def _layout(
    columns: Mapping[str, FeatureColumn],
    versions: Sequence[str | None] | None,
    scores: NDArray[np.float64] | None,
) -> Layout:
    """What batches held together share: their column names in order, each one's type (array or list), and
    whether they have versions and scores."""
    return tuple(columns), tuple(map(type, columns.values())), versions is None, scores is None


_NO_BLOCK: NDArray[np.float64] = np.zeros((0, 0), np.float64)
