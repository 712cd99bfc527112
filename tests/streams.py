"""Helpers that turn the demo generator into decoded batches, as the worker sees them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import orjson

from streamdrift.core import state as snapshot
from streamdrift.core.config import MonitorSettings
from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.synthetic import generate

PRED, FB = "predictions", "feedback"


def demo_messages(n_events: int, **kwargs) -> list[RawMessage]:
    """The demo stream as raw messages of a single partition per topic, offsets in order."""
    offsets = {PRED: 0, FB: 0}
    out = []
    for kind, event in generate(n_events, **kwargs):
        topic = PRED if kind == "prediction" else FB
        out.append(RawMessage(topic, 0, offsets[topic], event["model_id"].encode(), orjson.dumps(event)))
        offsets[topic] += 1
    return out


def model_prediction(topic: str, partition: int, offset: int, model: str, t: float) -> RawMessage:
    """A prediction of ``model`` at event time ``t`` (one feature, ``x`` = 1.0), with no key and the event
    time as its record timestamp: for tests where which models come when matters, not their values."""
    value = {
        "event_id": f"{model}-{offset}",
        "model_id": model,
        "timestamp": t,
        "features": {"x": 1.0},
        "prediction": 1,
    }
    return RawMessage(topic, partition, offset, None, orjson.dumps(value), int(t * 1000))


def run_monitors(
    messages: list[RawMessage],
    batch_size: int,
    settings: MonitorSettings,
    monitors: dict[str, ModelMonitor] | None = None,
) -> tuple[dict[str, ModelMonitor], list[dict]]:
    """Feed ``messages`` in consecutive batches of ``batch_size``, as the worker does."""
    monitors = {} if monitors is None else monitors
    events: list[dict] = []
    for i in range(0, len(messages), batch_size):
        chunk = messages[i : i + batch_size]
        p_batches, p_rej = decode_predictions([m for m in chunk if m.topic == PRED])
        f_batches, f_rej = decode_feedback([m for m in chunk if m.topic == FB])
        assert not p_rej and not f_rej, (p_rej, f_rej)
        for b in p_batches:
            events += monitors.setdefault(b.model_id, ModelMonitor(b.model_id, settings)).observe_predictions(b)
        for b in f_batches:
            events += monitors.setdefault(b.model_id, ModelMonitor(b.model_id, settings)).observe_feedback(b)
    return monitors, events


def state_bytes(monitors: dict[str, ModelMonitor]) -> bytes:
    """The monitors' states as snapshots store them (arrays keep their dtype): equal states, equal bytes."""
    return snapshot.dumps({m: mon.state() for m, mon in monitors.items()})


def differences(a: object, b: object, path: str = "", limit: int = 20) -> list[str]:
    """Where ``a`` and ``b`` differ, as paths with both values (cut short), at most ``limit``: a failure that says
    what differs, in milliseconds (pytest's own diff of two large /status documents or state bytes ran for more
    than half an hour). Arrays differ by dtype or bytes; bytes that are states (``snapshot.dumps``) are compared
    as the states they hold."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [
            f"{path}/{k}: only in {'the first' if k in a else 'the second'}" for k in sorted(set(a) ^ set(b), key=str)
        ]
        for k in sorted(set(a) & set(b), key=str):
            out += differences(a[k], b[k], f"{path}/{k}", limit)
        return out[:limit]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}[{i}]", limit)
        return out[:limit]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):  # (== of an array is no bool)
        same = type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape  # type: ignore[union-attr]
        if same and a.tobytes() == b.tobytes():  # type: ignore[union-attr]
            return []
        return [f"{path}: {a!r}"[:250] + f" != {b!r}"[:250]]
    if isinstance(a, bytes) and isinstance(b, bytes) and a != b:
        try:
            return differences(snapshot.loads(a), snapshot.loads(b), path, limit) or [
                f"{path}: equal states, other bytes"
            ]
        except Exception:  # noqa: BLE001 (not states: where the bytes part)
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            return [f"{path}: {len(a)} and {len(b)} bytes, the first difference at byte {at}"]
    return [] if a == b or (a != a and b != b) else [f"{path}: {str(a)[:200]} != {str(b)[:200]}"]


GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"


def golden_module(name: str) -> ModuleType:
    """A script of tests/fixtures/golden (``make_golden``, ``make_records``: what writes a golden file) as a module."""
    spec = importlib.util.spec_from_file_location(name, GOLDEN / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
