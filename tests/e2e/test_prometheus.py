"""deploy/: Prometheus' own tools check the config and the alert rules, and a real Prometheus scrapes a real worker.

``promtool`` and ``prometheus`` come from Debian's ``prometheus`` package
(``scripts/ensure-prometheus`` installs it). Without them these tests skip
locally, and FAIL when ``CI=true``.

The end-to-end test runs deploy/prometheus/prometheus.yml as it is, except for
the scrape target (the test's worker instead of compose's workers found by name),
1 s intervals and an absolute path to the rules; it checks the series against
what was produced, that the rules evaluate without error on the real series,
and that every dashboard query is valid PromQL over metrics the worker exports.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
import yaml
from confluent_kafka import OFFSET_INVALID, TopicPartition

from kafka_broker import free_ports, in_ci
from streamdrift.core.synthetic import generate
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker
from worker_process import WorkerProcess, produce, streamdrift, worker_env

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "streamdrift.json"

ALERTS = {
    "StreamdriftWorkerDown",
    "StreamdriftWorkerNotReady",
    "StreamdriftConsumerLagGrowing",
    "StreamdriftModelStoppedReceivingEvents",
    "StreamdriftDriftEvent",
    "StreamdriftDeadLetters",
    "StreamdriftSnapshotTooOld",
}
SMALL = {
    "monitor__reference_size": 500,
    "monitor__window_size": 500,
    "monitor__subwindows": 5,
    "monitor__cooldown_events": 2000,
    "snapshot_interval_s": 0.5,
}
# What Grafana puts in place of the dashboard's variables.
GRAFANA_VARIABLES = {"$model_id": "credit-risk", "$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not on PATH; run scripts/ensure-prometheus (installs Debian's prometheus package)"
        if in_ci():
            pytest.fail(f"{reason} (CI=true, so this fails)", pytrace=False)
        pytest.skip(reason)
    return path


def promtool(*args: str) -> str:
    done = subprocess.run([tool("promtool"), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in groups] == ["streamdrift"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query, in rows too."""

    def walk(panels: list[dict]):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    return [(p["title"], t["expr"]) for p in walk(dashboard["panels"]) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(streamdrift_\w+|up(?=\{))", expr))


# --- promtool --------------------------------------------------------------------------------


def test_promtool_accepts_the_compose_config_and_its_rule_file() -> None:
    # `worker` resolves only inside compose: promtool checks the syntax, it resolves no name.
    out = promtool("check", "config", str(PROMETHEUS_YML.relative_to(ROOT)))
    assert "1 rule files found" in out and "7 rules found" in out, out


def test_promtool_check_rules() -> None:
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", str(RULES.relative_to(ROOT)))


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", str(RULES_TEST.relative_to(ROOT)))


def test_every_alert_has_a_for_a_severity_and_a_description() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())
    assert tests["rule_files"] == ["rules.yml"]
    firing, quiet = set(), set()
    for group in tests["tests"]:
        for case in group["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == ALERTS and quiet == ALERTS


# --- the dashboard ---------------------------------------------------------------------------


def test_dashboard_has_a_model_id_variable_and_queries_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "streamdrift"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    model = variables["model_id"]
    query = model["query"]["query"] if isinstance(model["query"], dict) else model["query"]
    assert query == "label_values(streamdrift_events_total, model_id)"
    assert model["datasource"]["uid"] == "prometheus"
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 10
    for title, expr in exprs:
        assert metric_names(expr), (title, expr)
        if "model_id" in expr:  # a per-model panel follows the variable
            assert 'model_id=~"$model_id"' in expr, (title, expr)
    per_model = {name for _, expr in exprs if "$model_id" in expr for name in metric_names(expr)}
    assert {
        "streamdrift_events_total",
        "streamdrift_drift_score",
        "streamdrift_drift_events_total",
        "streamdrift_type_mismatches_total",
    } <= per_model
    everywhere = {name for _, expr in exprs for name in metric_names(expr)}
    assert {
        "streamdrift_consumer_lag",
        "streamdrift_dead_letters_total",
        "streamdrift_last_checkpoint_timestamp_seconds",
    } <= everywhere
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "prometheus" for p in panels)


# --- the worker's operational metrics, without a broker ---------------------------------------


class FakeConsumer:
    """What the lag collector reads: positions and librdkafka's cached watermarks."""

    def __init__(self, positions: dict, watermarks: dict):
        self.positions, self.watermarks = positions, watermarks

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), OFFSET_INVALID))
            for tp in tps
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "the lag must never cost a broker request"
        return self.watermarks.get((tp.topic, tp.partition), (OFFSET_INVALID, OFFSET_INVALID))


