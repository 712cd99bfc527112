"""Concept-drift detectors on a model's error stream (1 = wrong, 0 = right).

``BernoulliCusum`` is the default: a CUSUM of the log-likelihood ratio of
"odds of an error = ``ratio`` × reference odds" against "error rate =
reference" (odds, so that the tuned-for rise stays below 1 whatever the
reference rate: 10% → 18%, 30% → 46% for ``ratio=2``), the
optimal sequential test for a shift of that size. Its threshold
``h`` is set from the expected number of labelled events between false
alarms with Siegmund's approximation (see ``threshold``), and it runs on a
whole batch with numpy: the Lindley
recursion ``S_t = max(0, S_{t-1} + x_t)`` equals ``C_t - min(0, min_{s<=t} C_s)``
over the running sum ``C``. The log-likelihood ratios are fixed-point integers
(2^-20 resolution), so sums are exact and batches of any size give identical
state, bit for bit. The reference error rate is learnt from the first
``warmup`` labelled events, and learnt again after every detection, so one
change gives one detection.

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
[3255]

Batches of any size give the same detections:

>>> cusum, found = BernoulliCusum(run_length=1_000_000, ratio=2.0, warmup=500), []
>>> for i in range(0, 5000, 250):
...     found += [i + d["index"] for d in cusum.update(errors[i:i + 250])]
>>> found
[3255]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from streamdrift.core.errors import ConfigError
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


class BernoulliCusum:
    """Calibrated CUSUM for a rise of the error rate.

    Parameters
    ----------
    run_length
        Expected labelled events between false alarms (a lower bound).
    ratio
        The multiple of the odds of an error the test is tuned to detect fastest.
    warmup
        Labelled events that estimate the reference error rate.
    """

    name = "cusum"
    SCALE = 1 << 20  # fixed point: integer sums are associative, float sums are not

    def __init__(self, run_length: float, ratio: float = 2.0, warmup: int = 500):
        self.run_length = run_length
        self.ratio = ratio
        self.warmup = warmup
        self._threshold_for: tuple = (None, math.nan)  # a cache, not state: (p0 and settings, threshold)
        self._reset()

    def _reset(self) -> None:
        self.seen = 0  # labelled events since the last (re)start
        self.errors = 0  # errors among the warm-up
        self.p0 = math.nan
        self.s = 0  # in 1/SCALE units
        self.watched = 0  # labelled events since the reference was set
        self.watched_errors = 0

    @property
    def threshold(self) -> float:
        """``h`` with Siegmund's approximation ``(e^h - h - 1) / KL(p0 || p1) = run_length``.

        ``ln(run_length)`` (Wald's bound) also holds but is far more
        conservative: the statistic drifts down by KL(p0 || p1) per event under
        no change, so it needs about 1/KL times more events to cross. Before
        the reference error rate is known, Wald's bound stands in.
        """
        if math.isnan(self.p0):
            return math.log(self.run_length)
        key = (self.p0, self.run_length, self.ratio)
        if self._threshold_for[0] != key:  # 50 logarithms: only when the reference error rate changes
            self._threshold_for = (key, self._siegmund(self.p0))
        return self._threshold_for[1]

    def _siegmund(self, p0: float) -> float:
        p1 = self._p1(p0)
        kl = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))
        target = self.run_length * kl
        h = math.log(max(target, math.e))
        for _ in range(50):  # fixed point of h = ln(target + h + 1)
            h = math.log(target + h + 1)
        return h

    def _p1(self, p0: float) -> float:
        return self.ratio * p0 / (1 - p0 + self.ratio * p0)  # the odds of an error times `ratio`

    def _fixed(self, x: float) -> int:
        return int(round(x * self.SCALE))

    def update(self, errors: ArrayLike, stop_at_detection: bool = False) -> list[dict[str, Any]]:
        """Feed errors (bool or 0/1); return a detection per alarm, ``index`` into ``errors``.

        With ``stop_at_detection``, the errors after the first detection are left unread: the
        caller feeds them again once it has acted on the detection.
        """
        errors = np.asarray(errors, dtype=bool)
        found: list[dict[str, Any]] = []
        start = 0
        while start < len(errors):
            if math.isnan(self.p0):
                take = min(len(errors) - start, self.warmup - self.seen)
                self.errors += int(np.count_nonzero(errors[start : start + take]))
                self.seen += take
                start += take
                if self.seen == self.warmup:
                    self.p0 = min(max(self.errors / self.warmup, 1 / self.warmup), 1 - 1 / self.warmup)
                continue
            p0 = self.p0
            p1 = self._p1(p0)
            up, down = self._fixed(math.log(p1 / p0)), self._fixed(math.log((1 - p1) / (1 - p0)))
            limit = self._fixed(self.threshold)
            rest = errors[start:]
            # the Lindley recursion over the whole batch: the running sum, reflected at 0
            running = self.s + np.cumsum(np.where(rest, up, down).astype(np.int64))
            statistics = running - np.minimum(np.minimum.accumulate(running), 0)
            over = np.flatnonzero(statistics > limit)
            at = int(over[0]) if len(over) else -1
            statistic = int(statistics[at])
            if at < 0:
                self.s = statistic
                self.seen += len(rest)
                self.watched += len(rest)
                self.watched_errors += int(np.count_nonzero(rest))
                break
            watched = self.watched + at + 1
            watched_errors = self.watched_errors + int(np.count_nonzero(rest[: at + 1]))
            found.append(
                {
                    "index": start + at,
                    "statistic": statistic / self.SCALE,
                    "threshold": self.threshold,
                    "reference_error_rate": p0,
                    "error_rate_since_reference": watched_errors / watched,
                    "labelled_since_reference": watched,
                }
            )
            start += at + 1
            self._reset()  # learn the new error rate: the next alarm needs another change
            if stop_at_detection:
                break
        return found

    @property
    def statistic(self) -> float:
        return self.s / self.SCALE

    def state(self) -> State:
        return {
            "seen": self.seen,
            "errors": self.errors,
            "p0": None if math.isnan(self.p0) else self.p0,
            "s": self.s,
            "watched": self.watched,
            "watched_errors": self.watched_errors,
        }

    def load_state(self, state: State) -> None:
        self.seen, self.errors, self.s = state["seen"], state["errors"], state["s"]
        self.watched, self.watched_errors = state["watched"], state["watched_errors"]
        self.p0 = math.nan if state["p0"] is None else state["p0"]


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


# A detector made from the monitor's settings: run_length, ratio, warmup, history (each uses what it needs)
DetectorFactory = Callable[[float, float, int, int], ConceptDetector]


def _cusum(run_length: float, ratio: float, warmup: int, history: int) -> ConceptDetector:
    return BernoulliCusum(run_length, ratio, warmup)


def _river_detector(name: str) -> DetectorFactory:
    def make(run_length: float, ratio: float, warmup: int, history: int) -> ConceptDetector:
        return RiverDetector(name, history)

    return make


# Every concept detector by the name ``MonitorSettings.concept_detector`` accepts
DETECTORS: Mapping[str, DetectorFactory] = MappingProxyType(
    {"cusum": _cusum, **{name: _river_detector(name) for name in RIVER_DETECTORS}}
)


def make_detector(name: str, run_length: float, ratio: float, warmup: int, history: int = 10_000) -> ConceptDetector:
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
    return factory(run_length, ratio, warmup, history)
