"""Columnar batches: what the decoder hands to the monitors.

One batch holds the events of one model from one input topic partition, in
offset order. Columns are aligned: row ``i`` of every column is the ``i``-th
event. Feature values stay as the JSON gave them (number, string, bool or
``None`` when absent) in one Python list per feature; the monitor turns each
column into a numpy array once it knows the feature's type. A column that held
only floats and nulls may come as a read-only float64 array instead, NaN for
null (JSON cannot write a NaN, so nothing is lost): `column_values` is its list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

# One feature's values in a batch: the JSON values, or (numbers and nulls only) float64 with NaN for null
FeatureColumn: TypeAlias = list[Any] | NDArray[np.float64]
# A Kafka record's headers as confluent-kafka gives them: (name, value) pairs, in order
Headers: TypeAlias = list[tuple[str, bytes | None]]


def column_values(values: FeatureColumn) -> list[Any]:
    """A feature column as a list: an array column's floats, None where NaN.

    >>> column_values(np.array([1.5, np.nan]))
    [1.5, None]
    """
    if isinstance(values, list):
        return values
    return [None if v != v else v for v in values.tolist()]


@dataclass(slots=True)
class RawMessage:
    """A Kafka record as the worker received it, or a line of a replay file."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    headers: Headers | None = None  # kept to forward a misrouted record unchanged (``routing.py``)


@dataclass(slots=True)
class Rejected:
    """A message that failed validation: goes to the dead-letter topic."""

    message: RawMessage
    reason: str


@dataclass(slots=True)
class PredictionBatch:
    model_id: str
    partition: int
    offsets: NDArray[np.int64]  # source offsets
    event_ids: list[str]
    model_versions: list[str | None]
    timestamps: NDArray[np.float64]  # event time in epoch seconds
    timestamp_values: list[str | int | float]  # the timestamps as the events wrote them (RFC 3339 string or number)
    features: dict[str, FeatureColumn]  # name -> values (None where the event lacks it), see column_values
    predictions: list[Any]  # class (str | int | bool) or value (float)
    scores: NDArray[np.float64]  # NaN where absent
    class_scores: list[dict[str, float] | None]
    segments: list[dict[str, Any] | None]
    # names of the features whose values in this batch are all numbers or None (None: not known)
    numeric_features: frozenset[str] | None = None
    # each row's attributions (feature -> contribution; None where the event has none); None: no row has any
    attributions: list[dict[str, float] | None] | None = None

    def __len__(self) -> int:
        return len(self.event_ids)


@dataclass(slots=True)
class FeedbackBatch:
    model_id: str
    partition: int
    offsets: NDArray[np.int64]
    event_ids: list[str]
    model_versions: list[str | None]
    timestamps: NDArray[np.float64]  # epoch seconds
    timestamp_values: list[str | int | float]  # as the events wrote them
    labels: list[Any]
    # A feedback event may carry the prediction it grades; then it needs no join.
    predictions: list[Any] = field(default_factory=list)  # None where absent
    scores: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    # what each graded prediction was worth (revenue, loss, minutes), NaN where absent; empty: none has one
    values: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))

    def __len__(self) -> int:
        return len(self.event_ids)
