"""`streamdrift status`: from a snapshot directory, and from a real worker on a real broker."""

from __future__ import annotations

import signal

import orjson
import pytest

from streamdrift import cli
from streamdrift.cli import status
from streamdrift.core.errors import SnapshotError, StreamdriftError
from streamdrift.core.records import RawMessage
from streamdrift.core.state import Snapshot
from streamdrift.runtime.checkpoint import LocalSnapshotStore
from streamdrift.runtime.settings import load_settings
from streams import FB, PRED, demo_messages, run_monitors
from worker_process import WorkerProcess, produce, streamdrift, worker_env

SMALL = {"reference_size": 500, "window_size": 500, "subwindows": 5, "cooldown_events": 2000}
PARTITION_OF = {"credit-risk": 0, "churn": 0, "fraud": 1}


def partitioned_stream() -> list[RawMessage]:
    """The demo stream (credit-risk drifts at its 1000th prediction) over two partitions, then 150 churn
    predictions with no age and, in 40 of them, an income that is not a number."""
    messages = demo_messages(6000, seed=11, drift_at=1000, rate=500.0)
    churn = [orjson.loads(m.value) for m in messages if m.topic == PRED and m.key == b"churn"][-150:]
    for i, event in enumerate(churn):
        event["features"]["age"] = None
        if i % 15 < 4:
            event["features"]["income"] = "n/a"
        event["event_id"] += "-late"
        event["timestamp"] += 20
    messages += [RawMessage(PRED, 0, 0, b"churn", orjson.dumps(e)) for e in churn]
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for m in messages:
        p = PARTITION_OF[m.key.decode()]
        offset = offsets.get((m.topic, p), 0)
        offsets[(m.topic, p)] = offset + 1
        out.append(RawMessage(m.topic, p, offset, m.key, m.value))
    return out


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory):
    """Snapshots of both partitions, as a worker would have written them."""
    app = load_settings(monitor=SMALL)
    settings = app.monitor
    directory = tmp_path_factory.mktemp("snapshots")
    store = LocalSnapshotStore(directory, app.state_seal())
    messages = partitioned_stream()
    for p in (0, 1):
        mine = [m for m in messages if m.partition == p]
        monitors, _ = run_monitors(mine, 1000, settings)
        offsets = {t: 1 + max(m.offset for m in mine if m.topic == t) for t in (PRED, FB)}
        store.save(Snapshot(p, offsets, {m: mon.state() for m, mon in monitors.items()}))
    return directory


def run_status(argv: list[str], **monitor: int) -> int:
    args = cli._parser().parse_args(["status", *argv])  # the command line as `streamdrift` parses it
    return status.run(load_settings(monitor={**SMALL, **monitor}), args)


