"""Reference profiles: build from JSONL or CSV, show thresholds, monitor against them without warm-up."""

from __future__ import annotations

import csv
import subprocess
import sys

import orjson
import pytest

from streamdrift.core import reference
from streamdrift.core.config import MonitorSettings
from streamdrift.core.errors import ConfigError
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.synthetic import generate
from streams import PRED, run_monitors

SETTINGS = MonitorSettings()


def credit_rows(n: int, seed: int, drift_at: int = 10**9) -> list[dict]:
    return [
        e
        for kind, e in generate(3 * n, seed=seed, drift_at=drift_at)
        if kind == "prediction" and e["model_id"] == "credit-risk"
    ]


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "train.jsonl"
    rows = credit_rows(3000, seed=1)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path, rows


def test_jsonl_and_csv_give_the_same_profile(training, tmp_path):
    path, rows = training
    csv_path = tmp_path / "train.csv"
    names = sorted(rows[0]["features"])
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, "prediction", "score"])
        for r in rows:
            w.writerow([r["features"][n] for n in names] + [r["prediction"], r["score"]])
    from_jsonl = reference.build_profile("credit-risk", reference.read_rows(path), SETTINGS)
    from_csv = reference.build_profile("credit-risk", reference.read_rows(csv_path), SETTINGS)
    # CSV has no booleans: has_mortgage reads as the strings "False"/"True", which is what its categories are
    assert from_csv["features"] == from_jsonl["features"]
    assert from_csv["outputs"] == from_jsonl["outputs"]
    assert from_jsonl["rows"] == 3000 and len(from_jsonl["sample"]) == 1000


def test_monitor_with_a_profile_detects_from_the_first_window(training):
    path, _ = training
    profile = reference.build_profile("credit-risk", reference.read_rows(path), SETTINGS)
    rows = credit_rows(1000, seed=2, drift_at=0)  # production data drifted from the start
    messages = [RawMessage(PRED, 0, i, b"credit-risk", orjson.dumps(r)) for i, r in enumerate(rows)]
    with_profile = {"credit-risk": ModelMonitor("credit-risk", SETTINGS, profile=profile)}
    _, events = run_monitors(messages, 250, SETTINGS, with_profile)
    assert [e["kind"] for e in events] == ["data_drift", "prediction_drift"]
    assert events[0]["window"]["end_offset"] == 999  # the first full window
    assert with_profile["credit-risk"].summary().reference_source == "profile"
    _, warmup_events = run_monitors(messages, 250, SETTINGS)  # a warm-up reference learns the drifted data
    assert warmup_events == []


def test_show_prints_the_calibrated_thresholds(training):
    path, _ = training
    profile = reference.build_profile("credit-risk", reference.read_rows(path), SETTINGS)
    th = reference.thresholds(profile, SETTINGS)
    assert th["features"]["p_value"] == pytest.approx(200 / (1_000_000 * 4 * 7))
    # with multivariate drift, which tests the same rows, the data family's share is halved (outputs keep theirs)
    joint = reference.thresholds(profile, SETTINGS.model_copy(update={"multivariate": True}))
    assert joint["features"]["p_value"] == pytest.approx(200 / (1_000_000 * 4 * 2 * 7))
    assert joint["outputs"]["p_value"] == th["outputs"]["p_value"]
    text = reference.show(profile, SETTINGS)
    assert "one per 1,000,000 events" in text and "debt_ratio" in text


def test_cli_build_then_show(training, tmp_path):
    path, _ = training
    out = tmp_path / "p.json"
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "streamdrift", "reference", *a],  # noqa: E731
        capture_output=True,
        text=True,
        timeout=120,
    )
    built = run("build", "--model-id", "credit-risk", "--input", str(path), "--out", str(out))
    assert built.returncode == 0, built.stderr
    shown = run("show", str(out))
    assert shown.returncode == 0 and shown.stdout == built.stdout


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{", "not JSON"),
        (b'{"format": "streamdrift-profile", "version": 9}', "version 1"),
        (
            b'{"format": "streamdrift-profile", "version": 1, "features": [{"name": "x"}], "outputs": [], "labels": []}',
            "malformed",
        ),
    ],
)
def test_bad_profiles_are_refused_with_a_way_out(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{message}.*rebuild"):
        reference.load_profile(path)
