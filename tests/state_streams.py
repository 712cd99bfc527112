"""Helpers of the state-topic and exactly-once tests: a drifting stream spread over partitions, the counts it
should give, and the state a group committed to its state topic."""

from __future__ import annotations

import orjson

from streamdrift.cli.replay import event_time_ms
from streamdrift.core.dormant import Dormant
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.synthetic import generate
from streamdrift.runtime.statetopic import StateTopic
from streams import differences, state_bytes
from worker_process import worker_settings


def topic(env: dict, name: str) -> str:
    return env[f"STREAMDRIFT_TOPICS__{name.upper()}"]


def drift_items(env: dict, n: int, seed: int, start_time: float | None = None) -> list[tuple]:
    """The demo stream (credit-risk drifts at its 1000th prediction), three copies of each model so that every
    partition has some: (topic, key, value) in production order.

    ``start_time``: the stream's first event time, and each item stamped with its event time as its Kafka
    timestamp, (topic, key, value, timestamp_ms), 500 predictions a second. Unstamped, the records take the
    time they are produced at: a burst of a few tens of milliseconds, all in one or two epochs of the merge
    (``merge_epoch_ms``), which the log's rule then cannot release before the end of the backlog."""
    names = {"prediction": topic(env, "predictions"), "feedback": topic(env, "feedback")}
    stamped = start_time is not None
    out: list[tuple] = []
    for kind, e in generate(n, seed=seed, drift_at=1000, rate=500.0, start_time=start_time or 1_700_000_000.0):
        stamp = (event_time_ms(e["timestamp"]),) if stamped else ()
        for copy in range(3):
            event = {**e, "model_id": f"{e['model_id']}-{copy}", "event_id": f"{e['event_id']}-{copy}"}
            out.append((names[kind], event["model_id"].encode(), orjson.dumps(event), *stamp))
    return out


def split_at_epochs(items: list[tuple], parts: int, epoch_ms: int) -> list[list[tuple]]:
    """Stamped ``items`` in ``parts`` of about equal size, each cut where the merge's epoch changes.

    Produced apart, each part ends in an idle release (both topics caught up). Cut inside an epoch, the rest
    of that epoch would come after it was released, and be processed after it, where a run over the whole
    backlog processes the epoch's predictions before its feedback: another order, another state."""
    cuts = [0]
    for k in range(1, parts):
        i = max(k * len(items) // parts, cuts[-1] + 1)
        while i < len(items) and items[i][3] // epoch_ms == items[i - 1][3] // epoch_ms:
            i += 1
        cuts.append(i)
    cuts.append(len(items))
    return [items[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def expected_counts(env: dict, items: list[tuple]) -> dict[str, tuple[int, int]]:
    """Per model, (predictions, feedback) in ``items``: what the workers must count."""
    out: dict[str, list[int]] = {}
    for t, key, *_ in items:
        out.setdefault(key.decode(), [0, 0])[t == topic(env, "feedback")] += 1
    return {m: (c[0], c[1]) for m, c in out.items()}


def topic_state(env: dict, partitions: int) -> dict[int, tuple[dict[str, int], bytes]]:
    """Per partition of the state topic: the input offsets (by the topic's kind, not its prefix) and the models'
    state bytes committed there, read under the seal of the workers started with ``env``."""
    settings = worker_settings(env)
    restored = StateTopic(settings, settings.state_seal()).restore(dict.fromkeys(range(partitions)))
    out = {}
    for p, (snap, _) in restored.items():
        if snap is None:  # no model of the stream hashes to p
            continue
        # a model record carries its summary, so the restore keeps it encoded (``core/dormant.py``): decode it
        states = {m: st.load(st.value) if isinstance(st, Dormant) else st for m, st in snap.models.items()}
        monitors = {m: ModelMonitor.from_state(m, settings.monitor, st) for m, st in states.items()}
        offsets = {t.rsplit(".", 1)[1]: o for t, o in snap.offsets.items()}
        out[p] = (offsets, state_bytes(monitors))
    return out


def assert_same_state(ours: dict, reference: dict) -> None:
    """``topic_state``s equal, byte for byte; where not, the failure names the partitions, models and paths in
    their states that differ (pytest's own diff of the bytes says none of that, and is slow)."""
    same = ours == reference
    assert same, "\n".join(["the states differ:", *differences(ours, reference)])
