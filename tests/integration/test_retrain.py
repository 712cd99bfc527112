"""The retrain listener: unit checks, then end to end on a real Kafka broker (conftest's ``kafka_bootstrap``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamdrift.core.errors import StreamdriftError
from streamdrift.core.policy import drift_event, rfc3339
from streamdrift.retrain.listener import CommandHook, HookError, RetrainListener, WebhookHook, parse
from streamdrift.runtime.settings import load_settings

SCHEMA = orjson.loads((Path(__file__).resolve().parents[2] / "schemas" / "drift_event.schema.json").read_bytes())
T0 = 1_790_000_000.0

# The hook of the tests: appends what it got (stdin, env) as a JSON line to OUT. It counts its calls per
# model in COUNTER_DIR, and fails the first FAIL_FIRST calls of the models in FAILING (comma-separated).
HOOK = """
import json, os, sys
out, counter_dir, fail_first, failing = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
event = json.load(sys.stdin)
counter = os.path.join(counter_dir, event["model_id"])
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
if event["model_id"] in failing and n <= fail_first:
    print(f"retraining service down (call {n})", file=sys.stderr)
    sys.exit(1)
env = {k: os.environ[k] for k in ("STREAMDRIFT_HOOK_MODEL_ID", "STREAMDRIFT_HOOK_ALERT_ID", "STREAMDRIFT_HOOK_ATTEMPT")}
with open(out, "a") as f:
    f.write(json.dumps({"stdin": event, "env": env}) + "\\n")
"""


def drift(model_id: str, action: str, t: float, offset: int) -> dict:
    """A drift event valid per the schema; ``offset`` makes its alert_id."""
    kind, detector, feature = (
        ("concept_drift", "adwin", None) if action == "retrain" else ("data_drift", "psi", "income")
    )
    window = {
        "start_time": rfc3339(t - 60),
        "end_time": rfc3339(t),
        "count": 500,
        "start_offset": max(0, offset - 499),
        "end_offset": offset,
    }
    event = drift_event(
        model_id=model_id,
        model_version="v1",
        kind=kind,
        detector=detector,
        feature=feature,
        statistic=0.4,
        threshold=0.25,
        p_value=None,
        window=window,
        stream="predictions",
        partition=0,
        top_features=[{"feature": "income", "score": 0.4}] if feature else [],
        action=action,
        detected_at=rfc3339(t),
    )
    event["emitted_at"] = rfc3339(time.time())
    jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
    return event


# -- without a broker ------------------------------------------------------


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"{not json", "invalid JSON"),
        (b"[1]", "not a JSON object"),
        (None, "invalid JSON"),
        (b'{"alert_id": "a", "model_id": "m", "detected_at": 1}', "'action'"),
        (b'{"alert_id": "a", "model_id": 7, "action": "retrain", "detected_at": 1}', "'model_id'"),
        (b'{"alert_id": "a", "model_id": "m", "action": "retrain", "detected_at": "yesterday"}', "'detected_at'"),
        (
            b'{"alert_id": "a", "model_id": "m", "action": "retrain", "detected_at": "2026-01-01T00:00:00"}',
            "no time zone",
        ),
    ],
)
def test_records_that_are_not_drift_events_are_recognised(value, reason):
    event, why = parse(value)
    assert event is None and reason in why


def test_command_hook_gets_the_event_on_stdin_and_ids_in_its_environment(tmp_path):
    event = drift("credit-risk", "retrain", T0, 10)
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    (tmp_path / "failing").mkdir()
    with pytest.raises(HookError, match="exited 1: retraining service down"):
        CommandHook(
            [sys.executable, str(script), str(tmp_path / "out"), str(tmp_path / "failing"), "9", "credit-risk"]
        )(event)
    assert not (tmp_path / "out").exists()
    (tmp_path / "working").mkdir()
    CommandHook([sys.executable, str(script), str(tmp_path / "out"), str(tmp_path / "working"), "0", ""])(event, 3)
    assert json.loads((tmp_path / "out").read_text()) == {
        "stdin": event,
        "env": {
            "STREAMDRIFT_HOOK_MODEL_ID": "credit-risk",
            "STREAMDRIFT_HOOK_ALERT_ID": event["alert_id"],
            "STREAMDRIFT_HOOK_ATTEMPT": "3",
        },
    }
    with pytest.raises(StreamdriftError, match="not an executable"):
        CommandHook("no-such-retrain-command --now")


def test_webhook_hook_hides_credentials_and_treats_redirects_as_failures():
    server, received = _webhook_server(["302"])
    try:
        url = f"http://user:pw@127.0.0.1:{server.server_address[1]}/hook?token=s3cret"
        hook = WebhookHook(url, timeout_s=5)
        assert str(hook) == f"webhook http://127.0.0.1:{server.server_address[1]}/hook"
        with pytest.raises(HookError, match="HTTP 302"):
            hook(drift("churn", "retrain", T0, 1))
        assert len(received) == 1
        assert received[0][0] == "/hook?token=s3cret"
        assert received[0][1]["Authorization"] == "Basic dXNlcjpwdw=="  # user:pw
    finally:
        server.shutdown()


# -- on the broker ---------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept referenced until the futures are done
    for future in admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30).values():
        future.result()


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes]]) -> None:
    """(partition, key, value) in order."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, key, value in records:
        p.produce(topic, value, key, partition=partition)
    assert p.flush(30) == 0


