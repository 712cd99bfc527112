"""core/concept.py pinned: every detector's state round trip, the registry's settings, River's detections, the
tests that kill mutants `make mutation` found surviving there. (Tests of the CUSUM's arithmetic against a plain
re-implementation were withdrawn when the CUSUM was redesigned, ed7f012; docs/mutation.md says what that leaves.)
"""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core import concept
from streamdrift.core.state import dumps


def _errors() -> list[bool]:
    rng = np.random.default_rng(18)
    rates = [0.1] * 400 + [0.5] * 300 + [0.1] * 300 + [0.9] * 300
    return [bool(rng.random() < r) for r in rates]


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