def lag_series(worker: Worker) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in worker.registry.collect()
        if family.name == "streamdrift_consumer_lag"
        for s in family.samples
    }


def test_consumer_lag_per_owned_partition_and_readiness(tmp_path: Path) -> None:
    settings = Settings(snapshot_dir=tmp_path)
    worker = Worker(settings)
    p, f = settings.topics.predictions, settings.topics.feedback
    assert worker.registry.get_sample_value("streamdrift_ready") == 0
    assert lag_series(worker) == {}
    worker.partitions = {0: worker._restore(0), 1: worker._restore(1)}  # fresh state: no snapshot
    worker.partitions[0].resumed_at.update({p: 100, f: OFFSET_INVALID})
    worker.partitions[1].resumed_at.update({p: 7, f: OFFSET_INVALID})
    worker.consumer = FakeConsumer(
        positions={(p, 0): 150, (f, 0): 42},  # consuming
        watermarks={
            (p, 0): (0, 180),
            (f, 0): (0, 42),
            (p, 1): (0, 10),  # nothing consumed since assigned at 7
            (f, 1): (5, 9),
        },
    )  # nothing consumed, reset to the log start (5)
    worker.health.ready = True
    worker._refresh_lag()
    assert lag_series(worker) == {(p, "0"): 30, (f, "0"): 0, (p, "1"): 3, (f, "1"): 4}
    assert worker.registry.get_sample_value("streamdrift_ready") == 1

    worker._drop({0})  # revoked: its series go at once
    assert lag_series(worker) == {(p, "1"): 3, (f, "1"): 4}
    worker.consumer.watermarks.pop((f, 1))  # not fetched (since a reassignment): unknown, so no series
    worker._refresh_lag()
    assert lag_series(worker) == {(p, "1"): 3}


# --- a real Prometheus scraping a real worker -----------------------------------------------------