def record(event: dict, partition: int = 0) -> tuple[int, bytes, bytes]:
    return partition, event["model_id"].encode(), orjson.dumps(event)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int] | None:
    """The group's committed offsets; None while the broker cannot say (a fresh one loads its offsets topic)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)]
    except KafkaException:
        return None
    finally:
        c.close()


def ends(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sd-watermarks"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


def wait_for(predicate, timeout: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{log()[-4000:]}")


class ListenerProcess:
    """``streamdrift retrain-listener`` as a real subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", "retrain-listener", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def listeners(kafka_bootstrap, unique_name, tmp_path):
    """Start listener subprocesses on a fresh alerts topic; all are killed at the end."""
    topic = unique_name("alerts")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env.update(
        {
            "STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "STREAMDRIFT_TOPICS__ALERTS": topic,
            "STREAMDRIFT_POLL_TIMEOUT_S": "0.2",
            # a SIGKILLed member holds its partitions until its session expires: keep that short
            "STREAMDRIFT_KAFKA__EXTRA": '{"session.timeout.ms": "6000"}',
        }
    )
    (tmp_path / "hook.py").write_text(HOOK)
    (tmp_path / "counters").mkdir()
    started: list[ListenerProcess] = []

    def start(*args: str, fail_first: int = 0, failing: str = "") -> ListenerProcess:
        command = [
            sys.executable,
            str(tmp_path / "hook.py"),
            str(tmp_path / "out.jsonl"),
            str(tmp_path / "counters"),
            str(fail_first),
            failing,
        ]
        listener = ListenerProcess(
            env, tmp_path / f"listener-{len(started)}.log", "--command", subprocess.list2cmdline(command), *args
        )
        started.append(listener)
        return listener

    def seen() -> list[dict]:
        out = tmp_path / "out.jsonl"
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    def calls(model_id: str) -> int:
        counter = tmp_path / "counters" / model_id
        return int(counter.read_text()) if counter.exists() else 0

    yield topic, start, seen, calls
    for listener in started:
        listener.stop(signal.SIGKILL)


