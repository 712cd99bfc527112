"""Model versions side by side over the same window (A/B, shadow)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from streamdrift.core.metrics.degradation import wilson_interval
from streamdrift.core.metrics.labels import Registry, label_keys
from streamdrift.core.metrics.versions_small import update_small
from streamdrift.core.metrics.windows import Windowed, grown, ratio

_NORMAL = NormalDist()


class VersionComparison(Windowed):
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
        self.versions = Registry(self.max_versions)
        self.counts = np.zeros((self.subwindows + 2, 0, 2), dtype=np.int64)  # rows, correct

    def update(self, versions: list, correct: np.ndarray) -> None:
        """Add joined rows: each row's model version and whether its prediction was right."""
        if update_small(self, versions, correct):
            return  # a handful of rows of known versions, tallied in plain Python
        index = self._known(versions)
        if index is None:
            keys = label_keys(list(versions), missing="__none__")
            self.versions.register(keys, np.arange(self.rows, self.rows + len(keys)))
            index = self.versions.lookup(keys)
        grow = len(self.versions) - self.counts.shape[1]
        if grow:
            self.counts = grown(self.counts, 0, grow, 0)
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
        accuracy = ratio(correct, rows)
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
