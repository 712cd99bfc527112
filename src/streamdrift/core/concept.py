"""Concept-drift detectors on a model's error stream (1 = wrong, 0 = right).

``BernoulliCusum`` is the default: two CUSUMs of the log-likelihood ratio of
"odds of an error = ``ratio`` × reference odds" against "error rate =
reference" (odds, so that the tuned-for rise stays below 1 whatever the
reference rate: 10% → 18%, 30% → 46% for ``ratio=2``), the optimal
sequential test for a shift of that size: a fast chart (``ratio``) for
abrupt changes and a slow one (``SLOW_RATIO``, 1.25) for gradual ones, their
false-alarm rates adding up to the budget's (``FAST_SHARE`` of it to the fast
chart). A chart's two steps are integers (``chart_steps``: the
log-likelihood ratios' ratio within 2 %), so its run length between false
alarms is that of a finite Markov chain, computed exactly
(``cusum_run_length``), and each limit is the smallest that gives the chart
its share of the budget (``chart_limit``). Siegmund's approximation
(``siegmund_threshold``), which set the thresholds before, was conservative
by 1.15-1.45 × in run length, budget left unused.

*Guaranteed conditional performance* (issue 22). The reference error rate is
estimated from the first ``warmup`` labelled events; a chart designed for that
estimate drifts up on a stationary stream whenever the estimate happens to be
low, and fires. So the charts are designed for the one-sided Clopper-Pearson
*upper* bound of the rate instead (``upper_bound``): with probability at least
``confidence`` the true rate is at or below it, and a CUSUM for a rise alarms
less often on a lower rate, so the run length between false alarms is at
least the budget's for this model with that probability. The bound tightens
as labelled events come: the reference is estimated again at 2, 4, 8 and 16 ×
``warmup`` events (``LOOKS``), except while a chart is over half its
threshold or the errors since the reference are more than its design rate
gives with probability ``RISE_LEVEL`` (a change under way, as after a false
alarm), so that a rise not detected yet is not taken in. The looks' bounds
hold together with ``confidence`` (``look_misses``): the first four each miss
with their share of 1 - confidence (``LOOK_SHARES``, Bonferroni), and the last,
whose design governs every event after 16 × ``warmup`` (on a model that runs
for long, nearly all of them), with the rest of 1 - confidence once the looks'
overlap is counted: each look's events include the one before's, so their
misses come together far more often than Bonferroni assumes (``joint_miss``).

It runs on a whole batch with numpy: the Lindley recursion
``S_t = max(0, S_{t-1} + x_t)`` equals ``C_t - min(0, min_{s<=t} C_s)`` over
the running sum ``C``. The log-likelihood ratios are fixed-point integers
(2^-20 resolution), so sums are exact and batches of any size give identical
state, bit for bit. After a detection the detector restarts at once and
learns the reference again from the next ``warmup`` events, so its next
detection is a change against the new reference. A detection says which chart
fired and how many events ago its statistic last left 0 (``since_change``,
the change's estimated start).

Detectors are chosen by name (``MonitorSettings.concept_detector``) from one
registry, ``DETECTORS``: ``make_detector`` looks the name up, and every
detector it makes is a ``ConceptDetector``.

``RiverDetector`` wraps River's detectors (ADWIN, Page-Hinkley, KSWIN, DDM,
EDDM, HDDM_A, HDDM_W). Some of them are compiled objects whose state cannot be
read, so a snapshot keeps the error history the detector has seen since its
last detection instead, bounded by ``history``: when full, the detector is
rebuilt from the most recent half. That happens at fixed counts, so a replay
after a crash rebuilds exactly the same detector.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> errors = np.concatenate([rng.random(3000) < 0.1, rng.random(2000) < 0.2])
>>> cusum = BernoulliCusum(run_length=1_000_000, ratio=2.0, warmup=500)
>>> [d["index"] for d in cusum.update(errors)]
[3512]

Batches of any size give the same detections:

>>> cusum, found = BernoulliCusum(run_length=1_000_000, ratio=2.0, warmup=500), []
>>> for i in range(0, 5000, 250):
...     found += [i + d["index"] for d in cusum.update(errors[i:i + 250])]
>>> found
[3512]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg import solve_banded
from scipy.special import bdtrc, betaincinv, ndtr, ndtri

from streamdrift.core.errors import ConfigError, SnapshotError
from streamdrift.core.protocols import State

RIVER_DETECTORS = ("adwin", "page_hinkley", "kswin", "ddm", "eddm", "hddm_a", "hddm_w")


@runtime_checkable
class ConceptDetector(Protocol):
    """A concept-drift detector on the error stream, as ``ModelMonitor`` drives it."""

    name: str

    def update(self, errors: ArrayLike, stop_at_detection: bool = False) -> list[dict[str, Any]]:
        """Feed errors (bool or 0/1); return one detection per alarm, ``index`` into ``errors``.

        A detection holds ``index``, ``statistic``, ``threshold``, ``reference_error_rate``,
        ``error_rate_since_reference`` and ``labelled_since_reference``. With
        ``stop_at_detection``, the errors after the first detection are left unread.
        """
        ...

    @property
    def statistic(self) -> float:
        """The current value of the test statistic."""
        ...

    @property
    def threshold(self) -> float:
        """The value of ``statistic`` at which the detector alarms."""
        ...

    def state(self) -> State:
        """The detector's state (settings excluded)."""
        ...

    def load_state(self, state: State) -> None:
        """Take back what ``state()`` gave."""
        ...


