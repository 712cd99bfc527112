"""``VersionComparison.update`` for a handful of rows in plain Python: the same state, without its numpy calls.

A fleet's model gets its labels a few at a time (issue 19), and ``update`` costs a dozen numpy calls whatever
the rows: the versions' indices, a concatenation, a ``bincount`` and its reshape, and two additions into the
sub-window and the totals. Here a batch of up to ``SMALL_ROWS`` rows of versions already registered (the usual
case), within one sub-window, is tallied per version in Python and added into the same int64 counts, four
numbers per version. A batch that starts a sub-window zeroes it first, as the general path does. Any other batch
(a version new or past the cap, a ``None`` version, rows that cross a sub-window's end) is left to the general
path (``update_small`` returns False, having changed nothing). ``tests/unit/test_versions_small.py`` checks the
states equal.

Examples
--------
>>> import numpy as np
>>> from streamdrift.core.metrics.versions import VersionComparison
>>> v = VersionComparison(window_size=16, subwindows=2)
>>> v.update(["a", "b"], np.array([True, False]))  # new versions: the general path registers them
>>> update_small(v, ["a", "a", "b"], np.array([True, True, True])), v.rows
(True, 5)
>>> v.counts[-1].tolist()  # the totals: [rows, correct] per version
[[3, 3], [2, 1]]
>>> update_small(v, ["c"], np.array([True]))  # a new version: the general path's
False
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from streamdrift.core.metrics.versions import VersionComparison

SMALL_ROWS = 16  # up to this many rows tallied here: past them numpy's fixed cost is the smaller one


def update_small(comparison: VersionComparison, versions: list[Any], correct: NDArray[np.bool_]) -> bool:
    """``comparison.update(versions, correct)`` where the batch is small and usual; returns whether it did
    (False: nothing changed, the general path's turn)."""
    n = len(versions)
    size = comparison.slot_size
    fill = comparison.rows % size
    if not 0 < n <= SMALL_ROWS or fill + n > size or len(correct) != n:
        return False  # rows of two sub-windows: the general path's chunks
    if not isinstance(correct, np.ndarray) or correct.dtype != np.bool_:
        return False
    index = comparison.versions._index
    counts = comparison.counts
    if counts.shape[1] != len(index):
        return False
    tally: dict[int, list[int]] = {}  # version index -> [rows, correct]
    for version, right in zip(versions, correct.tolist()):
        # a version not registered yet, or not a string (None's key is "__none__"): the general path's
        if type(version) is not str or version not in index:
            return False
        counted = tally.setdefault(index[version], [0, 0])
        counted[0] += 1
        counted[1] += right
    slot = (comparison.rows // size) % (comparison.subwindows + 1)
    if fill == 0:  # the batch starts a sub-window: zeroed first, as the general path's fresh chunk
        counts[slot] = 0
    total = comparison.subwindows + 1
    for version_index, (rows, right_rows) in tally.items():
        for target in (slot, total):
            counts[target, version_index, 0] += rows
            counts[target, version_index, 1] += right_rows
    comparison.rows += n
    return True