@pytest.mark.kafka
def test_hook_sees_each_retrain_event_once_debounced_per_model_even_across_restarts(listeners, kafka_bootstrap):
    topic, start, seen, _ = listeners
    create_topic(kafka_bootstrap, topic, 1)
    a1 = drift("credit-risk", "retrain", T0, 100)
    a2 = drift("credit-risk", "investigate", T0 + 10, 200)
    a3 = drift("credit-risk", "retrain", T0 + 60, 300)  # within an hour of a1: debounced
    b1 = drift("churn", "retrain", T0 + 30, 100)
    a4 = drift("credit-risk", "retrain", T0 + 4000, 400)  # more than an hour after a1: a new call
    records = [
        record(a1),
        record(a1),
        record(a2),
        (0, b"credit-risk", b"{not json"),
        record(a3),
        record(b1),
        record(a4),
    ]
    produce(kafka_bootstrap, topic, records)

    listener = start("--group", f"{topic}.retrain")
    wait_for(
        lambda: committed(kafka_bootstrap, f"{topic}.retrain", topic, 1) == [len(records)],
        60,
        "every record handled and committed",
        listener.log,
    )
    assert listener.stop() == 0
    assert [s["stdin"]["alert_id"] for s in seen()] == [a1["alert_id"], b1["alert_id"], a4["alert_id"]]
    assert seen()[0]["stdin"] == a1
    assert seen()[1]["env"] == {
        "STREAMDRIFT_HOOK_MODEL_ID": "churn",
        "STREAMDRIFT_HOOK_ALERT_ID": b1["alert_id"],
        "STREAMDRIFT_HOOK_ATTEMPT": "1",
    }
    lines = [json.loads(line) for line in listener.log().splitlines()]  # JSON logs, one object per line
    by_msg = {}
    for line in lines:
        by_msg.setdefault(line["msg"], []).append(line)
    assert [e["alert_id"] for e in by_msg["duplicate alert_id: skipped"]] == [a1["alert_id"]]
    assert [(e["alert_id"], e["since_last_call_s"]) for e in by_msg["debounced"]] == [(a3["alert_id"], 60.0)]
    assert by_msg["not a drift event: skipped"][0]["offset"] == 3
    totals = by_msg["retrain listener stopped"][0]
    assert {
        k: totals[k]
        for k in ("triggered", "duplicate", "ignored", "debounced", "malformed", "hook_failures", "replayed")
    } == {
        "triggered": 3,
        "duplicate": 1,
        "ignored": 1,
        "debounced": 1,
        "malformed": 1,
        "hook_failures": 0,
        "replayed": 0,
    }

    # A group that acts on investigate too, without debounce: every distinct event once.
    other = start("--group", f"{topic}.all", "--actions", "retrain,investigate", "--debounce-s", "0")
    wait_for(lambda: len(seen()) == 8, 60, "the second group's calls", other.log)
    assert other.stop() == 0
    assert [s["stdin"]["alert_id"] for s in seen()[3:]] == [e["alert_id"] for e in (a1, a2, a3, b1, a4)]

    # After a restart, the seen ids and debounce windows are rebuilt from the records before the commit.
    a5 = drift("credit-risk", "retrain", T0 + 4100, 500)  # 100 s after a4: debounced
    b2 = drift("churn", "retrain", T0 + 5000, 200)
    produce(kafka_bootstrap, topic, [record(b1), record(a5), record(b2)])
    restarted = start("--group", f"{topic}.retrain")
    wait_for(
        lambda: committed(kafka_bootstrap, f"{topic}.retrain", topic, 1) == [len(records) + 3],
        60,
        "the new records handled",
        restarted.log,
    )
    assert restarted.stop() == 0
    assert [s["stdin"]["alert_id"] for s in seen()[8:]] == [b2["alert_id"]]
    assert '"replayed":7' in restarted.log()


