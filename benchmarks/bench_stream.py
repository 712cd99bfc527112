"""The benchmark's synthetic stream: seeded numpy generation, encoded as the contract says.

Every model has 20 numeric features (``x00``..``x19``, Gaussian with a mean and
scale of its own) and 4 categorical ones (``c0``..``c3``, six levels with
skewed frequencies), a binary prediction and a score. Events pick their model
at random (seeded), so the models interleave as they would on a shared topic.
Feedback follows for a share of the predictions, later in the same chunk,
with the label only: the prediction it grades is found by ``event_id`` (the
join), as when ground truth comes from another system.

A drift, when asked for, shifts two features of a model by ``DRIFT_SIGMAS``
standard deviations on the rows ``drifted(model, row)`` selects, as
``streamdrift.core.synthetic`` shifts income and debt ratio.

Used by ``benchmarks/bench.py`` and ``benchmarks/bench_profile.py``; nothing here
talks to Kafka except ``produce_all``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import orjson

N_NUMERIC = 20
N_CATEGORICAL = 4
NUMERIC = tuple(f"x{i:02d}" for i in range(N_NUMERIC))
CATEGORICAL = tuple(f"c{i}" for i in range(N_CATEGORICAL))
LEVELS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
LEVEL_P = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])
DRIFTED_FEATURES = ("x00", "x01")
DRIFT_SIGMAS = 3.0
START_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z: event time, not wall clock


def model_ids(n_models: int) -> list[str]:
    return [f"bench-model-{i:02d}" for i in range(n_models)]


@dataclass
class Chunk:
    """Encoded messages of one chunk, predictions first then their feedback."""

    predictions: list[tuple[bytes, bytes]]  # (key, value)
    feedback: list[tuple[bytes, bytes]]

    def __len__(self) -> int:
        return len(self.predictions) + len(self.feedback)


class Stream:
    """Chunks of encoded predictions and feedback for ``n_models`` models.

    Parameters
    ----------
    n_models
        Models sharing the stream.
    seed
        Seed of every random draw: the same arguments give the same bytes.
    feedback_share
        Share of predictions that get feedback.
    drifted
        ``drifted(model_index, rows) -> bool mask``: which rows (per-model
        prediction counts) of a model are drifted; None for no drift.
    rate
        Event-time rate (predictions per second) for the ``timestamp`` field.
    """

    def __init__(
        self,
        n_models: int = 10,
        seed: int = 42,
        feedback_share: float = 0.5,
        drifted: Callable[[int, np.ndarray], np.ndarray] | None = None,
        rate: float = 10_000.0,
    ):
        self.n_models = n_models
        self.seed = seed
        self.feedback_share = feedback_share
        self.drifted = drifted
        self.rate = rate
        self.ids = model_ids(n_models)
        self.keys = [m.encode() for m in self.ids]
        profile_rng = np.random.default_rng(seed + 1)
        self.means = profile_rng.normal(0, 5, (n_models, N_NUMERIC)).round(2)
        self.scales = profile_rng.uniform(0.5, 3, (n_models, N_NUMERIC)).round(2)
        self.rng = np.random.default_rng(seed)
        self.rows = np.zeros(n_models, dtype=np.int64)  # predictions generated so far, per model
        self.produced = 0

    def chunk(self, n: int) -> Chunk:
        """The next ``n`` predictions (and their feedback)."""
        rng = self.rng
        models = rng.integers(self.n_models, size=n)
        rows = self._model_rows(models)
        x = rng.standard_normal((n, N_NUMERIC)) * self.scales[models] + self.means[models]
        if self.drifted is not None:
            cols = [NUMERIC.index(f) for f in DRIFTED_FEATURES]
            for m in np.unique(models):
                sel = np.flatnonzero(models == m)
                shifted = sel[self.drifted(int(m), rows[sel])]
                x[np.ix_(shifted, cols)] += DRIFT_SIGMAS * self.scales[m, cols]
        x = x.round(4).tolist()
        cats = rng.choice(len(LEVELS), size=(n, N_CATEGORICAL), p=LEVEL_P).tolist()
        scores = rng.beta(2, 3, n).round(4)
        labels = (rng.random(n) < scores).astype(int).tolist()
        with_feedback = (rng.random(n) < self.feedback_share).tolist()
        times = (START_TIME + (self.produced + np.arange(n)) / self.rate).round(3).tolist()
        preds = (scores >= 0.5).astype(int).tolist()
        scores = scores.tolist()
        out = Chunk([], [])
        dumps = orjson.dumps
        for i in range(n):
            m = int(models[i])
            model_id = self.ids[m]
            event_id = f"{model_id}-{int(rows[i])}"
            features = dict(zip(NUMERIC, x[i]))
            features.update(zip(CATEGORICAL, (LEVELS[c] for c in cats[i])))
            out.predictions.append(
                (
                    self.keys[m],
                    dumps(
                        {
                            "event_id": event_id,
                            "model_id": model_id,
                            "model_version": "v1",
                            "timestamp": times[i],
                            "features": features,
                            "prediction": preds[i],
                            "score": scores[i],
                        }
                    ),
                )
            )
            if with_feedback[i]:
                out.feedback.append(
                    (
                        self.keys[m],
                        dumps({"event_id": event_id, "model_id": model_id, "timestamp": times[i], "label": labels[i]}),
                    )
                )
        self.produced += n
        return out

    def chunks(self, n_predictions: int, size: int = 10_000) -> Iterator[Chunk]:
        done = 0
        while done < n_predictions:
            n = min(size, n_predictions - done)
            yield self.chunk(n)
            done += n

    def _model_rows(self, models: np.ndarray) -> np.ndarray:
        """Each event's index among its model's predictions, counting earlier chunks."""
        counts = np.bincount(models, minlength=self.n_models)
        order = np.argsort(models, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(len(models), dtype=np.int64)
        rank[order] = np.arange(len(models)) - np.repeat(starts, counts)
        rows = self.rows[models] + rank
        self.rows += counts
        return rows


def producer_config(bootstrap: str, linger_ms: int = 50) -> dict:
    """Like streamdrift's producers: murmur2 partitioner (Java's), keys = model_id."""
    return {
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "batch.size": 1_000_000,
    }


def produce(producer, topic: str, key: bytes, value: bytes, on_delivery=None) -> None:
    while True:
        try:
            if on_delivery is None:
                producer.produce(topic, value, key)
            else:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


def produce_chunk(producer, chunk: Chunk, predictions_topic: str, feedback_topic: str) -> None:
    for key, value in chunk.predictions:
        produce(producer, predictions_topic, key, value)
    for key, value in chunk.feedback:
        produce(producer, feedback_topic, key, value)
    producer.poll(0)


def produce_all(
    bootstrap: str, stream: Stream, n_predictions: int, predictions_topic: str, feedback_topic: str
) -> dict:
    """Produce ``n_predictions`` (and their feedback) as fast as the broker takes them; count deliveries."""
    from confluent_kafka import Producer

    delivered = {"ok": 0, "failed": 0}

    def on_delivery(err, msg) -> None:
        delivered["failed" if err is not None else "ok"] += 1

    producer = Producer({**producer_config(bootstrap), "on_delivery": on_delivery})
    started = time.monotonic()
    predictions = feedback = 0
    for chunk in stream.chunks(n_predictions):
        produce_chunk(producer, chunk, predictions_topic, feedback_topic)
        predictions += len(chunk.predictions)
        feedback += len(chunk.feedback)
    if producer.flush(120):
        raise RuntimeError("producer could not deliver every message within 120 s")
    if delivered["failed"] or delivered["ok"] != predictions + feedback:
        raise RuntimeError(f"{delivered['failed']} messages were not delivered")
    return {"predictions": predictions, "feedback": feedback, "seconds": time.monotonic() - started}
