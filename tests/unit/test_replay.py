"""``streamdrift replay``: the core over files gives what the worker's core gives over the same stream."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from streamdrift.cli import main
from streamdrift.cli import replay as replay_module
from streamdrift.cli.replay import FEEDBACK, PREDICTIONS, Replay
from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.monitor import ModelMonitor, monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.synthetic import generate
from streamdrift.runtime.settings import load_settings
from streams import state_bytes

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CONFIG = """\
batch_size = 700
[models.credit-risk]
important_features = ["debt_ratio"]
"""
# inserted before the demo event of that (file, index): (line, model it names or None)
BAD_PREDICTIONS = {
    100: (b"not json at all", None),
    2000: (b'{"event_id": "x", "model_id": "churn", "features": {}, "prediction": 1}', "churn"),
    5000: (b"", None),  # blank: skipped, not a bad line
    9000: (b'{"event_id": "y", "model_id": "bad id!", "timestamp": 1, "features": {}, "prediction": 1}', None),
}
BAD_FEEDBACK = {
    300: (b'{"event_id": "z", "model_id": "credit-risk", "timestamp": 1700000001, "label": null}', "credit-risk")
}


def _write_demo(directory: Path, n_events: int, **kwargs) -> tuple[Path, Path, list[RawMessage]]:
    """The demo stream as two JSONL files with bad lines; also the good lines as messages, in stream order."""
    lines: dict[str, list[bytes]] = {PREDICTIONS: [], FEEDBACK: []}
    bad = {PREDICTIONS: BAD_PREDICTIONS, FEEDBACK: BAD_FEEDBACK}
    written = {PREDICTIONS: 0, FEEDBACK: 0}
    stream = []
    for kind, event in generate(n_events, **kwargs):
        topic = PREDICTIONS if kind == "prediction" else FEEDBACK
        if written[topic] in bad[topic]:
            lines[topic].append(bad[topic][written[topic]][0])
        written[topic] += 1
        value = orjson.dumps(event)
        stream.append(RawMessage(topic, 0, len(lines[topic]), None, value))
        lines[topic].append(value)
    paths = (directory / "predictions.jsonl", directory / "feedback.jsonl")
    for path, topic in zip(paths, (PREDICTIONS, FEEDBACK)):
        path.write_bytes(b"\n".join(lines[topic]) + b"\n")
    return *paths, stream


def _in_process(stream: list[RawMessage], settings) -> tuple[dict[str, ModelMonitor], list[dict]]:
    """The worker's way over the same stream: polls of 1000 messages, predictions then feedback."""
    monitors: dict[str, ModelMonitor] = {}
    events: list[dict] = []
    new_monitor = monitor_factory(settings.monitor, settings.models)
    for i in range(0, len(stream), 1000):
        poll = stream[i : i + 1000]
        for decode, topic, observe in (
            (decode_predictions, PREDICTIONS, "observe_predictions"),
            (decode_feedback, FEEDBACK, "observe_feedback"),
        ):
            batches, rejected = decode([m for m in poll if m.topic == topic])
            assert not rejected
            for b in batches:
                monitor = monitors.get(b.model_id)
                if monitor is None:
                    monitor = monitors[b.model_id] = new_monitor(b.model_id)
                events += getattr(monitor, observe)(b)
    return monitors, events


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        code = main(argv)
        stdout.flush()
        out.write(stdout.buffer.getvalue().decode())
    return code, out.getvalue(), err.getvalue()


class _Recording(Replay):
    """A Replay that keeps itself where the test can read its monitors."""

    made: list[Replay] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _Recording.made.append(self)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("replay")
    # 18k predictions round-robin over 3 models: 6k each, credit-risk drifts at its 3000th
    predictions, feedback, stream = _write_demo(directory, 18_000, seed=7, drift_at=3000)
    config = directory / "streamdrift.toml"
    config.write_text(CONFIG)
    alerts = directory / "alerts.jsonl"
    _Recording.made.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(replay_module, "Replay", _Recording)
        code, out, err = _cli(
            [
                "replay",
                str(predictions),
                "--feedback",
                str(feedback),
                "--config",
                str(config),
                "--alerts-out",
                str(alerts),
            ]
        )
    assert code == 0, err
    events = [orjson.loads(line) for line in alerts.read_bytes().splitlines()]
    return {
        "stream": stream,
        "settings": load_settings(config),
        "events": events,
        "stdout": out,
        "stderr": err,
        "replay": _Recording.made[0],
        "predictions": predictions,
        "feedback": feedback,
    }


