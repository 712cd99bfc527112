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

import numpy as np

RIVER_DETECTORS = ("adwin", "page_hinkley", "kswin", "ddm", "eddm", "hddm_a", "hddm_w")
DETECTORS = ("cusum", *RIVER_DETECTORS)


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

    def update(self, errors: np.ndarray, stop_at_detection: bool = False) -> list[dict]:
        """Feed errors (bool or 0/1); return a detection per alarm, ``index`` into ``errors``.

        With ``stop_at_detection``, the errors after the first detection are left unread: the
        caller feeds them again once it has acted on the detection.
        """
        errors = np.asarray(errors, dtype=bool)
        found: list[dict] = []
        start = 0
        while start < len(errors):
            if math.isnan(self.p0):
                take = min(len(errors) - start, self.warmup - self.seen)
                self.errors += int(np.add.reduce(errors[start : start + take]))  # sum(), without its Python layer
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
            if len(rest) <= SMALL_BATCH:  # a few rows: the walk in Python integers, not ten numpy calls
                flags = rest.tolist()
                statistic, at = _walk(flags, self.s, up, down, limit)
            else:
                llr = np.where(rest, up, down).astype(np.int64)
                c = self.s + np.cumsum(llr)
                s = c - np.minimum(np.minimum.accumulate(c), 0)
                over = np.flatnonzero(s > limit)
                at = int(over[0]) if len(over) else -1
                statistic = int(s[at])
                flags = None
            if at < 0:
                self.s = statistic
                self.seen += len(rest)
                self.watched += len(rest)
                self.watched_errors += int(rest.sum()) if flags is None else sum(flags)
                break
            watched = self.watched + at + 1
            watched_errors = self.watched_errors + (
                int(rest[: at + 1].sum()) if flags is None else sum(flags[: at + 1])
            )
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

    def state(self) -> dict:
        return {
            "seen": self.seen,
            "errors": self.errors,
            "p0": None if math.isnan(self.p0) else self.p0,
            "s": self.s,
            "watched": self.watched,
            "watched_errors": self.watched_errors,
        }

    def load_state(self, state: dict) -> None:
        self.seen, self.errors, self.s = state["seen"], state["errors"], state["s"]
        self.watched, self.watched_errors = state["watched"], state["watched_errors"]
        self.p0 = math.nan if state["p0"] is None else state["p0"]


SMALL_BATCH = 64  # errors up to which the CUSUM walks in Python: numpy's per-call cost dominates below


def _walk(errors: list[bool], s: int, up: int, down: int, limit: int) -> tuple[int, int]:
    """The CUSUM in integers, step by step: the statistic after the last error, or at the first one
    past ``limit``, and that error's index (-1: none). ``s + cumsum`` reflected at 0, as the numpy
    path computes it (``s`` is never negative), so the same integers."""
    for i, error in enumerate(errors):
        s += up if error else down
        if s < 0:
            s = 0
        if s > limit:
            return s, i
    return s, -1


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

    def update(self, errors: np.ndarray, stop_at_detection: bool = False) -> list[dict]:
        """As ``BernoulliCusum.update``."""
        found = []
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

    def state(self) -> dict:
        return {"kept": np.packbits(np.array(self.kept, dtype=bool)), "n": len(self.kept)}

    def load_state(self, state: dict) -> None:
        bits = np.unpackbits(np.asarray(state["kept"], dtype=np.uint8))[: state["n"]]
        self._rebuild(bits.astype(int).tolist())


def make_detector(name: str, run_length: float, ratio: float, warmup: int, history: int = 10_000):
    if name == "cusum":
        return BernoulliCusum(run_length, ratio, warmup)
    return RiverDetector(name, history)
