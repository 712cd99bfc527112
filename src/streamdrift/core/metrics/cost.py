"""Business metrics: what graded predictions cost and what they were worth, per model version.

A model declares what an error costs (``ModelSettings.cost_matrix`` for a
classifier: the cost of each (label, prediction) pair; ``cost_per_unit_error``
for a regressor: the cost of a unit of absolute error), and feedback may carry
the ``value`` of the prediction it grades (revenue, loss, minutes). From them:

- ``CostMetrics``: the mean and sum of cost and value over a sliding window and
  since the start, per model version and for the model, with the standard error
  of the window's mean cost, which the degradation test needs;
- ``ExpectedCost``: the expected cost of predictions from their scores, before
  their labels are in (confidence-based performance estimation, as ``cbpe``
  estimates accuracy), for a classifier with a cost matrix.

Costs and values are not bounded in advance (a value may be up to the decoder's
``max_abs_number``), so they are summed as floats in row order (``ordered_sum``),
per version: any batching gives the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdrift.core.metrics.labels import Registry, label_keys
from streamdrift.core.metrics.windows import Windowed, ordered_sum, ratio
from streamdrift.core.sketch import NO_VERSION

_FIELDS = ("rows", "costed", "cost", "cost_squared", "valued", "value")

Floats = NDArray[np.float64]


def matrix_costs(matrix: Mapping[str, Mapping[str, float]], truth: NDArray[Any], predicted: NDArray[Any]) -> Floats:
    """The cost of each (label, prediction) pair of class names (``label_keys``); NaN where either class is
    not in ``matrix`` (label -> prediction -> cost).

    >>> m = {"0": {"0": 0.0, "1": 1.0}, "1": {"0": 5.0, "1": 0.0}}
    >>> matrix_costs(m, np.array(["1", "0", "1", "2"]), np.array(["0", "1", "1", "0"])).tolist()
    [5.0, 1.0, 0.0, nan]
    """
    classes = np.array(sorted(matrix), dtype=str)
    table = np.array([[matrix[t][p] for p in classes.tolist()] for t in classes.tolist()], dtype=np.float64)
    t, t_known = _class_index(classes, truth)
    p, p_known = _class_index(classes, predicted)
    known = t_known & p_known
    costs: Floats = np.full(len(truth), math.nan)
    costs[known] = table[t[known], p[known]]
    return costs


def expected_costs(
    matrix: Mapping[str, Mapping[str, float]],
    predicted: NDArray[Any],
    scores: Floats,
    class_scores: Sequence[Mapping[str, float] | None],
    positive: str,
) -> Floats:
    """Each prediction's expected cost from its scores, if they are calibrated: the sum over labels ``k``
    of P(k) × cost(k, prediction). ``scores``: the positive class's probability (NaN where absent), for a
    matrix of two classes; ``class_scores``: a dict of class probabilities per row (None where absent),
    whose classes must be the matrix's. NaN where neither applies, or the prediction is not in the matrix.

    >>> m = {"0": {"0": 0.0, "1": 1.0}, "1": {"0": 5.0, "1": 0.0}}
    >>> expected_costs(m, np.array(["0", "1", "1"]), np.array([0.2, 0.9, np.nan]), [None] * 3, "1").tolist()
    [1.0, 0.09999999999999998, nan]
    >>> expected_costs(m, np.array(["0"]), np.array([np.nan]), [{"0": 0.5, "1": 0.5}], "1").tolist()
    [2.5]
    """
    classes = sorted(matrix)
    out: Floats = np.full(len(predicted), math.nan)
    p, known = _class_index(np.array(classes, dtype=str), predicted)
    binary = len(classes) == 2 and positive in matrix
    if binary:
        negative = classes[0] if classes[1] == positive else classes[1]
        if_positive = np.array([matrix[positive][c] for c in classes], dtype=np.float64)
        if_negative = np.array([matrix[negative][c] for c in classes], dtype=np.float64)
        rows = known & ~np.isnan(scores)
        q = scores[rows]
        out[rows] = q * if_positive[p[rows]] + (1 - q) * if_negative[p[rows]]
    for i in np.flatnonzero(known).tolist():
        probabilities = class_scores[i] if i < len(class_scores) else None
        if probabilities is None or (binary and not math.isnan(out[i])) or not set(probabilities) <= set(matrix):
            continue
        prediction = classes[p[i]]
        out[i] = sum(q * matrix[label][prediction] for label, q in sorted(probabilities.items()))
    return out


def _class_index(classes: NDArray[Any], keys: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Each key's position in sorted ``classes``, and whether it is there."""
    keys = np.asarray(keys, dtype=str)
    at = np.minimum(np.searchsorted(classes, keys), len(classes) - 1)
    return at, classes[at] == keys