def test_replay_raises_the_drift_events_of_an_in_process_run_over_the_same_stream(demo):
    events = demo["events"]
    assert [(e["model_id"], e["kind"]) for e in events] == [
        ("credit-risk", "data_drift"),
        ("credit-risk", "prediction_drift"),
        ("credit-risk", "concept_drift"),
        ("credit-risk", "performance_degradation"),
    ]
    monitors, expected = _in_process(demo["stream"], demo["settings"])
    assert sorted(e["alert_id"] for e in events) == sorted(e["alert_id"] for e in expected)
    by_id = {e["alert_id"]: e for e in expected}
    for event in events:
        assert {k: v for k, v in event.items() if k != "emitted_at"} == by_id[event["alert_id"]]
    # the same state as the worker's way of batching, whatever the replay's runs were
    assert state_bytes(demo["replay"].monitors) == state_bytes(monitors)
    assert demo["stdout"] == ""  # drift events went to --alerts-out


def test_window_offsets_are_line_numbers_and_important_features_ask_for_a_retrain(demo):
    data = demo["events"][0]
    lines = demo["predictions"].read_bytes().split(b"\n")
    # credit-risk drifts at its prediction #3000; the first failing window ends one sub-window later
    assert orjson.loads(lines[data["window"]["end_offset"]])["event_id"] == "credit-risk-3199"
    assert orjson.loads(lines[data["window"]["start_offset"]])["event_id"] == "credit-risk-2200"
    assert (data["feature"], data["action"]) == ("debt_ratio", "retrain")  # [models.credit-risk] in the config
    assert [f["feature"] for f in data["top_features"][:2]] == ["debt_ratio", "income"]


def test_alerts_file_matches_the_published_schema(demo):
    schema = orjson.loads((SCHEMAS / "drift_event.schema.json").read_bytes())
    assert demo["events"]
    for event in demo["events"]:
        jsonschema.validate(event, schema, format_checker=jsonschema.FormatChecker())


def test_detected_at_is_the_triggering_event_time_as_written_epoch_stays_a_number(demo):
    lines = {
        PREDICTIONS: demo["predictions"].read_bytes().split(b"\n"),
        FEEDBACK: demo["feedback"].read_bytes().split(b"\n"),
    }
    for event in demo["events"]:
        # graded kinds are triggered by the row that completed a pair: here always feedback (labels come later)
        topic = (
            FEEDBACK if event["kind"] in ("label_drift", "concept_drift", "performance_degradation") else PREDICTIONS
        )
        trigger = orjson.loads(lines[topic][event["window"]["end_offset"]])
        assert type(event["detected_at"]) is type(trigger["timestamp"]) is float
        assert event["detected_at"] == trigger["timestamp"]


def test_bad_lines_are_reported_counted_and_skipped(demo):
    replay = demo["replay"]
    reported = [line for line in demo["stderr"].splitlines() if ": bad " in line]
    assert len(reported) == 4  # the blank line is not one
    path = demo["predictions"]
    assert reported[0].startswith(f"{path}:101: bad prediction (offset 100): invalid JSON: ")
    assert reported[2].startswith(f"{path}:9004: bad prediction (offset 9003): field 'model_id' must be ")
    assert f"{path}:2002: bad prediction (offset 2001): missing field 'timestamp'" in reported
    assert any(
        line.startswith(f"{demo['feedback']}:301: bad feedback (offset 300): field 'label'") for line in reported
    )
    assert replay.bad_lines == {None: 2, "churn": 1, "credit-risk": 1}
    assert {m: (r.predictions, r.bad_lines) for m, r in replay.models.items()} == {
        "credit-risk": (6000, 1),
        "churn": (6000, 1),
        "fraud": (6000, 0),
    }
    summary = demo["stderr"].splitlines()
    assert summary[-1] == "3 models, 4 drift events, 4 bad lines (2 without a readable model_id)"
    header = summary[-5]
    assert header.split() == [
        "MODEL",
        "PREDICTIONS",
        "FEEDBACK",
        "BAD",
        "LINES",
        "DRIFT",
        "EVENTS",
        "FIRST",
        "DRIFT",
        "FIRST",
        "EVENT",
        "LAST",
        "EVENT",
    ]
    credit = next(line for line in summary if line.startswith("credit-risk "))
    assert "concept_drift=1 data_drift=1 performance_degradation=1 prediction_drift=1" in credit
    assert credit.split()[1:4] == ["6000", str(replay.models["credit-risk"].feedback), "1"]


