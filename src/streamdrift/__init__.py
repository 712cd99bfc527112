"""streamdrift: know when a production ML model needs retraining.

The public Python API is ``__all__``: a `Monitor` watches one model from events
given as dicts shaped like the event contract (``schemas/``), through the same
decoder and detection core as the Kafka worker, and returns drift events as the
worker publishes them. Its `MonitorSettings` and `ModelSettings` are the
``[monitor]`` and ``[models.<id>]`` sections of the worker's configuration.

The package reads as the data flows: ``core`` (decode → monitor → policy →
state; no Kafka, no environment), ``runtime`` (the worker, Kafka clients,
checkpoints, the exporter, settings), ``cli`` (one module per command) and
``retrain`` (the retrain listener).

Examples
--------
Tenure drops by six months after the 1,500th prediction:

>>> import random
>>> from streamdrift import Monitor, MonitorSettings
>>> rng = random.Random(7)
>>> def prediction(i, shift=0.0):
...     tenure = round(rng.gauss(24 + shift, 6), 1)
...     return {"event_id": f"c-{i}", "model_id": "churn", "timestamp": 1_700_000_000 + i,
...             "features": {"tenure": tenure, "plan": rng.choice(["basic", "pro"])},
...             "prediction": int(tenure < 18)}
>>> monitor = Monitor("churn", MonitorSettings(reference_size=500, window_size=200, subwindows=4))
>>> monitor.observe(prediction(i) for i in range(1500))
[]
>>> drift = monitor.observe(prediction(i, shift=-6) for i in range(1500, 2000))
>>> [(e["kind"], e["feature"], e["window"]["end_offset"], e["action"]) for e in drift]
[('data_drift', 'tenure', 1599, 'investigate'), ('prediction_drift', 'prediction', 1599, 'investigate')]
>>> monitor.observe([
...     {"event_id": "c-1999", "model_id": "churn", "timestamp": 1_700_002_000, "label": 1},
...     {"event_id": "c-2000", "model_id": "churn", "timestamp": "yesterday"},
... ])
[]
>>> monitor.rejected
[Rejection(kind='prediction', offset=2000, reason="field 'timestamp' must be an RFC 3339 date-time with a time zone, year 1970 to 9999, got string")]
>>> summary = Monitor.restore(monitor.save()).summary()
>>> summary.predictions, summary.labelled, summary.rejected, summary.drift_events
(2000, 1, 1, {'data_drift': 1, 'prediction_drift': 1})
"""

from streamdrift.core.api import FeatureScore, LastDrift, Monitor, MonitorSummary, Rejection
from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.errors import SnapshotError, StreamdriftError

__version__ = "0.1.0"

__all__ = [
    "FeatureScore",
    "LastDrift",
    "ModelSettings",
    "Monitor",
    "MonitorSettings",
    "MonitorSummary",
    "Rejection",
    "SnapshotError",
    "StreamdriftError",
    "__version__",
]
