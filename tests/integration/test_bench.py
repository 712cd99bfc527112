"""benchmarks/bench.py end to end on a small stream against the session broker, so it cannot rot.

Benchmarks are not tests: nothing here asserts a speed, only that every phase
runs and reports sane figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.kafka

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
RATES = ("floor_events_per_s", "worker_events_per_s", "baseline_events_per_s", "ratio_to_floor", "ratio_to_baseline")


def test_bench_runs_every_phase_and_ends_with_its_figures_as_json(kafka_bootstrap):
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--bootstrap",
            kafka_bootstrap,
            "--events",
            "2000",
            "--models",
            "2",
            "--partitions",
            "2",
            "--latency-seconds",
            "3",
            "--latency-rate",
            "8000",
            "--memory",
            "--memory-models",
            "5,10",
            "--fleet-models",
            "2",
            "--fleet-events",
            "500",
            "--profile",
            "--profile-events",
            "500",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])

    assert result["predictions"] == 2000
    assert result["events"] == result["predictions"] + result["feedback"]
    assert 800 < result["feedback"] < 1200  # feedback for about half the predictions
    for key in RATES:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["ratio_to_floor"] == pytest.approx(
        result["worker_events_per_s"] / result["floor_events_per_s"], rel=0.01
    )
    assert result["worker_cpu_us_per_event"] > 0 and result["baseline_cpu_us_per_event"] > 0

    # the fleet table: the --models row is the throughput phase's; --memory adds its larger model count
    fleet = {row["models"]: row for row in result["fleet"]}
    assert sorted(fleet) == [2, 10]
    assert fleet[2]["worker_events_per_s"] == result["worker_events_per_s"] and fleet[2]["events"] == result["events"]
    assert 650 < fleet[10]["events"] < 850  # 500 predictions, and feedback for about half of them
    for key in ("worker_events_per_s", "ratio_to_floor", "ratio_to_baseline", "worker_cpu_us_per_event"):
        assert fleet[10][key] > 0, key
    for row in fleet.values():  # to the worker's exit: the window that ends when every event is counted, and more
        assert row["worker_cpu_us_per_event_to_exit"] >= row["worker_cpu_us_per_event"]

    # Both models drift once in the paced stream; each drift is read back from the alerts topic.
    assert result["latency_drifts_injected"] == 2
    assert result["latency_drift_events"] >= 2
    assert result["latency_event_to_alert_n"] == result["latency_drift_events"]
    assert 0 < result["latency_event_to_alert_p50_s"] <= result["latency_event_to_alert_p99_s"]
    assert result["latency_arrival_to_metrics_n"] > 0 and result["latency_arrival_to_metrics_p99_s"] > 0

    assert result["memory_10_rss_per_model_bytes"] > 0
    assert result["state_bytes_per_model"] > 1000
    assert result["snapshot_10_bytes"] > 10 * 1000 and result["snapshot_10_write_s"] > 0
    assert result["start_to_ready_10_s"] > 0
    # the worker's own checkpoint of the restored models and the probes: its local cache written (each model as
    # the state topic's compressed value since e52f1ea, so no longer comparable with the plain snapshot's bytes)
    assert result["worker_checkpoint_10_bytes"] > 10 * 100
    assert 0 < result["worker_checkpoint_10_pause_s"] < result["worker_checkpoint_10_duration_s"]
    assert result["worker_checkpoint_10_writer_private_bytes"] > 0

    # the in-process split: decode + monitors add up
    split = result["inprocess_decode_us_per_event"] + result["inprocess_monitor_us_per_event"]
    assert 1e6 / result["inprocess_events_per_s"] == pytest.approx(split, rel=0.01)
    # decoding may now cost less than orjson.loads alone (the C reader does not build the dicts)
    assert result["inprocess_decode_us_per_event"] > 0 and result["inprocess_parse_us_per_event"] > 0
    assert result["inprocess_baseline_us_per_event"] > result["inprocess_parse_us_per_event"]
