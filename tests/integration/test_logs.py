"""Structured logs of real processes on a real broker: one JSON object per line, context fields, no secrets.

The secrets are real settings that reach librdkafka: ``kafka.ssl_key_password`` and
``kafka.sasl_password`` are accepted, and ignored, by a PLAINTEXT connection, so the
worker runs normally with them set and every log line can be searched for them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from streams import FB, PRED, demo_messages
from worker_process import WorkerProcess, produce, streamdrift, worker_env

pytestmark = pytest.mark.kafka

SECRETS = {"kafka__ssl_key_password": "hunter2", "kafka__sasl_password": "swordfish-7"}
SMALL = {
    "monitor__reference_size": 500,
    "monitor__window_size": 500,
    "monitor__subwindows": 5,
    "monitor__cooldown_events": 2000,
    "snapshot_interval_s": 0.5,
}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REDACTED = "**********"


def parse_lines(text: str) -> list[dict]:
    """Every line of ``text`` as a JSON object; fails on the first line that is not one."""
    lines = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            doc = json.loads(line)
        except ValueError:
            pytest.fail(f"line {n} is not JSON: {line!r}")
        assert isinstance(doc, dict), f"line {n} is not a JSON object: {line!r}"
        assert TS.match(doc["ts"]) and doc["level"] in {"debug", "info", "warning", "error", "critical"}, line
        assert doc["logger"].startswith("streamdrift") and doc["msg"], line
        lines.append(doc)
    return lines


def by_msg(lines: list[dict], msg: str) -> list[dict]:
    return [line for line in lines if line["msg"] == msg]


@pytest.fixture(scope="module")
def worker_run(kafka_bootstrap, tmp_path_factory) -> tuple[str, int]:
    """The whole output (stdout and stderr) of a worker that restored nothing, raised drift events, routed
    dead letters and stopped on SIGTERM, all with two secrets set; and how many dead letters it routed."""
    tmp = tmp_path_factory.mktemp("logs")
    env = worker_env(kafka_bootstrap, f"sd-logs-{uuid.uuid4().hex[:8]}", tmp / "snapshots", **SMALL, **SECRETS)
    done = streamdrift(env, "topics", "create", "--partitions", "2")
    assert done.returncode == 0, done.stderr
    names = {PRED: env["STREAMDRIFT_TOPICS__PREDICTIONS"], FB: env["STREAMDRIFT_TOPICS__FEEDBACK"]}
    items = [(names[m.topic], m.key, m.value) for m in demo_messages(6000, seed=11, drift_at=1000, rate=500.0)]
    bad = [
        (names[PRED], b"churn", b"{not json"),
        (names[PRED], b"fraud", orjson.dumps({"event_id": "x", "model_id": "fraud", "timestamp": 1, "prediction": 1})),
        (
            names[FB],
            b"churn",
            orjson.dumps({"event_id": "w", "model_id": "churn", "timestamp": "yesterday", "label": 1}),
        ),
    ]
    # Produced before the worker starts, so a fresh broker's start-up warnings land in this process, not there.
    produce(kafka_bootstrap, items[:3000] + bad + items[3000:])
    worker = WorkerProcess(env, tmp / "worker.log")
    try:
        worker.wait_ready()
        worker.wait_for(
            lambda: (
                worker.log().count('"msg":"dead letter"') == len(bad)
                and '"msg":"drift event"' in worker.log()
                and sum(p for p, _ in worker.counts().values()) == 6000
            ),
            90,
            "events, drift, dead letters",
        )
        assert worker.stop() == 0
    finally:
        worker.stop(signal.SIGKILL)
    return worker.log(), len(bad)


def test_worker_logs_one_json_object_per_line(worker_run):
    text, _ = worker_run
    lines = parse_lines(text)
    assert [line["msg"] for line in lines[:1]] == ["worker started"]
    assert lines[-1]["msg"] == "stopping: final checkpoint written"


def test_worker_logs_its_settings_redacted_and_never_a_secret(worker_run):
    text, _ = worker_run
    for secret in SECRETS.values():
        assert secret not in text
    started = by_msg(parse_lines(text), "worker started")[0]
    kafka = started["settings"]["kafka"]
    assert (kafka["ssl_key_password"], kafka["sasl_password"]) == (REDACTED, REDACTED)  # set, and hidden
    assert kafka["bootstrap_servers"] and started["metrics"].startswith("http://127.0.0.1:")


def test_worker_log_lines_name_their_model_and_partition(worker_run):
    text, dead_letters = worker_run
    lines = parse_lines(text)
    assert by_msg(lines, "partitions assigned")[0]["partitions"] == [0, 1]
    # the state store says where the state was not found (the state topic by default, the local directory)
    fresh = [line for line in lines if line["msg"].endswith(": fresh state")]
    assert sorted(line["partition"] for line in fresh) == [0, 1]
    dead = by_msg(lines, "dead letter")
    assert len(dead) == dead_letters
    for line in dead:
        assert line["level"] == "warning" and line["reason"]
        assert {"topic", "partition", "offset"} <= set(line) and line["partition"] in (0, 1)
    drift = by_msg(lines, "drift event")
    assert drift and {line["model_id"] for line in drift} >= {"credit-risk"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", line["alert_id"]) and line["kind"] for line in drift)


def test_worker_drift_event_lines_name_their_partition(worker_run):
    text, _ = worker_run
    assert all("partition" in line for line in by_msg(parse_lines(text), "drift event"))


def _conf_warning_env(kafka_bootstrap: str, tmp, **settings: object) -> dict[str, str]:
    """A worker environment whose kafka.extra holds a consumer-only property: every producer librdkafka
    creates warns (CONFWARN) that it ignores it. A common configuration, and a log line we do not write."""
    env = worker_env(kafka_bootstrap, f"sd-logs-{uuid.uuid4().hex[:8]}", tmp / "snapshots", **SECRETS, **settings)
    env["STREAMDRIFT_KAFKA__EXTRA"] = '{"session.timeout.ms": "10000"}'
    return env


def test_worker_librdkafka_warnings_are_json_lines_too(kafka_bootstrap, tmp_path):
    env = _conf_warning_env(kafka_bootstrap, tmp_path)
    assert streamdrift(env, "topics", "create", "--partitions", "1").returncode == 0
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        worker.stop()
    finally:
        worker.stop(signal.SIGKILL)
    assert "hunter2" not in worker.log()
    parse_lines(worker.log())


def test_retrain_listener_logs_json_lines_librdkafka_included_and_no_secret(kafka_bootstrap, tmp_path):
    env = _conf_warning_env(kafka_bootstrap, tmp_path)
    env["STREAMDRIFT_KAFKA__SASL_USERNAME"] = "streamdrift"  # without a mechanism: the consumer warns too
    assert streamdrift(env, "topics", "create", "--partitions", "1").returncode == 0
    log_path = tmp_path / "listener.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", "retrain-listener", "--command", "true"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while '"msg":"partitions assigned"' not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    for secret in SECRETS.values():
        assert secret not in text
    lines = parse_lines(text)
    assert by_msg(lines, "retrain listener started")[0]["settings"]["kafka"]["sasl_password"] == REDACTED
    librdkafka = [line for line in lines if line["logger"] == "streamdrift.retrain.kafka"]
    assert any("sasl.username" in line["msg"] for line in librdkafka), text