LOOKS = 5  # the reference is estimated at 1, 2, 4, 8 and 16 × warmup labelled events
# The first four looks' shares of 1 - confidence (Bonferroni), chosen by measurement (docs/benchmarks.md): the first
# gets 0.4 (a change soon after a restart) and the look at 8 × warmup 0.1 (a change 15,000 events in, SEA's), or
# those are found later. The last look, whose design governs every event after 16 × warmup, gets the rest of
# 1 - confidence once the looks' overlap is counted (``look_misses``): about 0.6 of it, where Bonferroni gave it 0.375.
LOOK_SHARES = (0.4, 0.1, 0.025, 0.1)
# A look keeps the design in force when the errors since its reference are more than the design error rate gives
# with this probability (a one-sided binomial test), so that a change under way is not taken into the new reference.
# It costs no false-alarm budget (``BernoulliCusum._rising``), only power where it keeps a design by chance; chosen by
# measurement (docs/benchmarks.md): 0.02 and 0.03 found the same changes, 0.05 raised the calibration's false alarms
RISE_LEVEL = 0.02
SLOW_RATIO = 1.25  # the slow chart's odds multiple (gradual drift): see docs/benchmarks.md
# The fast chart's share of the false-alarm rate (the slow chart gets the rest): the fast chart alone at 0.4 is as
# quick to find an abrupt change as it was with half the budget and Siegmund's threshold, whose run length was
# 1.23-1.43 x its target (2-30 %); chosen by measurement (docs/benchmarks.md)
FAST_SHARE = 0.4
# The larger of a chart's two steps is at least this many units of its integer lattice (``chart_steps``): the
# steps' ratio is that of the log-likelihood ratios within 2 %. The chains' size grows with it, and their solving
# time about as its cube
STEP_UNITS = 25
# A chain whose states × widest step exceed this (design error rates under about 0.4 % at the default budget, where
# a right prediction's step is a tiny fraction of an error's) would take a second and tens of MB at every look: its
# limit is then Siegmund's approximation, as every limit was before
MAX_CHAIN_WORK = 1_500_000
_GRID_STEP = 0.02  # the quadrature's step in ``joint_miss``, in standard deviations of the first look's estimate


def upper_bound(errors: int, events: int, confidence: float) -> float:
    """The one-sided Clopper-Pearson upper bound of an error rate at ``confidence``.

    The exact binomial bound: with probability at least ``confidence`` the true rate is at or below it.

    >>> round(upper_bound(50, 1000, 0.9), 4), round(upper_bound(0, 1000, 0.9), 4)
    (0.06, 0.0023)
    """
    if errors >= events:
        return 1 - 1 / (2 * events)
    return float(betaincinv(errors + 1, events - errors, confidence))


def siegmund_threshold(p0: float, p1: float, run_length: float) -> float:
    """``h`` with Siegmund's approximation ``(e^h - h - 1) / KL(p0 || p1) = run_length``.

    ``ln(run_length)`` (Wald's bound) also holds but is far more conservative: the statistic drifts
    down by KL(p0 || p1) per event under no change, so it needs about 1/KL times more events to cross.
    """
    kl = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))
    target = run_length * kl
    h = math.log(max(target, math.e))
    for _ in range(50):  # fixed point of h = ln(target + h + 1)
        h = math.log(target + h + 1)
    return h


