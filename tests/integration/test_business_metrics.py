"""Business metrics on the broker (issue 23 item 4): feedback values produced to Kafka reach the worker's
/metrics as streamdrift_model_metric{metric="value"|"cost"...}, priced by the model's cost matrix from the
settings; a feedback whose value is not a number goes to the dead-letter topic naming the field."""

from __future__ import annotations

import signal

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker_process import WorkerProcess, produce, read_topic, streamdrift, worker_env

MATRIX = {"0": {"0": 0.0, "1": 1.0}, "1": {"0": 5.0, "1": 0.0}}


def model_metrics(worker: WorkerProcess, model_id: str) -> dict[tuple[str, str], float]:
    families = text_string_to_metric_families(worker.get("/metrics")[1].decode())
    return {
        (s.labels["metric"], s.labels["scope"]): s.value
        for f in families
        if f.name == "streamdrift_model_metric"
        for s in f.samples
        if s.labels["model_id"] == model_id
    }


@pytest.mark.kafka
def test_feedback_values_and_costs_reach_the_exported_metrics(kafka_bootstrap, unique_name, tmp_path):
    env = worker_env(
        kafka_bootstrap,
        unique_name("cost"),
        tmp_path / "snapshots",
        models=orjson.dumps({"shop": {"cost_matrix": MATRIX, "cost_tolerance": 1.0}}).decode(),
        **{f"monitor__{k}": v for k, v in {"reference_size": 100, "window_size": 100, "subwindows": 2}.items()},
    )
    done = streamdrift(env, "topics", "create", "--partitions", "1")
    assert done.returncode == 0, done.stderr
    predictions, feedback = env["STREAMDRIFT_TOPICS__PREDICTIONS"], env["STREAMDRIFT_TOPICS__FEEDBACK"]
    items, cost, value = [], 0.0, 0.0
    for i in range(300):
        label, prediction = i % 2, (i % 2 if i % 5 else 1 - i % 2)  # one in five wrong
        common = {"event_id": f"o{i}", "model_id": "shop", "timestamp": 1_700_000_000 + i}
        items.append((predictions, b"shop", orjson.dumps({**common, "features": {"x": i}, "prediction": prediction})))
        items.append((feedback, b"shop", orjson.dumps({**common, "label": label, "value": 0.25 * (i % 8)})))
        cost, value = cost + MATRIX[str(label)][str(prediction)], value + 0.25 * (i % 8)
    bad = {"event_id": "o1", "model_id": "shop", "timestamp": 1_700_000_001, "label": 1, "value": "12 EUR"}
    items.append((feedback, b"shop", orjson.dumps(bad)))
    produce(kafka_bootstrap, items)

    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        worker.wait_for(
            lambda: model_metrics(worker, "shop").get(("value_sum", "cumulative")) == value,
            90,
            "every feedback value summed in /metrics",
        )
        metrics = model_metrics(worker, "shop")
        # 60 wrong: 30 false alarms (cost 1) and 30 missed positives (cost 5)
        assert metrics[("cost_sum", "cumulative")] == cost == 180.0 and metrics[("cost", "cumulative")] == 0.6
        assert metrics[("value", "window")] == sum(0.25 * (i % 8) for i in range(200, 300)) / 100 == 0.855
        ((dead, headers),) = read_topic(kafka_bootstrap, env["STREAMDRIFT_TOPICS__DEAD_LETTER"], expect=1)
        assert headers["streamdrift.reason"] == "field 'value' must be a number, got string"
        assert dead.value == orjson.dumps(bad)
        assert worker.stop() == 0
    finally:
        worker.stop(signal.SIGKILL)
