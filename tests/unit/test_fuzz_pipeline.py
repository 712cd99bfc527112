"""Issue 17: hostile input never escapes as an exception, and no message is lost.

Property: whatever a poll holds (valid events with hostile values, wrong types, deep
nesting, long strings, NULs and unicode, far timestamps, byte-level mutations of valid
events), ``PartitionEngine`` (decode -> monitor, the worker's and replay's loop) raises
nothing, quarantines no model (nothing the decoder accepts makes a monitor raise), and
every message is either counted by a monitor or rejected (dead-lettered): counted +
rejected = sent. Idle eviction is on (model_idle_ttl_s), and hostile event times fire it. Run with the C reader and without it (``decode._speedups`` set to None).

Hypothesis draws the seed and the mix of each example; a seeded numpy generator writes
the example's messages from them, so an example of 500 messages costs one draw. With the
"ci" profile (tests/conftest.py: derandomized) each path gets 200 examples: 100,000
messages a path, 200,000 in all (about 7 s a path on the CI machine).
"""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage

P, F = "predictions", "feedback"
MESSAGES_PER_EXAMPLE = 500
EXAMPLES = 200
NOW_S = 1_700_000_000
SETTINGS = MonitorSettings(reference_size=50, window_size=100, subwindows=5, cooldown_events=0)

HOSTILE_VALUES: list[object] = [
    1e15,
    -1e15,
    1e16,
    -1e155,
    1e155,
    1.7976931348623157e308,
    5e-324,
    -0.0,
    0,
    2**63 - 1,
    -(2**63),
    "NaN",
    "Infinity",
    "-inf",
    "1e999",
    "",
    "\x00",
    "a\x00b",
    "é" * 300,
    "𝔘" * 1024,
    "x" * 1025,
    "\ud7ff",
    True,
    False,
    None,
    [],
    {},
    [[[[[[1]]]]]],
    {"a": {"b": {"c": [1, {"d": None}]}}},
    [1.5],
    {"x": 1},
]
HOSTILE_TIMES: list[object] = [
    0,
    -1,
    253_402_300_799,
    253_402_300_800,
    NOW_S + 86_400,
    NOW_S + 86_401,
    1e20,
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2023-11-14T22:13:20+23:59",
    "now",
    None,
    True,
    1.5,
]


def _event(rng: np.random.Generator, i: int, topic: str, hostility: float) -> dict:
    model = f"m{rng.integers(4)}"
    if topic == P:
        event: dict = {
            "event_id": f"e{i}",
            "model_id": model,
            "timestamp": NOW_S + i,
            "features": {"x": float(rng.normal()), "c": str(rng.integers(5)), "n": int(rng.integers(100))},
            "prediction": float(rng.normal()) if model == "m0" else int(rng.integers(2)),
        }
        if rng.random() < 0.5:
            event["score"] = float(rng.random())
    else:
        event = {"event_id": f"e{rng.integers(i + 1)}", "model_id": model, "timestamp": NOW_S + i}
        event["label"] = float(rng.normal()) if model == "m0" else int(rng.integers(2))
    if rng.random() < hostility:
        where = rng.choice(["features", "prediction", "label", "score", "timestamp", "event_id", "model_id", "extra"])
        value = HOSTILE_VALUES[rng.integers(len(HOSTILE_VALUES))]
        if where == "features":
            event.setdefault("features", {})[f"f{rng.integers(3)}"] = value
        elif where == "timestamp":
            event["timestamp"] = HOSTILE_TIMES[rng.integers(len(HOSTILE_TIMES))]
        elif where == "extra":
            event["segment"] = {"country": value}
        else:
            event[str(where)] = value
    return event


def _mutate(rng: np.random.Generator, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(4)
        at = int(rng.integers(len(data) + 1))
        if kind == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # truncate
            del data[at:]
        elif kind == 2:  # insert hostile bytes
            data[at:at] = [b"\x00", b"\xff", b'"', b"{", b"]", b"1e999", b"\\u0000", b"\xed\xa0\x80"][rng.integers(8)]
        else:  # duplicate a stretch
            data[at:at] = data[at : at + int(rng.integers(1, 32))]
    return bytes(data)


def _messages(seed: int, hostility: float, mutation: float, topic: str, first: int) -> list[RawMessage]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(first, first + MESSAGES_PER_EXAMPLE // 2):
        event = _event(rng, i, topic, hostility)
        try:
            raw = orjson.dumps(event)
        except TypeError:  # an integer beyond 64 bits or a lone surrogate: orjson cannot write it
            raw = repr(event).encode("utf-8", "surrogatepass")
        if rng.random() < mutation:
            raw = _mutate(rng, raw)
        value = None if rng.random() < 0.01 else raw
        key = [None, event.get("model_id", "").encode() if isinstance(event.get("model_id"), str) else b"k", b"m9"][
            rng.integers(3)
        ]
        out.append(RawMessage(topic, 0, i, key, value, (NOW_S + i) * 1000 if rng.random() < 0.9 else 0))
    return out


# the fixture only chooses the decoding path, the same for every example: nothing to reset between them
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    hostility=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    mutation=st.sampled_from([0.0, 0.02, 0.2]),
    batch_size=st.sampled_from([7, 100, 1000]),
)
def test_no_exception_escapes_and_every_message_is_counted_or_rejected(
    path, seed: int, hostility: float, mutation: float, batch_size: int
) -> None:
    counted = [0]

    def count(topic: str, batch, monitored: bool, events: list) -> None:
        assert monitored  # ten thousand models allowed, four used
        counted[0] += len(batch)

    engine = PartitionEngine(
        0, P, F, monitor_factory(SETTINGS), epoch_ms=1000, batch_size=batch_size, model_idle_ttl_s=3600, on_batch=count
    )
    predictions = _messages(seed, hostility, mutation, P, 0)
    feedback = _messages(seed + 1, hostility, mutation, F, MESSAGES_PER_EXAMPLE)
    engine.add(P, predictions)
    engine.add(F, feedback)
    out = engine.release(ended={P, F})
    sent = len(predictions) + len(feedback)
    assert out.records == sent
    assert engine.processing_errors == 0, [r.reason for r in out.rejected if r.reason.startswith("processing")]
    # hostile event times move the clock, and models get evicted: count what the monitors were given
    assert counted[0] + len(out.rejected) == sent
    for event in out.events:
        orjson.dumps(event)  # a drift event always encodes: no NaN or infinity (orjson would write null)
        assert all(np.isfinite(event[k]) for k in ("statistic", "threshold") if event[k] is not None)