def chart_steps(p: float, ratio: float) -> tuple[int, int, float]:
    """A chart's steps on an integer lattice, ``(up, down, unit)``: an error adds ``up`` units, a right prediction
    takes ``down`` away, where the log-likelihood ratios of "odds × ``ratio``" against "rate ``p``" are
    ``ln(p1 / p)`` and ``ln((1 - p) / (1 - p1))``; a unit is worth ``unit`` of log-likelihood ratio.

    The larger step is at least ``STEP_UNITS`` units, so the steps' ratio is the log-likelihood ratios' within 2 %.
    On a lattice the chart's run length is the exact solution of a finite Markov chain (``cusum_run_length``).

    >>> chart_steps(0.1, 2.0)[:2], chart_steps(0.1, 1.25)[:2], chart_steps(0.9, 2.0)[:2]
    ((25, 4), (32, 4), (2, 25))
    """
    p1 = ratio * p / (1 - p + ratio * p)  # the odds of an error times `ratio`
    rise, fall = math.log(p1 / p), math.log((1 - p) / (1 - p1))
    small, large = sorted((rise, fall))
    small_units = math.ceil(STEP_UNITS * small / large)
    large_units = round(small_units * large / small)
    unit = small / small_units
    return (large_units, small_units, unit) if rise >= fall else (small_units, large_units, unit)


def cusum_run_length(p: float, up: int, down: int, limit: int) -> float:
    """The expected number of events until ``S = max(0, S + up)`` (with probability ``p``, else
    ``max(0, S - down)``), started at 0, exceeds ``limit``: exact, from the Markov chain on the states 0 to
    ``limit`` (Brook and Evans 1972).

    ``(I - P) L = 1`` is a banded linear system (a state reaches ``up`` states above it and ``down`` below), solved
    as such. With ``up`` 1 (error rates near 1) the band is widest, and the chain passes every state on its way
    up: first passages solve it in time and memory linear in ``limit`` (``_skip_free_up_run_lengths``).

    >>> round(cusum_run_length(0.5, 1, 1, 0), 6), round(cusum_run_length(0.1, 50, 8, 1027))
    (2.0, 11790096)
    """
    return _run_lengths(p, up, down, limit)[0]


def _run_lengths(p: float, up: int, down: int, limit: int) -> tuple[float, float]:
    """``cusum_run_length`` at ``limit`` and at ``limit - 1``, from one factorisation: the chain with the smaller
    limit is this one with the row of state ``limit`` made ``L(limit) = 0``, a rank-one change (Sherman-Morrison:
    one more right-hand side, ``e_limit``)."""
    if up == 1:
        return _skip_free_up_run_lengths(p, down, limit)
    if limit == 0:
        return 1 / p, 1.0  # at 0 any error alarms; above -1, the first event
    states = limit + 1
    band = np.zeros((up + down + 1, states))  # scipy's banded layout: band[up + i - j, j] = (I - P)[i, j]
    band[up] = 1.0
    here = np.arange(states)
    climbs = here + up <= limit  # a climb past the limit is the alarm, out of the chain
    band[up + here[climbs] - (here[climbs] + up), here[climbs] + up] -= p
    lands = np.maximum(here - down, 0)
    np.add.at(band, (up + here - lands, lands), -(1 - p))
    top = np.zeros(states)
    top[limit] = 1.0
    solved = solve_banded((down, up), band, np.column_stack([np.ones(states), top]))
    at, to_top = solved[:, 0], solved[:, 1]
    # the top row differs by (1 - p) at its landing state: (I - P) + e_limit ((1 - p) e_landing)^T
    without_top = at - to_top  # (I - P)^-1 (1 - e_limit)
    landing, q = max(0, limit - down), 1 - p
    below = without_top[0] - to_top[0] * q * without_top[landing] / (1 + q * to_top[landing])
    return float(at[0]), float(below)


def _skip_free_up_run_lengths(p: float, down: int, limit: int) -> tuple[float, float]:
    """``_run_lengths`` with ``up`` 1: the chain passes every state on its way up, so the run length is the sum over
    s of the expected steps from first reaching s to first reaching s + 1: one step, and after a fall to
    ``max(0, s - down)`` the climb back, ``passage[s] = (1 + q × (passages from there to s - 1)) / p``."""
    q = 1 - p
    climbed = [0.0]  # climbed[s]: the expected steps from 0 to first reaching s
    for s in range(limit + 1):
        climbed.append(climbed[s] + (1 + q * (climbed[s] - climbed[max(0, s - down)])) / p)
    return climbed[limit + 1], max(climbed[limit], 1.0)


