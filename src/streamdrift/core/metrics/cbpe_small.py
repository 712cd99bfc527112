"""``CBPE.update`` for a handful of scores in plain Python: the same state, without its numpy calls.

A fleet's model gets its predictions a few at a time (issue 19), and ``update`` costs about a dozen numpy calls
whatever the rows: the NaN mask and its positions, the confidences and their fixed point, and a reduction per
sub-window. Here a batch of up to ``SMALL_ROWS`` positive-class scores (1-D) whose scored rows stay within one
sub-window without closing it (no window to report), each in [0, 1], is summed in Python: ``max(s, 1 - s)`` and the product
by ``SCALE`` are the same float64 operations, and ``round`` rounds half to even as ``np.rint`` does, so the
fixed-point sum is the same integer. A batch that starts a sub-window zeroes it first, as the general path
does. Any other batch is left to the general path (``update_small`` returns False, having changed nothing).
``tests/unit/test_cbpe_small.py`` checks the states equal.

Examples
--------
>>> import numpy as np
>>> from streamdrift.core.metrics.cbpe import CBPE
>>> cbpe = CBPE(window_size=8, subwindows=2)
>>> update_small(cbpe, np.array([0.9, np.nan, 0.2])), cbpe.rows, cbpe.sums[-1].tolist()
(True, 2, [2, 1782579])
>>> update_small(cbpe, np.array([0.5, 0.5]))  # closes the sub-window: the general path's
False
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.metrics.windows import SCALE

if TYPE_CHECKING:
    from streamdrift.core.metrics.cbpe import CBPE

SMALL_ROWS = 16  # up to this many scores summed here: past them numpy's fixed cost is the smaller one


def update_small(cbpe: CBPE, scores: NDArray[np.float64]) -> bool:
    """``cbpe.update(scores)`` where the batch is small and usual (it then completes no window); returns
    whether it did (False: nothing changed, the general path's turn)."""
    if not isinstance(scores, np.ndarray) or scores.ndim != 1 or scores.dtype != np.float64:
        return False
    if not 0 < len(scores) <= SMALL_ROWS:
        return False
    scored = [s for s in scores.tolist() if s == s]  # NaN: skipped
    if not all(0.0 <= s <= 1.0 for s in scored):
        return False  # not probabilities: numpy's int64 overflow, if any, is the general path's
    size = cbpe.slot_size
    fill = cbpe.rows % size
    if fill + len(scored) >= size:
        return False  # the sub-window closes within it (a window's estimate)
    if not scored:
        return True  # nothing to count, as the general path's empty loop
    summed = sum(round(max(s, 1 - s) * SCALE) for s in scored)
    slot = (cbpe.rows // size) % (cbpe.subwindows + 1)
    sums = cbpe.sums
    if fill == 0:  # the batch starts a sub-window: zeroed first, as the general path's fresh chunk
        sums[slot] = 0
    for row in (slot, cbpe.subwindows + 1):
        sums[row, 0] += len(scored)
        sums[row, 1] += summed
    cbpe.rows += len(scored)
    return True