@pytest.mark.kafka
def test_events_out_of_event_time_order_are_never_debounced_at_0_s_and_debounced_within_a_window(
    listeners, kafka_bootstrap
):
    """Drift events reach the alerts topic out of event-time order (issue 21): with --debounce-s 0 each
    one is a call, a gap below zero included; with a window, an event detected before the last call
    is inside it."""
    topic, start, seen, _ = listeners
    create_topic(kafka_bootstrap, topic, 1)
    later = drift("credit-risk", "retrain", T0 + 10, 100)
    earlier = drift("credit-risk", "retrain", T0 + 6.66, 200)  # detected 3.34 s before `later`, published after
    produce(kafka_bootstrap, topic, [record(later), record(earlier)])

    none = start("--group", f"{topic}.none", "--debounce-s", "0")
    wait_for(lambda: committed(kafka_bootstrap, f"{topic}.none", topic, 1) == [2], 60, "both handled", none.log)
    assert none.stop() == 0
    assert [s["stdin"]["alert_id"] for s in seen()] == [later["alert_id"], earlier["alert_id"]]
    assert '"debounced"' not in none.log().replace('"debounced":0', "")

    hourly = start("--group", f"{topic}.hourly", "--debounce-s", "3600")
    wait_for(lambda: committed(kafka_bootstrap, f"{topic}.hourly", topic, 1) == [2], 60, "both handled", hourly.log)
    assert hourly.stop() == 0
    assert [s["stdin"]["alert_id"] for s in seen()[2:]] == [later["alert_id"]]
    debounced = [json.loads(line) for line in hourly.log().splitlines() if '"msg":"debounced"' in line]
    assert [(d["alert_id"], round(d["since_last_call_s"], 2)) for d in debounced] == [(earlier["alert_id"], -3.34)]


@pytest.mark.kafka
def test_failing_hook_is_retried_with_backoff_and_survives_sigkill(listeners, kafka_bootstrap):
    topic, start, seen, calls = listeners
    create_topic(kafka_bootstrap, topic, 2)
    group = f"{topic}.retrain"
    a = drift("credit-risk", "retrain", T0, 100)
    b = drift("churn", "retrain", T0, 100)
    produce(kafka_bootstrap, topic, [record(a, 0), record(b, 1)])

    # credit-risk's hook fails its first 6 calls; retries 0.2 s, 0.4 s, 0.5 s, 0.5 s ... apart.
    args = ("--group", group, "--backoff-base-s", "0.2", "--backoff-max-s", "0.5")
    first = start(*args, fail_first=6, failing="credit-risk")
    # the second failure is logged after its hook call returns: wait for the log line, not only the call
    wait_for(
        lambda: first.log().count("hook failed") >= 2 and len(seen()) == 1,
        60,
        "a retry, and churn served meanwhile",
        first.log,
    )
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert seen()[0]["stdin"]["alert_id"] == b["alert_id"]  # the other partition flowed during the retries
    assert committed(kafka_bootstrap, group, topic, 2)[0] < 1  # the failing event is not committed
    failures = [json.loads(line) for line in first.log().splitlines() if "hook failed" in line]
    assert [f["retry_in_s"] for f in failures[:2]] == [0.2, 0.4]
    assert failures[0]["error"].endswith("exited 1: retraining service down (call 1)")

    second = start(*args, fail_first=6, failing="credit-risk")
    wait_for(
        lambda: committed(kafka_bootstrap, group, topic, 2) == ends(kafka_bootstrap, topic, 2) == [1, 1],
        90,
        "the failing event delivered after the restart",
        second.log,
    )
    assert second.stop() == 0
    assert [s["stdin"]["alert_id"] for s in seen()] == [b["alert_id"], a["alert_id"]]  # each exactly once
    assert calls("credit-risk") == 7 and calls("churn") == 1


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), orjson.loads(body)))
        code = int(self.server.answers.pop(0)) if self.server.answers else 200
        self.send_response(code)
        if code in (301, 302):
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _webhook_server(answers: list[str]) -> tuple[ThreadingHTTPServer, list]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received, server.answers = [], list(answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.received


def _in_thread(listener: RetrainListener) -> tuple[threading.Thread, list]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            listener.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.kafka
def test_webhook_receives_the_event_and_a_5xx_is_retried(kafka_bootstrap, unique_name):
    topic = unique_name("alerts")
    create_topic(kafka_bootstrap, topic, 1)
    event = drift("fraud", "retrain", T0, 42)
    produce(kafka_bootstrap, topic, [record(event)])
    server, received = _webhook_server(["503"])
    settings = load_settings(kafka={"bootstrap_servers": kafka_bootstrap}, topics={"alerts": topic}, poll_timeout_s=0.2)
    group = unique_name("group")
    listener = RetrainListener(
        settings,
        WebhookHook(f"http://127.0.0.1:{server.server_address[1]}/retrain"),
        group_id=group,
        backoff_base_s=0.1,
    )
    thread, errors = _in_thread(listener)
    try:
        wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == [1], 60, "the webhook call committed")
    finally:
        listener.stop()
        thread.join(30)
        server.shutdown()
    assert not errors and not thread.is_alive()
    assert [(path, body) for path, _, body in received] == [("/retrain", event)] * 2
    headers = received[1][1]
    assert headers["Content-Type"] == "application/json"
    assert (headers["X-Streamdrift-Alert-Id"], headers["X-Streamdrift-Hook-Attempt"]) == (event["alert_id"], "2")
    assert (listener.counts.triggered, listener.counts.hook_failures) == (1, 1)


