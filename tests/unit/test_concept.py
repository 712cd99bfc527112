"""Concept detectors: one registry by name, every entry a ConceptDetector, CUSUM the same whatever the batching."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from streamdrift.core import concept
from streamdrift.core.config import MonitorSettings
from streamdrift.core.errors import ConfigError


def test_the_registry_holds_exactly_the_names_the_settings_accept() -> None:
    accepted = typing.get_args(MonitorSettings.model_fields["concept_detector"].annotation)
    assert tuple(concept.DETECTORS) == accepted


@pytest.mark.parametrize("name", sorted(concept.DETECTORS))
def test_every_registered_detector_is_a_concept_detector_that_round_trips_its_state(name: str) -> None:
    detector = concept.make_detector(name, 1e6, 2.0, 100, history=500)
    assert isinstance(detector, concept.ConceptDetector)
    assert detector.name == name
    errors = np.random.default_rng(5).random(700) < 0.2
    detector.update(errors[:400])
    restored = concept.make_detector(name, 1e6, 2.0, 100, history=500)
    restored.load_state(detector.state())
    assert restored.update(errors[400:]) == detector.update(errors[400:])
    assert restored.statistic == detector.statistic


def test_an_unknown_name_is_refused_with_the_names_to_choose_from() -> None:
    with pytest.raises(ConfigError, match=r"unknown concept detector 'ADWIN': choose one of cusum, adwin, "):
        concept.make_detector("ADWIN", 1e6, 2.0, 500)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cusum_in_batches_of_one_to_64_rows_equals_one_batch(seed: int) -> None:
    """Alarms, statistics and state whatever the batching (fixed-point sums are exact)."""
    rng = np.random.default_rng(seed)
    errors = np.concatenate([rng.random(3000) < 0.1, rng.random(3000) < 0.4, rng.random(2000) < 0.1])
    whole, pieces = concept.BernoulliCusum(2000, 2.0, 300), concept.BernoulliCusum(2000, 2.0, 300)
    found_whole = whole.update(errors)
    found_pieces, start = [], 0
    while start < len(errors):
        size = int(rng.integers(1, 65))
        found_pieces += [{**f, "index": f["index"] + start} for f in pieces.update(errors[start : start + size])]
        start += size
    assert found_whole
    assert found_pieces == found_whole
    assert pieces.state() == whole.state()
