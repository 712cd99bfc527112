"""Is a windowed metric worse than its reference, with confidence?"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

_NORMAL = NormalDist()


def wilson_interval(successes: float, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion, ``z`` standard normal quantile wide on each side.

    >>> [round(b, 4) for b in wilson_interval(80, 100, 1.959964)]
    [0.7112, 0.8666]
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


class Verdict(NamedTuple):
    degraded: bool
    statistic: float  # the windowed metric
    threshold: float  # reference - tolerance (reference + tolerance when lower is better)
    p_value: float  # one-sided: of a value this bad if the metric were at the threshold
    bound: float  # the one-sided confidence bound compared with the threshold
    reference: float


class DegradationTest:
    """Is a windowed metric worse than its reference by more than a tolerance, with confidence?

    A window is degraded when the one-sided ``1 - alpha`` confidence bound of
    its metric is beyond ``reference ∓ tolerance``: for a proportion (accuracy,
    error rate, recall...) the Wilson score bound, which inverts the score test
    whose p-value is reported; for any other metric a normal approximation,
    ``value ± z × std_error``, with the standard error supplied by the caller
    (``RegressionMetrics`` reports ``mae_se``). A point estimate just past the
    threshold is not enough: the window must be past it beyond sampling noise.

    Without a ``reference``, the first ``warmup_windows`` windows set it
    (pooled over their rows for a proportion).

    Parameters
    ----------
    tolerance
        How much worse than the reference the metric may be.
    alpha
        One-sided false-alarm probability per window when the metric sits at
        the threshold.
    reference
        The metric's reference value (e.g. from a profile); None to learn it.
    higher_is_better
        True for accuracy, F1, AUC; False for error rate, log loss, MAE.
    proportion
        The metric is a share of ``n`` rows (Wilson bound); else normal bound.
    warmup_windows
        Windows that set the reference when none is given.

    Examples
    --------
    >>> test = DegradationTest(tolerance=0.05, alpha=0.01, reference=0.9)
    >>> def show(v):
    ...     return v.degraded, round(v.threshold, 4), round(v.p_value, 4), round(v.bound, 4)
    >>> show(test.check(0.86, 1000))   # below the reference, but not surely below the threshold
    (False, 0.85, 0.8121, 0.8836)
    >>> show(test.check(0.82, 1000))
    (True, 0.85, 0.0039, 0.8465)
    >>> mae = DegradationTest(tolerance=0.02, higher_is_better=False, proportion=False)
    >>> mae.check(0.40, 1000, std_error=0.01) is None   # warm-up: sets the reference
    True
    >>> show(mae.check(0.46, 1000, std_error=0.01))
    (True, 0.42, 0.0, 0.4367)
    """

    def __init__(
        self,
        tolerance: float,
        alpha: float = 0.01,
        reference: float | None = None,
        higher_is_better: bool = True,
        proportion: bool = True,
        warmup_windows: int = 1,
    ):
        self.tolerance = tolerance
        self.alpha = alpha
        self.reference = reference
        self.higher_is_better = higher_is_better
        self.proportion = proportion
        self.warmup_windows = warmup_windows
        self._reset()

    def _reset(self) -> None:
        self.learnt: float | None = None
        self.warmup_sum = 0.0  # successes (proportion) or values
        self.warmup_weight = 0  # rows (proportion) or windows
        self.warmup_seen = 0
        self.windows = 0
        self.degraded_windows = 0

    @property
    def reference_value(self) -> float | None:
        return self.reference if self.reference is not None else self.learnt

    def check(self, value: float, n: int, std_error: float | None = None) -> Verdict | None:
        """Test one completed window's metric ``value`` over ``n`` rows; None while learning the reference."""
        if self.reference_value is None:
            self._learn(value, n)
            return None
        reference = self.reference_value
        z = _NORMAL.inv_cdf(1 - self.alpha)
        sign = 1 if self.higher_is_better else -1
        threshold = reference - sign * self.tolerance
        if self.proportion:
            low, high = wilson_interval(value * n, n, z)
            bound = high if self.higher_is_better else low
            p0 = min(max(threshold, 1e-12), 1 - 1e-12)
            statistic_z = (value - p0) / math.sqrt(p0 * (1 - p0) / n) if n > 0 else 0.0
        else:
            if std_error is None:
                raise ValueError("a metric that is not a proportion needs its std_error")
            bound = value + sign * z * std_error
            gap = value - threshold
            statistic_z = gap / std_error if std_error > 0 else (math.copysign(math.inf, gap) if gap else 0.0)
        p_value = _NORMAL.cdf(sign * statistic_z)
        degraded = bool(n > 0 and (bound < threshold if self.higher_is_better else bound > threshold))
        self.windows += 1
        self.degraded_windows += degraded
        return Verdict(degraded, float(value), threshold, p_value, bound, reference)

    def _learn(self, value: float, n: int) -> None:
        if self.proportion:
            self.warmup_sum += value * n
            self.warmup_weight += n
        else:
            self.warmup_sum += value
            self.warmup_weight += 1
        self.warmup_seen += 1
        if self.warmup_seen >= self.warmup_windows and self.warmup_weight:
            self.learnt = self.warmup_sum / self.warmup_weight

    def state(self) -> dict:
        return {
            "learnt": self.learnt,
            "warmup_sum": self.warmup_sum,
            "warmup_weight": self.warmup_weight,
            "warmup_seen": self.warmup_seen,
            "windows": self.windows,
            "degraded_windows": self.degraded_windows,
        }

    def load_state(self, state: dict) -> None:
        self.learnt, self.warmup_sum = state["learnt"], state["warmup_sum"]
        self.warmup_weight, self.warmup_seen = state["warmup_weight"], state["warmup_seen"]
        self.windows, self.degraded_windows = state["windows"], state["degraded_windows"]