def _tilt(p: float, up: int, down: int) -> float:
    """The θ > 0 at which ``p e^(θ up) + (1 - p) e^(-θ down) = 1``: e^(θ S) is then a martingale of the walk, and
    the run length grows about as e^(θ limit) (for log-likelihood-ratio steps θ is one unit's worth of it)."""
    low, high = 0.0, 1 / max(up, down)
    while p * math.exp(high * up) + (1 - p) * math.exp(-high * down) < 1:
        high *= 2
    for _ in range(100):  # bisection: the function is convex, below 1 between 0 and θ, above it after
        mid = (low + high) / 2
        low, high = (mid, high) if p * math.exp(mid * up) + (1 - p) * math.exp(-mid * down) < 1 else (low, mid)
    return high


@functools.lru_cache(maxsize=4096)
def chart_limit(p: float, up: int, down: int, run_length: float) -> int:
    """The smallest limit at which the chart's run length at error rate ``p`` (``cusum_run_length``) is at least
    ``run_length``. The run length grows about as e^(θ limit) (``_tilt``): Newton steps on its logarithm from
    Siegmund's approximation, then the limits next to the answer, so that it is the smallest.

    >>> chart_limit(0.1, 50, 8, 8e6), round(cusum_run_length(0.1, 50, 8, 994)), round(cusum_run_length(0.1, 50, 8, 993))
    (994, 8013532, 7822454)
    """
    theta = _tilt(p, up, down)
    drift = (1 - p) * down - p * up  # units lost per event, on average, where the chart is above 0
    target = math.log(run_length)
    scaled = run_length * theta * drift  # Siegmund: (e^(θ h) - θ h - 1) / (θ drift) = run length
    x = math.log(max(scaled, math.e))
    for _ in range(50):
        x = math.log(scaled + x + 1)
    guess = max(0, math.ceil(x / theta))
    if up > 1 and guess * max(up, down) > MAX_CHAIN_WORK:
        return guess  # a chain too large to solve at every look: Siegmund's approximation, as before
    low, high = -1, None  # the run length is below `run_length` at `low` (-1: no limit), at or above it at `high`
    while True:
        at, below = (math.log(value) for value in _run_lengths(p, up, down, guess))  # at guess and guess - 1
        if below < target <= at:
            return guess
        if at < target:
            low = guess
        else:
            high = guess - 1
        if high is not None and high - low <= 1:
            return high
        # Newton, with the slope of ln(run length) measured between guess - 1 and guess (about θ far up)
        step = math.ceil((target - at) / (at - below if at > below else theta))
        guess = max(low + 1, guess + (step or (1 if at < target else -1)))
        if high is not None:
            guess = min(guess, high)


def joint_miss(misses: Sequence[float]) -> float:
    """The probability that any look's bound misses, when look k's alone misses with ``misses[k]``.

    Look k (from 0) estimates the rate from the first ``2^k × warmup`` events, and its bound misses when that
    estimate falls too low: standardised, below ``-z_k``. In the normal limit the running sum of (error - rate)
    is a Brownian motion W at times 1, 2, 4, ...: look k misses when ``W(2^k) < -z_k sqrt(2^k)`` (by symmetry,
    when ``W(2^k) > z_k sqrt(2^k)``), and the looks share their events, so their misses overlap. Computed by
    numerical integration of W's density over the looks, as group-sequential designs are (Armitage, McPherson
    and Rowe 1969), deterministic; the binomial bounds' own discreteness only makes them hold more often
    (``tests/unit/test_concept.py`` checks that exactly).

    >>> round(joint_miss([0.05]), 6), round(joint_miss([0.04, 0.01, 0.0025, 0.01, 0.0375]), 4)
    (0.05, 0.0809)
    """
    *first, last = misses
    points, density = _held(first)
    return 1 - _last_holds(points, density, len(first), last)


def _limit(miss: float, look: int) -> float:
    """Where look ``look``'s bound stops holding, on W's scale (``joint_miss``)."""
    return float(-ndtri(miss)) * 2 ** (look / 2)


def _trapezoid(n: int) -> np.ndarray:
    weights = np.full(n, _GRID_STEP)
    weights[0] = weights[-1] = _GRID_STEP / 2
    return weights