class CostMetrics(Windowed):
    """Mean and sum of cost and value of graded predictions per model version, windowed and cumulative.

    Fed the rows the performance metrics count, it closes its windows at the same rows. A row
    without a cost (a class outside the cost matrix, or no cost declared) or without a value is
    counted in ``rows`` only: means are over the rows that have one (``costed``, ``valued``).

    Parameters
    ----------
    window_size
        Rows in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.
    max_versions
        Versions tracked; later ones share ``__other__``.

    Examples
    --------
    >>> m = CostMetrics(window_size=4, subwindows=2)
    >>> windows = m.update(["v1", "v1", "v2", "v2", "v2"], np.array([0.0, 5.0, 1.0, np.nan, 1.0]),
    ...                    np.array([10.0, np.nan, 2.5, 3.0, np.nan]))
    >>> [(w["position"], w["row"], w["report"]["cost"], w["report"]["value"]) for w in windows]
    [(4, 3, 2.0, 5.166666666666667)]
    >>> r = m.report("cumulative")
    >>> r["rows"], r["costed"], r["cost_sum"], r["versions"]["v2"]["cost"], r["versions"]["v1"]["value"]
    (5, 4, 7.0, 1.0, 10.0)
    """

    def __init__(self, window_size: int, subwindows: int = 5, max_versions: int = 10):
        self.window_size = window_size
        self.subwindows = subwindows
        self.max_versions = max_versions
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.versions = Registry(self.max_versions)
        self.sums: Floats = np.zeros((self.subwindows + 2, 0, len(_FIELDS)))  # [slot, version, field]

    def update(self, versions: Sequence[str | None], costs: Floats, values: Floats) -> list[dict[str, Any]]:
        """Add rows (each one's model version, cost and value, NaN where none); return, per window completed
        within them, its ``position``, ``row`` and ``report`` (as of that row)."""
        n = len(versions)
        keys = label_keys(list(versions), missing=NO_VERSION)
        self.versions.register(keys, np.arange(self.rows, self.rows + n))
        index = self.versions.lookup(keys)
        grow = len(self.versions) - self.sums.shape[1]
        if grow:
            self.sums = np.concatenate([self.sums, np.zeros((self.subwindows + 2, grow, len(_FIELDS)))], axis=1)
        costed, valued = ~np.isnan(costs), ~np.isnan(values)
        cost, value = np.where(costed, costs, 0.0), np.where(valued, values, 0.0)
        with np.errstate(over="ignore"):  # a square beyond float64 is inf: the window's cost_se is then None
            squared = cost * cost
        terms = np.stack(
            [np.ones(n), costed.astype(np.float64), cost, squared, valued.astype(np.float64), value], axis=1
        )
        completed = []
        for slot, a, b, fresh, closes in self._chunks(n):
            if fresh:
                self.sums[slot] = 0
            chunk = index[a:b]
            for version in np.unique(chunk).tolist():
                mine = terms[a:b][chunk == version]
                for row in (slot, self._cumulative):
                    self.sums[row, version] = ordered_sum(self.sums[row, version], mine)
            self.rows += b - a
            if closes and self._window_complete():
                completed.append({"position": self.rows, "row": b - 1, "report": self.report("window")})
        return completed

    def report(self, scope: str = "window") -> dict[str, Any]:
        per_version = self.sums[self._slots(scope)].sum(axis=0)  # [version, field]
        out = {"scope": scope, **_means(per_version.sum(axis=0))}
        out["versions"] = {
            name: {k: v for k, v in _means(sums).items() if k in ("rows", "costed", "cost", "valued", "value")}
            for name, sums in zip(self.versions.names, per_version)
            if sums[0]
        }
        return out

    def state(self) -> dict[str, Any]:
        return {"rows": self.rows, "versions": self.versions.state(), "sums": self.sums.copy()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.rows = state["rows"]
        self.versions.load_state(state["versions"])
        self.sums = np.array(state["sums"], dtype=np.float64).reshape(
            self.subwindows + 2, len(self.versions), len(_FIELDS)
        )


def _means(sums: Floats) -> dict[str, Any]:
    """Counts, means, sums and the mean cost's standard error from one scope's sums of ``_FIELDS``."""
    rows, costed, cost, squared, valued, value = sums.tolist()
    mean = ratio(cost, costed)
    se = None
    if mean is not None:  # Python floats: an overflow gives inf (then NaN) without a warning
        variance = max(squared / costed - mean * mean, 0.0)
        se = math.sqrt(variance / costed) if math.isfinite(variance) else None
    return {
        "rows": int(rows),
        "costed": int(costed),
        "cost": mean,
        "cost_sum": cost,
        "cost_se": se,
        "valued": int(valued),
        "value": ratio(value, valued),
        "value_sum": value,
    }


class ExpectedCost(Windowed):
    """Windowed expected cost of predictions from their scores (``expected_costs``), before labels come.

    Fed with the expected cost of each scored prediction as it arrives (NaN ones skipped), summed in
    row order, so any batching gives the same state. Each window completed reports its mean and the
    mean's standard error, which the degradation test needs.

    Parameters
    ----------
    window_size
        Scored predictions in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.

    Examples
    --------
    >>> e = ExpectedCost(window_size=4, subwindows=2)
    >>> [(w["position"], w["row"], w["estimate"]) for w in e.update(np.array([1.0, np.nan, 0.5, 2.0, 0.5, 4.0, 1.0]))]
    [(4, 4, 1.0), (6, 6, 1.875)]
    >>> e.estimate("window"), e.estimate("cumulative")   # the window: its two full sub-windows, 2, 0.5, 4, 1
    (1.875, 1.5)
    """

    def __init__(self, window_size: int, subwindows: int = 5):
        self.window_size = window_size
        self.subwindows = subwindows
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.sums: Floats = np.zeros((self.subwindows + 2, 3))  # rows, expected cost, its square

    def update(self, costs: Floats) -> list[dict[str, Any]]:
        """Add the expected costs of new predictions (NaN ones are skipped); return, per window completed,
        its ``position`` (scored predictions so far), ``row`` (the index in ``costs`` that closed it),
        ``rows``, ``estimate`` and ``std_error``."""
        positions = np.flatnonzero(~np.isnan(costs))
        c = costs[positions]
        with np.errstate(over="ignore"):  # a square beyond float64 is inf: the window's std_error is then None
            terms = np.stack([np.ones_like(c), c, c * c], axis=1)
        completed = []
        for slot, a, b, fresh, closes in self._chunks(len(c)):
            if fresh:
                self.sums[slot] = 0
            for row in (slot, self._cumulative):
                self.sums[row] = ordered_sum(self.sums[row], terms[a:b])
            self.rows += b - a
            if closes and self._window_complete():
                rows, cost, squared = self.sums[self._slots("window")].sum(axis=0).tolist()
                mean = cost / rows
                variance = max(squared / rows - mean * mean, 0.0)  # Python floats, as in _means
                completed.append(
                    {
                        "position": self.rows,
                        "row": int(positions[b - 1]),
                        "rows": int(rows),
                        "estimate": mean,
                        "std_error": math.sqrt(variance / rows) if math.isfinite(variance) else None,
                    }
                )
        return completed

    def estimate(self, scope: str = "window") -> float | None:
        rows, cost, _ = self.sums[self._slots(scope)].sum(axis=0).tolist()
        return ratio(cost, rows)

    def state(self) -> dict[str, Any]:
        return {"rows": self.rows, "sums": self.sums.copy()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.rows = state["rows"]
        self.sums = np.array(state["sums"], dtype=np.float64).reshape(self.subwindows + 2, 3)