@pytest.mark.kafka
def test_python_hook_that_keeps_failing_stops_the_listener_without_committing(kafka_bootstrap, unique_name):
    topic = unique_name("alerts")
    create_topic(kafka_bootstrap, topic, 1)
    skipped = drift("churn", "investigate", T0, 1)
    failing = drift("churn", "retrain", T0 + 1, 2)
    produce(kafka_bootstrap, topic, [record(skipped), record(failing)])
    settings = load_settings(kafka={"bootstrap_servers": kafka_bootstrap}, topics={"alerts": topic}, poll_timeout_s=0.2)
    got: list[dict] = []

    def hook(event: dict) -> None:
        got.append(event)
        raise ConnectionError("scheduler unreachable")

    group = unique_name("group")
    listener = RetrainListener(settings, hook, group_id=group, backoff_base_s=0.05, max_attempts=3)
    thread, errors = _in_thread(listener)
    thread.join(60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], HookError)
    assert "failed 3 times" in str(errors[0]) and "scheduler unreachable" in str(errors[0])
    assert got == [failing] * 3
    assert committed(kafka_bootstrap, group, topic, 1) == [1]  # the skipped record only


@pytest.mark.kafka
def test_events_no_hook_can_take_are_counted_and_committed_past_before_any_call(kafka_bootstrap, unique_name):
    """A NUL in an id, or an id no HTTP header can carry: before, the call raised, was retried forever,
    and the partition stalled behind it."""
    topic = unique_name("alerts")
    create_topic(kafka_bootstrap, topic, 1)
    nul = {**drift("churn", "retrain", T0, 1), "model_id": "churn\x00"}
    not_latin1 = {
        **drift("credit-risk", "retrain", T0 + 1, 2),
        "model_id": "模型",
    }  # (the schema's pattern is not ours)
    good = drift("fraud", "retrain", T0 + 2, 3)
    produce(kafka_bootstrap, topic, [(0, b"churn", orjson.dumps(nul)), record(not_latin1), record(good)])
    server, received = _webhook_server([])
    settings = load_settings(kafka={"bootstrap_servers": kafka_bootstrap}, topics={"alerts": topic}, poll_timeout_s=0.2)
    group = unique_name("group")
    listener = RetrainListener(
        settings,
        WebhookHook(f"http://127.0.0.1:{server.server_address[1]}/retrain"),
        group_id=group,
        backoff_base_s=0.1,
        max_attempts=2,  # (before the fix: the listener gave up on the first record)
    )
    thread, errors = _in_thread(listener)
    try:
        wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == [3], 60, "every record committed")
    finally:
        listener.stop()
        thread.join(30)
        server.shutdown()
    assert not errors and not thread.is_alive()
    assert [body for _, _, body in received] == [good]
    assert (listener.counts.malformed, listener.counts.triggered, listener.counts.hook_failures) == (2, 1, 0)