def test_status_from_a_snapshot_directory(snapshot_dir, capsys):
    assert run_status(["--snapshots", str(snapshot_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "MODEL        PARTITION  PREDICTIONS  FEEDBACK  REFERENCE        WINDOW METRIC               DRIFT EVENTS                     LAST DRIFT                                 TOP FEATURE    PSI  TYPE MISMATCHES  QUALITY FLAGS                                   LAST EVENT",
        "churn                0         2150       950  ready (warm-up)  accuracy 0.718 (ref 0.700)  data_drift=1 data_quality=1      data_quality 2023-11-14T22:13:51.696Z      age          1.591  income=40        income:invalid_rate=0.06 age:missing_rate=0.20  2023-11-14T22:13:51.996Z",
        "credit-risk          0         2000       917  ready (warm-up)  accuracy 0.640 (ref 0.708)  data_drift=1 prediction_drift=1  prediction_drift 2023-11-14T22:13:27.194Z  debt_ratio   1.879  -                -                                               2023-11-14T22:13:31.998Z",
        "fraud                1         2000       964  ready (warm-up)  accuracy 0.718 (ref 0.716)  -                                -                                          income       0.030  -                -                                               2023-11-14T22:13:31.998Z",
    ]


def test_status_json_is_the_worker_status_shape(snapshot_dir, capsys):
    assert run_status(["--snapshots", str(snapshot_dir), "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert sorted(data["partitions"]) == ["0", "1"]
    assert data["partitions"]["1"]["offsets"] == {"feedback": 964, "predictions": 2000}
    churn = data["partitions"]["0"]["models"]["churn"]
    assert (churn["predictions_total"], churn["type_mismatches"]) == (2150, {"income": 40})


def test_status_refuses_snapshots_made_under_other_detection_settings(snapshot_dir):
    with pytest.raises(SnapshotError, match="other detection settings") as refused:
        run_status(["--snapshots", str(snapshot_dir)], window_size=1000)
    assert "only reads snapshots: give it the worker's detection settings" in str(refused.value)


def test_status_says_where_nothing_is(tmp_path):
    with pytest.raises(StreamdriftError, match="does not exist"):
        run_status(["--snapshots", str(tmp_path / "nowhere")])
    assert not (tmp_path / "nowhere").exists()  # status never writes
    with pytest.raises(StreamdriftError, match="no snapshots"):
        run_status(["--snapshots", str(tmp_path)])
    with pytest.raises(StreamdriftError, match="cannot reach a worker at http://127.0.0.1:9/status"):
        run_status(["--url", "127.0.0.1:9"])


@pytest.mark.kafka
def test_status_of_a_running_worker_matches_its_snapshots(kafka_bootstrap, unique_name, tmp_path):
    env = worker_env(
        kafka_bootstrap,
        unique_name("sd"),
        tmp_path / "snapshots",
        snapshot_interval_s=0.5,
        **{f"monitor__{k}": v for k, v in SMALL.items()},
    )
    done = streamdrift(env, "topics", "create", "--partitions", "2")
    assert done.returncode == 0, done.stderr
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        names = {PRED: env["STREAMDRIFT_TOPICS__PREDICTIONS"], FB: env["STREAMDRIFT_TOPICS__FEEDBACK"]}
        messages = demo_messages(6000, seed=11, drift_at=1000, rate=500.0)
        produce(kafka_bootstrap, [(names[m.topic], m.key, m.value) for m in messages])
        expected = {}
        for m in messages:
            expected.setdefault(m.key.decode(), [0, 0])[m.topic == FB] += 1
        worker.wait_for(
            lambda: worker.counts() == {k: tuple(v) for k, v in expected.items()}, 90, "every event counted"
        )

        # default address: metrics_host and metrics_port of the settings (the port the worker picked, as a user
        # who set it would have it)
        live = streamdrift({**env, "STREAMDRIFT_METRICS_PORT": str(worker.port)}, "status")
        assert live.returncode == 0, live.stderr
        lines = live.stdout.splitlines()
        assert lines[0].split() == [
            "MODEL",
            "PARTITION",
            "PREDICTIONS",
            "FEEDBACK",
            "REFERENCE",
            "WINDOW",
            "METRIC",
            "DRIFT",
            "EVENTS",
            "LAST",
            "DRIFT",
            "TOP",
            "FEATURE",
            "PSI",
            "TYPE",
            "MISMATCHES",
            "QUALITY",
            "FLAGS",
            "LAST",
            "EVENT",
        ]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert sorted(rows) == ["churn", "credit-risk", "fraud"]
        for model_id, (predictions, feedback) in expected.items():
            assert rows[model_id][2:4] == [str(predictions), str(feedback)]
            assert rows[model_id][4:7] == ["ready", "(warm-up)", "accuracy"]
        assert "data_drift=1" in rows["credit-risk"]
        as_json = streamdrift(env, "status", "--json", "--url", f"http://127.0.0.1:{worker.port}")
        assert orjson.loads(as_json.stdout)["ready"] is True
        assert worker.stop() == 0  # SIGTERM: a final checkpoint
    finally:
        worker.stop(signal.SIGKILL)

    from_disk = streamdrift(env, "status", "--snapshots", env["STREAMDRIFT_SNAPSHOT_DIR"])
    assert from_disk.returncode == 0, from_disk.stderr
    assert from_disk.stdout == live.stdout
    # the state topic holds the same committed state: the whole group's, read from one place
    from_topic = streamdrift(env, "status", "--state-topic")
    assert from_topic.returncode == 0, from_topic.stderr
    assert from_topic.stdout == live.stdout
    as_json = [
        streamdrift(env, "status", *source, "--json")
        for source in (["--state-topic"], ["--snapshots", env["STREAMDRIFT_SNAPSHOT_DIR"]])
    ]
    assert orjson.loads(as_json[0].stdout) == orjson.loads(as_json[1].stdout)
