"""The drift events of the core on fixed streams are those of the commit before the package split (issue 15).

``tests/fixtures/golden/drift_events.json`` was written by ``make_golden.py`` with the interpreter of commit
b47db1e (the flat layout), the last commit before the redesign. A change that alters a drift event (its id, kind,
statistic, window or anything else) fails here; regenerate the file only for a change that means to, and say why in
the commit.
"""

from __future__ import annotations

import orjson
import pytest

from streams import GOLDEN, golden_module

make_golden = golden_module("make_golden")
EXPECTED = orjson.loads((GOLDEN / "drift_events.json").read_bytes())


def test_the_golden_file_covers_every_stream_and_each_raises_every_drift_kind_of_the_demo():
    assert sorted(EXPECTED) == sorted(name for name, _, _ in make_golden.STREAMS)
    for events in EXPECTED.values():
        assert {e["kind"] for e in events} == {
            "data_drift", "prediction_drift", "label_drift", "concept_drift", "performance_degradation"
        }  # fmt: skip


@pytest.mark.parametrize("name, arguments, poll", make_golden.STREAMS, ids=[s[0] for s in make_golden.STREAMS])
def test_drift_events_are_those_of_the_commit_before_the_redesign(name, arguments, poll):
    # through orjson, as the file was written: the same JSON types (a float stays a float)
    assert orjson.loads(orjson.dumps(make_golden.drift_events(arguments, poll))) == EXPECTED[name]