def _line(t: float | str, i: int, topic: str) -> bytes:
    event = {"event_id": f"e{i}", "model_id": "m", "timestamp": t}
    event.update({"features": {}, "prediction": 1} if topic == PREDICTIONS else {"label": 1})
    return orjson.dumps(event)


def _processed(replay: Replay, predictions: list[bytes], feedback: list[bytes]) -> list[tuple[str, list[int]]]:
    """(topic, offsets) of every batch the replay's engine decoded, in the order it decoded them."""
    batches: list[tuple[str, list[int]]] = []
    observed = replay.engine.on_batch

    def record(topic, batch, monitored, events):
        batches.append((topic, batch.offsets.tolist()))
        observed(topic, batch, monitored, events)

    replay.engine.on_batch = record
    list(replay.run(predictions, feedback))
    return batches


def _merged(replay: Replay, predictions: list[bytes], feedback: list[bytes]) -> list[tuple[str, int]]:
    return [(topic, offset) for topic, offsets in _processed(replay, predictions, feedback) for offset in offsets]


def test_merge_is_by_event_time_in_epochs_predictions_first_within_an_epoch():
    # the worker's merge: epochs of merge_epoch_ms (100 ms) of event time, predictions first within one,
    # so feedback at 3.05 s follows the prediction at 3.09 s (same epoch), each file in its line order
    predictions = [_line(t, i, PREDICTIONS) for i, t in enumerate([1, 2, 2, "1970-01-01T00:00:03Z", 3.09])]
    feedback = [_line(t, i, FEEDBACK) for i, t in enumerate([0, 2, "1970-01-01T02:00:02+02:00", 2.5, 3.05])]
    assert _merged(Replay(load_settings()), predictions, feedback) == [
        (FEEDBACK, 0),
        (PREDICTIONS, 0),
        (PREDICTIONS, 1),
        (PREDICTIONS, 2),
        (FEEDBACK, 1),
        (FEEDBACK, 2),
        (FEEDBACK, 3),
        (PREDICTIONS, 3),
        (PREDICTIONS, 4),
        (FEEDBACK, 4),
    ]
    # with epochs of 1 ms, the order of event times itself (ties: predictions first)
    assert _merged(Replay(load_settings(merge_epoch_ms=1)), predictions, feedback)[-3:] == [
        (PREDICTIONS, 3),
        (FEEDBACK, 4),
        (PREDICTIONS, 4),
    ]


def test_a_file_out_of_time_order_keeps_its_line_order_and_is_noted():
    replay = Replay(load_settings())
    merged = _merged(
        replay,
        [_line(t, i, PREDICTIONS) for i, t in enumerate([5, 3, 4, 6])],
        [_line(t, i, FEEDBACK) for i, t in enumerate([4.5])],
    )
    assert merged == [
        (FEEDBACK, 0),
        (PREDICTIONS, 0),
        (PREDICTIONS, 1),
        (PREDICTIONS, 2),
        (PREDICTIONS, 3),
    ]
    assert replay.out_of_order == {PREDICTIONS: 2, FEEDBACK: 0}