def _held(misses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """W's density at the time of the last of these looks, where every one of them held: (points, density)."""
    points: np.ndarray = np.zeros(1)  # W(0) = 0: a point mass, weighted 1 below
    density: np.ndarray = np.ones(1)
    for look, miss in enumerate(misses):
        spread = 2.0 ** (look - 1) if look else 1.0  # the variance of W(2^look) - W(the look before)
        limit = _limit(miss, look)
        depth = 8 * 2 ** (look / 2)  # 8 standard deviations of W(2^look) below 0: the rest is below 1e-15
        new = limit - _GRID_STEP * np.arange(int((limit + depth) / _GRID_STEP) + 1)[::-1]
        mass = density * (_trapezoid(len(points)) if look else 1.0)
        steps = new[:, None] - points[None, :]
        kernel = np.exp(-(steps**2) / (2 * spread)) / math.sqrt(2 * math.pi * spread)
        points, density = new, (kernel * mass[None, :]).sum(axis=1)
    return points, density


def _last_holds(points: np.ndarray, density: np.ndarray, look: int, miss: float) -> float:
    """The probability that the looks before held (W's density ``density`` at ``points``) and look ``look``
    holds too, missing alone with ``miss``."""
    if look == 0:
        return 1 - miss
    spread = 2.0 ** (look - 1)
    inside = ndtr((_limit(miss, look) - points) / math.sqrt(spread))
    return float((density * inside * _trapezoid(len(points))).sum())


@functools.lru_cache(maxsize=16)
def look_misses(confidence: float) -> tuple[float, ...]:
    """Per look, the probability its bound may miss: the first four their ``LOOK_SHARES`` of 1 - confidence, the
    last the largest (to 3 significant digits, rounded down) with which all of them still hold together with
    ``confidence`` (``joint_miss``). Bonferroni gave the last look 0.375 of 1 - confidence.

    >>> [round(miss, 6) for miss in look_misses(0.9)]
    [0.04, 0.01, 0.0025, 0.01, 0.0596]
    """
    first = [(1 - confidence) * share for share in LOOK_SHARES]
    points, density = _held(first)
    low, high = 0.0, 1 - confidence  # the last alone misses with at most all of 1 - confidence
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _last_holds(points, density, len(first), mid) >= confidence else (low, mid)
    digits = 2 - math.floor(math.log10(low))  # rounded down to 3 significant digits: the same on every machine
    return (*first, math.floor(low * 10**digits) / 10**digits)


class BernoulliCusum:
    """Calibrated CUSUMs for a rise of the error rate: a fast chart and a slow one under one budget.

    Parameters
    ----------
    run_length
        Expected labelled events between false alarms (a lower bound), both charts together: the fast
        chart gets ``run_length / FAST_SHARE``, the slow one ``run_length / (1 - FAST_SHARE)`` (their
        false-alarm rates add up to the budget's), each exactly (``chart_limit``).
    ratio
        The multiple of the odds of an error the fast chart is tuned to detect fastest.
    warmup
        Labelled events that estimate the reference error rate.
    confidence
        The probability that the run length holds for *this* reference: the charts are designed for
        the one-sided Clopper-Pearson upper bound of the error rate at this confidence, not for the
        estimate, so a warm-up that happened to see few errors does not make the chart drift up
        (None: designed for the estimate itself, as before issue 22; for comparisons).
    slow_ratio
        The odds multiple of the slow chart, for gradual changes (None: the fast chart alone).
    """

    name = "cusum"
    SCALE = 1 << 20  # fixed point: integer sums are associative, float sums are not

    def __init__(
        self,
        run_length: float,
        ratio: float = 2.0,
        warmup: int = 500,
        confidence: float | None = 0.9,
        slow_ratio: float | None = SLOW_RATIO,
    ):
        self.run_length = run_length
        self.ratio = ratio
        self.warmup = warmup
        self.confidence = confidence
        self.ratios = (ratio,) if slow_ratio is None else (ratio, slow_ratio)
        self._design_for: tuple = (None, ())  # a cache, not state: ((design, limits), charts' designs)
        self._reset()

    def _reset(self) -> None:
        """A new reference, learnt from the next ``warmup`` events."""
        self.seen = 0  # labelled events in the reference's estimate so far
        self.errors = 0  # errors among them
        self.reference: tuple[int, int] | None = None  # (events, errors) the reference was estimated from
        self.design = math.nan  # the error rate the charts are designed for
        self.limits: list[int] | None = None  # per chart, its limit in units of its lattice (``chart_limit``)
        self.next_look: int | None = None  # the events seen at which the reference is estimated again
        self.s = [0] * len(self.ratios)  # each chart's statistic, in 1/SCALE units
        self.runs = [0] * len(self.ratios)  # labelled events since each chart's statistic was last 0
        self.watched = 0  # labelled events since the reference was set
        self.watched_errors = 0

    def _look(self) -> None:
        """Estimate the reference error rate from the events so far, and design the charts for it: for the
        upper confidence bound of the rate, each look's bound at its own level (``look_misses``: look k, at
        2^k × warmup events, k from 0, may miss with ``look_misses(confidence)[k]``), so that all the looks'
        bounds hold together with ``confidence``.
        """
        self.reference = (self.seen, self.errors)
        self._plan_look()
        if self.confidence is None:
            self.design = self.p0
        else:
            look = (self.seen // self.warmup).bit_length() - 1  # looks are at warmup × 2^k events exactly
            self.design = upper_bound(self.errors, self.seen, 1 - look_misses(self.confidence)[look])
        self.limits = self._limits(self.design)

    def _rising(self) -> bool:
        """Whether the error rate may have risen since the reference was estimated: a chart is over half its
        limit, or the errors since then are more than the design error rate gives with probability
        ``RISE_LEVEL`` (a one-sided binomial test).

        Either keeps the design as it is at a look: the reference stays the last look whose bound was taken,
        and every look's bound holds together with ``confidence`` (``look_misses``), so which of them is in
        force, chosen by the data, does not change that the design is at or above the true rate.
        """
        if any(s * 2 > design[4] for s, design in zip(self.s, self._designs())):
            return True
        if self.confidence is None:
            return False  # designed for the estimate, below the true rate half the time: the test would keep those
        assert self.reference is not None
        events, errors = self.seen - self.reference[0], self.errors - self.reference[1]
        return events > 0 and float(bdtrc(errors - 1, events, self.design)) < RISE_LEVEL

    def _limits(self, design: float) -> list[int]:
        """Each chart's limit for its share of the budget at the design error rate (the state keeps them: a
        restored model does not compute them again)."""
        shares = (FAST_SHARE, 1 - FAST_SHARE) if len(self.ratios) == 2 else (1.0,)
        return [
            chart_limit(design, *chart_steps(design, ratio)[:2], self.run_length / share)
            for ratio, share in zip(self.ratios, shares)
        ]

    def _plan_look(self) -> None:
        """The next look at twice the events seen, up to 2^(LOOKS - 1) × warmup."""
        self.next_look = self.seen * 2 if self.seen * 2 <= self.warmup << (LOOKS - 1) else None

    @property
    def p0(self) -> float:
        """The reference error rate as estimated (nan while it is learnt)."""
        if self.reference is None:
            return math.nan
        n, k = self.reference
        return min(max(k / n, 1 / n), 1 - 1 / n)

    def _designs(self) -> tuple[tuple[float, float, int, int, int], ...]:
        """Per chart: (design error rate, threshold h, and in fixed point: up, down, limit). A lattice unit is
        ``k`` fixed-point units, so the fixed-point chart is its lattice's chain, k times over."""
        assert self.limits is not None
        key = (self.design, tuple(self.limits))
        if self._design_for[0] != key:  # only when the design changes
            designs = []
            for ratio, limit in zip(self.ratios, self.limits):
                up, down, unit = chart_steps(self.design, ratio)
                k = max(1, round(unit * self.SCALE))
                designs.append((self.design, limit * unit, up * k, -down * k, limit * k))
            self._design_for = (key, tuple(designs))
        return self._design_for[1]

    @property
    def threshold(self) -> float:
        """The fast chart's limit in log-likelihood-ratio units; Wald's ``ln(run_length)`` before the reference."""
        if self.reference is None:
            return math.log(self.run_length)
        return self._designs()[0][1]

    @property
    def statistic(self) -> float:
        """The fast chart's statistic, or the slow chart's scaled to the fast threshold if it is nearer its own."""
        if self.reference is None:
            return 0.0
        designs = self._designs()
        share = max(s / d[4] for s, d in zip(self.s, designs))
        return share * designs[0][1]

    def update(self, errors: ArrayLike, stop_at_detection: bool = False) -> list[dict[str, Any]]:
        """Feed errors (bool or 0/1); return a detection per alarm, ``index`` into ``errors``.

        A detection also holds ``chart`` (0 fast, 1 slow) and ``since_change``: the labelled events
        from the first after the chart's statistic was last 0 (the change's estimated start) up to the
        detection, both included. With ``stop_at_detection``, the errors after the first detection are
        left unread: the caller feeds them again once it has acted on the detection.
        """
        errors = np.asarray(errors, dtype=bool)
        found: list[dict[str, Any]] = []
        start = 0
        while start < len(errors):
            if self.reference is None:
                take = min(len(errors) - start, self.warmup - self.seen)
                self.errors += int(np.count_nonzero(errors[start : start + take]))
                self.seen += take
                start += take
                if self.seen >= self.warmup:
                    self._look()
                continue
            if self.next_look is not None and self.seen >= self.next_look:
                # a look, from twice as many events; skipped while a rise not detected yet would be taken into
                # the reference: a chart on its way up, or more errors since the reference than its design allows
                if self._rising():
                    self._plan_look()
                else:
                    self._look()
            look = self.next_look
            rest = errors[start : len(errors) if look is None else start + look - self.seen]
            crossings = []  # per chart: (index of the first crossing or len(rest), its statistics)
            for chart, (_, _, up, down, limit) in enumerate(self._designs()):
                # the Lindley recursion over the whole batch: the running sum, reflected at 0
                running = self.s[chart] + np.cumsum(np.where(rest, up, down).astype(np.int64))
                statistics = running - np.minimum(np.minimum.accumulate(running), 0)
                over = np.flatnonzero(statistics > limit)
                crossings.append((int(over[0]) if len(over) else len(rest), statistics))
            at = min(c[0] for c in crossings)
            end = at + 1 if at < len(rest) else len(rest)  # the errors this step reads
            for chart, (_, statistics) in enumerate(crossings):
                zeros = np.flatnonzero(statistics[:end] == 0)
                if len(zeros):
                    self.runs[chart] = end - 1 - int(zeros[-1])
                else:
                    self.runs[chart] += end
                self.s[chart] = int(statistics[end - 1])
            self.seen += end
            self.errors += int(np.count_nonzero(rest[:end]))
            self.watched += end
            self.watched_errors += int(np.count_nonzero(rest[:end]))
            if at == len(rest):
                start += end
                continue
            chart = next(c for c, crossing in enumerate(crossings) if crossing[0] == at)  # the fast one on a tie
            design = self._designs()[chart]
            found.append(
                {
                    "index": start + at,
                    "chart": chart,
                    "statistic": self.s[chart] / self.SCALE * (self.threshold / design[1]),
                    "threshold": self.threshold,
                    "reference_error_rate": self.p0,
                    "design_error_rate": design[0],
                    "error_rate_since_reference": self.watched_errors / self.watched,
                    "labelled_since_reference": self.watched,
                    "since_change": self.runs[chart],
                }
            )
            start += end
            # restart at once: the reference is learnt again from the next events, and the next
            # detection is a change against it, never the same condition again
            self._reset()
            if stop_at_detection:
                break
        return found

    def state(self) -> State:
        return {
            "version": 3,
            "seen": self.seen,
            "errors": self.errors,
            "reference": None if self.reference is None else list(self.reference),
            "design": None if math.isnan(self.design) else self.design,
            "limits": None if self.limits is None else list(self.limits),
            "next_look": self.next_look,
            "s": list(self.s),
            "runs": list(self.runs),
            "watched": self.watched,
            "watched_errors": self.watched_errors,
        }

    def load_state(self, state: State) -> None:
        """Version 3, or version 2 (before the limits were exact, ``chart_limit``): the limits are then computed
        for its design error rate, and its charts go on from their statistics."""
        if state.get("version") not in (2, 3) or len(state["s"]) != len(self.ratios):
            raise SnapshotError(
                "the concept detector's state is from before its charts were designed for a confidence bound "
                "of the error rate (issue 22): delete the snapshot to start this model afresh (its concept detector "
                "learns its reference error rate again from the next labelled events)"
            )
        self.seen, self.errors = state["seen"], state["errors"]
        self.reference = None if state["reference"] is None else (state["reference"][0], state["reference"][1])
        self.design = math.nan if state["design"] is None else state["design"]
        if state["version"] == 3:
            self.limits = None if state["limits"] is None else list(state["limits"])
        else:
            self.limits = None if state["design"] is None else self._limits(self.design)
        self.next_look = state["next_look"]
        self.s, self.runs = list(state["s"]), list(state["runs"])
        self.watched, self.watched_errors = state["watched"], state["watched_errors"]


def _river(name: str, seed: int):
    from river import drift

    return {
        "adwin": lambda: drift.ADWIN(),
        "page_hinkley": lambda: drift.PageHinkley(),
        "kswin": lambda: drift.KSWIN(seed=seed),
        "ddm": lambda: drift.binary.DDM(),
        "eddm": lambda: drift.binary.EDDM(),
        "hddm_a": lambda: drift.binary.HDDMA(),
        "hddm_w": lambda: drift.binary.HDDMW(),
    }[name]()


class RiverDetector:
    """A River drift detector at its defaults, snapshotted as its bounded input history.

    Parameters
    ----------
    name
        One of ``RIVER_DETECTORS``.
    history
        Errors kept since the last detection; when full, the detector is
        rebuilt from the most recent half.
    seed
        Seed of detectors that draw random numbers (KSWIN).
    """

    def __init__(self, name: str, history: int = 10_000, seed: int = 42):
        self.name = name
        self.history = history
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        self.detector = _river(self.name, self.seed)
        self.kept: list[int] = []

    def update(self, errors: ArrayLike, stop_at_detection: bool = False) -> list[dict[str, Any]]:
        """As ``BernoulliCusum.update``."""
        found: list[dict[str, Any]] = []
        for i, e in enumerate(np.asarray(errors, dtype=np.int8).tolist()):
            self.detector.update(e)
            self.kept.append(e)
            if self.detector.drift_detected:
                found.append(
                    {
                        "index": i,
                        "statistic": 1.0,
                        "threshold": self.threshold,
                        "reference_error_rate": None,
                        "error_rate_since_reference": float(np.mean(self.kept)),
                        "labelled_since_reference": len(self.kept),
                    }
                )
                self._reset()
                if stop_at_detection:
                    break
            elif len(self.kept) >= self.history:
                self._rebuild(self.kept[-self.history // 2 :])
        return found

    def _rebuild(self, kept: list[int]) -> None:
        self.detector = _river(self.name, self.seed)
        self.kept = []
        for e in kept:
            self.detector.update(e)
            self.kept.append(e)

    @property
    def statistic(self) -> float:
        return 0.0

    @property
    def threshold(self) -> float:
        # River's detectors decide for themselves: a detection scores 1, anything else 0, and the
        # policy fires on a statistic above the threshold (at 1.0, no detection was ever reported)
        return 0.5

    def state(self) -> State:
        return {"kept": np.packbits(np.array(self.kept, dtype=bool)), "n": len(self.kept)}

    def load_state(self, state: State) -> None:
        bits = np.unpackbits(np.asarray(state["kept"], dtype=np.uint8))[: state["n"]]
        self._rebuild(bits.astype(int).tolist())


# A detector made from the monitor's settings: run_length, ratio, warmup, history, budget confidence (each
# uses what it needs)
DetectorFactory = Callable[[float, float, int, int, float], ConceptDetector]


def _cusum(run_length: float, ratio: float, warmup: int, history: int, confidence: float) -> ConceptDetector:
    return BernoulliCusum(run_length, ratio, warmup, confidence)


def _river_detector(name: str) -> DetectorFactory:
    def make(run_length: float, ratio: float, warmup: int, history: int, confidence: float) -> ConceptDetector:
        return RiverDetector(name, history)

    return make


# Every concept detector by the name ``MonitorSettings.concept_detector`` accepts
DETECTORS: Mapping[str, DetectorFactory] = MappingProxyType(
    {"cusum": _cusum, **{name: _river_detector(name) for name in RIVER_DETECTORS}}
)


def make_detector(
    name: str, run_length: float, ratio: float, warmup: int, history: int = 10_000, confidence: float = 0.9
) -> ConceptDetector:
    """The detector registered as ``name``, made from the monitor's settings.

    >>> make_detector("cusum", 1e6, 2.0, 500).name
    'cusum'
    >>> make_detector("adwn", 1e6, 2.0, 500)
    Traceback (most recent call last):
    ...
    streamdrift.core.errors.ConfigError: unknown concept detector 'adwn': choose one of cusum, adwin, page_hinkley, kswin, ddm, eddm, hddm_a, hddm_w
    """
    factory = DETECTORS.get(name)
    if factory is None:
        raise ConfigError(f"unknown concept detector {name!r}: choose one of {', '.join(DETECTORS)}")
    return factory(run_length, ratio, warmup, history, confidence)