class PrometheusServer:
    """``prometheus`` on a free loopback port with its data in ``workdir``; ``stop()`` ends that process only."""

    def __init__(self, config: dict, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.port = free_ports(1)[0]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )

    def get(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return orjson.loads(r.read())
        except urllib.error.HTTPError as e:  # a bad query answers 400 with the error in the body
            return orjson.loads(e.read())

    def query(self, promql: str) -> list[dict]:
        answer = self.get("/api/v1/query", query=promql)
        assert answer["status"] == "success", (promql, answer)
        return answer["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The value of a query that returns at most one series."""
        result = self.query(promql)
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: self._ready(), timeout, "prometheus ready", self)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited ({self.proc.returncode}):\n{self.log()[-4000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
            return r.status == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def wait_for(predicate, timeout: float, what: str, *sources: object) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return
        except (OSError, ValueError) as exc:  # not listening yet
            last = exc
        time.sleep(0.25)
    logs = "\n".join(f"--- {type(s).__name__} log:\n{s.log()[-3000:]}" for s in sources)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{logs}")


def scrape_config(target: str) -> dict:
    """deploy/prometheus/prometheus.yml, scraping ``target`` every second."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_YML.parent / f) for f in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["scrape_interval"] = "1s"
    job.pop("dns_sd_configs")  # compose's worker replicas, found by name: here the test's one worker
    job["static_configs"] = [{"targets": [target]}]
    return config


def exported_names(metrics_text: str) -> set[str]:
    """Every metric name in a /metrics page: declared families (with or without samples) and samples."""
    names = set(re.findall(r"^# TYPE (\S+) ", metrics_text, re.M))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", metrics_text, re.M))
    return names


@pytest.mark.kafka
def test_prometheus_scrapes_the_worker_during_a_run_on_the_real_broker(kafka_bootstrap, unique_name, tmp_path):
    tool("prometheus")
    budget = '{"max_retrains": 5, "period_s": 86400}'  # so the dashboard's budget panel has series
    env = worker_env(
        kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots", **SMALL, monitor__retrain_budget=budget
    )
    done = streamdrift(env, "topics", "create", "--partitions", "2")
    assert done.returncode == 0, done.stderr
    preds, feedback = env["STREAMDRIFT_TOPICS__PREDICTIONS"], env["STREAMDRIFT_TOPICS__FEEDBACK"]
    names = {"prediction": preds, "feedback": feedback}
    items = [
        (names[kind], e["model_id"].encode(), orjson.dumps(e))
        for kind, e in generate(6000, seed=11, drift_at=1000, rate=500.0)
    ]  # 2000 predictions per model
    items.append((preds, b"churn", b"{not json"))  # one dead letter
    n_predictions = sum(1 for t, key, _ in items[:-1] if t == preds and key == b"credit-risk")

    worker = WorkerProcess(env, tmp_path / "worker.log")
    server = None
    try:
        worker.wait_ready()
        server = PrometheusServer(scrape_config(f"127.0.0.1:{worker.port}"), tmp_path / "prometheus")
        server.wait_ready()
        produce(kafka_bootstrap, items)

        def caught_up() -> bool:
            value = server.value(
                'streamdrift_events_total{job="streamdrift",model_id="credit-risk",stream="predictions"}'
            )
            lag = server.query('streamdrift_consumer_lag{job="streamdrift"}')
            return value == n_predictions and len(lag) == 4 and all(float(s["value"][1]) == 0 for s in lag)

        wait_for(caught_up, 60, f"Prometheus to see {n_predictions} credit-risk predictions and no lag", worker, server)
        assert server.value('up{job="streamdrift"}') == 1
        assert server.value('streamdrift_ready{job="streamdrift"}') == 1
        assert server.value('streamdrift_drift_events_total{model_id="credit-risk",kind="data_drift"}') >= 1
        scores = server.query('streamdrift_drift_score{model_id="credit-risk",kind="data_drift"}')
        assert {"debt_ratio", "income"} <= {s["metric"]["feature"] for s in scores}
        assert max(float(s["value"][1]) for s in scores) > 0.25  # over psi_threshold: that is the drift
        assert {s["metric"]["topic"] for s in server.query("streamdrift_consumer_lag")} == {preds, feedback}
        assert server.value("sum(streamdrift_dead_letters_total)") == 1
        assert server.value("time() - streamdrift_last_checkpoint_timestamp_seconds") < 30
        # every model has a budget series; none spent it (this short stream raises no retrain action)
        remaining = {
            s["metric"]["model_id"]: float(s["value"][1]) for s in server.query("streamdrift_retrain_budget_remaining")
        }
        assert remaining == {"credit-risk": 5, "churn": 5, "fraud": 5}

        # The alert rules load and evaluate on the real series without error.
        def evaluated() -> list[dict]:
            rules = [r for g in server.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
            return rules if rules and not any(r["lastEvaluation"].startswith("0001") for r in rules) else []

        wait_for(evaluated, 20, "the rules to be evaluated", server)
        rules = evaluated()
        assert {r["name"] for r in rules} == ALERTS
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]

        # Every dashboard query is valid PromQL over metrics this worker exports.
        exported = exported_names(worker.get("/metrics")[1].decode()) | {"up"}
        for title, expr in dashboard_exprs(json.loads(DASHBOARD.read_text())):
            assert metric_names(expr) <= exported, (title, metric_names(expr) - exported)
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, (title, expr)
            server.query(expr)
        assert worker.stop() == 0
    finally:
        if server is not None:
            server.stop()
        worker.stop(signal.SIGKILL)