def test_runs_of_one_file_are_fed_as_batches_of_at_most_batch_size():
    fed = _processed(
        Replay(load_settings(batch_size=3)),
        [_line(t, i, PREDICTIONS) for i, t in enumerate([1, 1, 1, 1, 1, 3])],
        [_line(t, i, FEEDBACK) for i, t in enumerate([1, 2])],
    )
    # epoch 1 s (predictions 0-4, feedback 0), then 2 s (feedback 1) once the feedback file is read to its end
    assert fed == [
        (PREDICTIONS, [0, 1, 2]),
        (PREDICTIONS, [3, 4]),
        (FEEDBACK, [0]),
        (FEEDBACK, [1]),
        (PREDICTIONS, [5]),
    ]


def _shifting_stream(path: Path, timestamp) -> list[bytes]:
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.normal(0, 1, 3000), rng.normal(1, 1, 1000)])
    lines = [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model_id": "m",
                "timestamp": timestamp(i),
                "features": {"x": float(x)},
                "prediction": "yes" if x > 0 else "no",
            }
        )
        for i, x in enumerate(xs)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def test_rfc3339_detected_at_keeps_its_form_and_alerts_go_to_stdout_without_alerts_out(tmp_path):
    # offsets other than Z, as a producer may write them: detected_at must be that very string
    lines = _shifting_stream(tmp_path / "p.jsonl", lambda i: f"2024-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}.5+02:00")
    code, out, err = _cli(["replay", str(tmp_path / "p.jsonl")])
    assert code == 0, err
    events = [orjson.loads(line) for line in out.splitlines()]
    assert [(e["kind"], e["window"]["end_offset"]) for e in events] == [
        ("data_drift", 3399),
        ("prediction_drift", 3399),
    ]
    for event in events:
        assert event["detected_at"] == orjson.loads(lines[event["window"]["end_offset"]])["timestamp"]
    assert events[0]["detected_at"] == "2024-05-01T12:56:39.5+02:00"
    assert err.splitlines()[-1] == "1 model, 2 drift events, 0 bad lines"


def test_plot_writes_a_png(tmp_path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() != "true":
            pytest.skip("matplotlib is not installed (pip install 'streamdrift[plot]'); required when CI=true")
    predictions, feedback, _ = _write_demo(tmp_path, 12_000, seed=3, drift_at=2500)
    code, _, err = _cli(
        [
            "replay",
            str(predictions),
            "--feedback",
            str(feedback),
            "--alerts-out",
            str(tmp_path / "alerts.jsonl"),
            "--plot",
            str(tmp_path / "out.png"),
        ]
    )
    assert code == 0, err
    png = (tmp_path / "out.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    assert f"plot written to {tmp_path / 'out.png'}" in err


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    _shifting_stream(tmp_path / "p.jsonl", lambda i: i)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    code, out, err = _cli(["replay", str(tmp_path / "p.jsonl"), "--plot", str(tmp_path / "out.png")])
    assert code == 2 and out == ""
    assert "pip install 'streamdrift[plot]'" in err
    assert not (tmp_path / "out.png").exists()


def test_a_missing_file_is_a_clear_error(tmp_path):
    code, _, err = _cli(["replay", str(tmp_path / "nope.jsonl")])
    assert code == 2
    assert f"predictions file {tmp_path / 'nope.jsonl'} does not exist" in err


def test_replay_decodes_and_evicts_under_the_workers_settings():
    """A backtest's state is a worker's: replay applies ``[privacy]`` (here every category tracked as a hash)
    and the idle-model TTL, which it once left at their defaults."""
    settings = load_settings(
        privacy={"hash_categories": True},
        model_idle_ttl_s=3600,
        max_event_time_skew_s=600,
        topics={"max_timestamp_ahead_s": 600},
    )
    secret = "ssn-123-45-6789"

    def prediction(i: int, model_id: str, t: int, value: str) -> bytes:
        return orjson.dumps(
            {"event_id": f"e{i}", "model_id": model_id, "timestamp": t, "features": {"c": value}, "prediction": 1}
        )

    lines = [prediction(i, "old", 1_700_000_000 + i, secret) for i in range(10)]
    lines += [prediction(10 + i, "new", 1_700_010_000 + i, secret) for i in range(10)]
    replay = Replay(settings)
    list(replay.run(lines))
    assert sorted(replay.monitors) == ["new"] and replay.engine.evicted_models == 1  # "old": idle for 10,000 s
    assert secret.encode() not in state_bytes(replay.monitors)
