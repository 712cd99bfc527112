"""core/concept.py pinned exactly: the CUSUM against a plain re-implementation of its documented arithmetic, and
every detector's state round trip, the tests that kill the mutants `make mutation` found surviving there.

docs/mutation.md lists the mutants left alive and why.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from streamdrift.core import concept
from streamdrift.core.state import dumps


def _siegmund(p0: float, p1: float, run_length: float) -> float:
    """The ``h`` where ``(e^h - h - 1) / KL(p0 || p1) = run_length``."""
    kl = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))
    return float(brentq(lambda h: (math.exp(h) - h - 1) / kl - run_length, 1e-9, 100))


def _reference_cusum(errors: list[bool], run_length: float, ratio: float, warmup: int) -> list[dict]:
    """The concept module's CUSUM written out plainly: the reference error rate from the warm-up (kept off 0
    and 1), the log-likelihood ratio of the odds times ``ratio`` per event in 1/2**20 units, reflected at 0,
    Siegmund's threshold solved with scipy; after a detection everything is learnt again."""
    scale = 1 << 20
    found, seen, wrong, s, watched, watched_wrong, p0 = [], 0, 0, 0, 0, 0, None
    for i, error in enumerate(errors):
        if p0 is None:
            seen, wrong = seen + 1, wrong + error
            if seen == warmup:
                p0 = min(max(wrong / warmup, 1 / warmup), 1 - 1 / warmup)
            continue
        p1 = ratio * p0 / (1 - p0 + ratio * p0)
        h = _siegmund(p0, p1, run_length)
        step = math.log(p1 / p0) if error else math.log((1 - p1) / (1 - p0))
        s = max(s + round(step * scale), 0)
        watched, watched_wrong = watched + 1, watched_wrong + error
        if s > round(h * scale):
            found.append({"index": i, "statistic": s / scale, "threshold": h, "reference_error_rate": p0,
                          "error_rate_since_reference": watched_wrong / watched, "labelled_since_reference": watched})  # fmt: skip
            seen, wrong, s, watched, watched_wrong, p0 = 0, 0, 0, 0, 0, None
    return found


def _errors() -> list[bool]:
    rng = np.random.default_rng(18)
    rates = [0.1] * 400 + [0.5] * 300 + [0.1] * 300 + [0.9] * 300
    return [bool(rng.random() < r) for r in rates]


@pytest.mark.parametrize("batch", [1, 7, 1500])
def test_the_cusum_detects_where_its_documented_arithmetic_does(batch: int) -> None:
    errors = _errors()
    expected = _reference_cusum(errors, run_length=1e4, ratio=2.0, warmup=200)
    assert len(expected) >= 2
    cusum = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    found = []
    for start in range(0, len(errors), batch):
        for detection in cusum.update(errors[start : start + batch]):
            found.append({**detection, "index": start + detection["index"]})
    assert len(found) == len(expected)
    for got, want in zip(found, expected):
        assert got.keys() == want.keys()
        assert got["index"] == want["index"] and got["labelled_since_reference"] == want["labelled_since_reference"]
        for key in ("statistic", "threshold", "reference_error_rate", "error_rate_since_reference"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), key


def test_before_its_reference_the_threshold_is_wald_s_bound_and_the_statistic_zero() -> None:
    cusum = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    cusum.update([True] * 199)
    assert cusum.threshold == math.log(1e4) and cusum.statistic == 0.0 and cusum.state()["p0"] is None


def test_stop_at_detection_leaves_the_rest_unread() -> None:
    errors = _errors()
    first = _reference_cusum(errors, run_length=1e4, ratio=2.0, warmup=200)[0]["index"]
    cusum = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    (detection,) = cusum.update(errors, stop_at_detection=True)
    assert detection["index"] == first
    assert cusum.state() == {"seen": 0, "errors": 0, "p0": None, "s": 0, "watched": 0, "watched_errors": 0}


@pytest.mark.parametrize("name", sorted(concept.DETECTORS))
def test_every_detector_restored_from_its_state_goes_on_as_the_original(name: str) -> None:
    detector = concept.make_detector(name, 1e4, 2.0, 100, history=500)
    errors = _errors()
    first = detector.update(errors[:700])
    restored = concept.make_detector(name, 1e4, 2.0, 100, history=500)
    restored.load_state(detector.state())
    assert dumps(restored.state()) == dumps(detector.state())
    assert restored.update(errors[700:]) == detector.update(errors[700:])
    assert restored.statistic == detector.statistic and restored.threshold == detector.threshold
    assert first or name not in ("cusum", "adwin")  # the change at 400 is found by these two at least


def test_the_reference_error_rate_is_kept_off_zero_and_one() -> None:
    """A warm-up without errors (or with nothing else) must not make the log-likelihood ratios infinite."""
    for error, p0 in ((False, 1 / 200), (True, 1 - 1 / 200)):
        cusum = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
        cusum.update([error] * 500)
        assert cusum.state()["p0"] == p0
    quiet = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    assert quiet.update([False] * 500) == [] and quiet.state()["seen"] == 500


def test_a_cusum_restored_during_its_warm_up_goes_on_as_the_original() -> None:
    errors = _errors()
    cusum = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    cusum.update(errors[:150])
    restored = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    restored.load_state(cusum.state())
    assert restored.update(errors[150:]) == cusum.update(errors[150:])


def test_make_detector_builds_each_detector_from_the_monitor_s_settings() -> None:
    cusum = concept.make_detector("cusum", 1e4, 3.0, 150, history=64)
    assert (cusum.name, cusum.run_length, cusum.ratio, cusum.warmup) == ("cusum", 1e4, 3.0, 150)
    river = concept.make_detector("page_hinkley", 1e4, 3.0, 150, history=64)
    assert (river.name, river.history) == ("page_hinkley", 64)


def test_a_river_detection_carries_the_documented_fields_and_the_stream_goes_on_after_it() -> None:
    errors = _errors()
    found = concept.make_detector("adwin", 1e4, 2.0, 100, history=5000).update(errors)
    assert len(found) >= 2  # without stop_at_detection, every detection of the stream
    first = found[0]
    i = first["index"]
    assert first == {
        "index": i,
        "statistic": 1.0,
        "threshold": 0.5,
        "reference_error_rate": None,
        "error_rate_since_reference": float(np.mean(errors[: i + 1])),
        "labelled_since_reference": i + 1,
    }


def test_a_river_detector_keeps_the_recent_half_of_its_history_when_full() -> None:
    detector = concept.RiverDetector("page_hinkley", history=12)
    detector.update([0] * 11)
    assert detector.state()["n"] == 11
    detector.update([0])
    assert detector.state()["n"] == 6


def test_kswin_is_seeded_the_same_runs_give_the_same_detections() -> None:
    errors = _errors() * 2
    runs = [concept.make_detector("kswin", 1e4, 2.0, 100, history=5000).update(errors) for _ in range(2)]
    assert runs[0] == runs[1] and runs[0]
