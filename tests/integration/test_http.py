"""The worker's HTTP endpoints on real sockets (issue 17, finding 3).

``/metrics`` and ``/status`` read the view the consume loop publishes, so a scrape never waits for
the worker's lock; the server's threads and connections are bounded, and every connection has a
deadline; a client that goes away is one JSON log line, never a traceback; ``/status`` can be off.
"""

from __future__ import annotations

import logging
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamdrift.core.config import MonitorSettings
from streamdrift.runtime.exporter import Health, serve
from streamdrift.runtime.logs import JsonFormatter
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker
from streams import FB, PRED, demo_messages, run_monitors
from worker_process import WorkerProcess, produce, streamdrift, worker_env

SMALL = MonitorSettings(reference_size=500, window_size=500, subwindows=5)


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def worker(tmp_path):
    """A worker (no Kafka client made) owning partition 0 with three models, its view published."""
    w = Worker(Settings(state_store="local", snapshot_dir=tmp_path / "snapshots", metrics_port=0))
    monitors, _ = run_monitors(demo_messages(3000, seed=3), 500, SMALL)
    w.partitions[0] = SimpleNamespace(engine=SimpleNamespace(offsets={"predictions": 2000}, monitors=monitors))
    assert w.view.publish(w.partitions)
    return w


def serve_worker(w: Worker, **kwargs):
    """The server as ``Worker.run`` starts it."""
    return serve("127.0.0.1", 0, w.registry, w.health, w.view.status, w.model_metrics, **kwargs)


def test_metrics_and_status_answer_while_the_consume_loop_holds_the_lock(worker):
    server = serve_worker(worker)
    port = server.server_address[1]
    try:
        with worker.lock:  # the consume loop in the middle of a batch
            code, body = get(port, "/metrics")
            assert code == 200
            status_code, status_body = get(port, "/status")
            assert status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        predictions = {
            s.labels["model_id"]: s.value
            for s in families["streamdrift_events"].samples
            if s.labels.get("stream") == "predictions"
        }
        expected = {m: mon.predictions_total for m, mon in worker.partitions[0].engine.monitors.items()}
        assert predictions == expected and sum(expected.values()) > 0
        status = orjson.loads(status_body)
        assert status["partitions"]["0"]["offsets"] == {"predictions": 2000}
        assert {m: s["predictions_total"] for m, s in status["partitions"]["0"]["models"].items()} == expected
    finally:
        server.shutdown()
        server.server_close()


def test_the_view_rebuilds_only_the_models_that_changed_and_drops_a_partition_at_once(worker):
    view = worker.view
    before = view.summaries()
    monitors = worker.partitions[0].engine.monitors
    more, _ = run_monitors(demo_messages(3000, seed=3)[:200], 500, SMALL, monitors={"churn": monitors["churn"]})
    view._next = 0.0  # due now
    assert view.publish(worker.partitions)
    after = view.summaries()
    assert after["churn"] is not before["churn"] and after["churn"].predictions > before["churn"].predictions
    assert all(after[m] is before[m] for m in before if m != "churn")  # unchanged models: the same summary
    assert not view.publish(worker.partitions)  # not due yet, same partitions
    worker.partitions.clear()  # revoked: published at once, not at the next interval
    assert view.publish(worker.partitions)
    assert view.summaries() == {} and view.status()["partitions"] == {}


def test_status_can_be_turned_off(worker):
    server = serve_worker(worker, status_endpoint=False)
    port = server.server_address[1]
    try:
        assert get(port, "/status")[0] == 404
        assert get(port, "/metrics")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def _http_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("http"))


def test_idle_connections_hold_neither_threads_nor_the_server():
    server = serve(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        Health(),
        lambda: {},
        threads=2,
        max_connections=8,
        timeout_s=0.5,
    )
    port = server.server_address[1]
    idle = []
    try:
        for _ in range(40):  # connect, send nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle.append(sock)
        time.sleep(0.2)  # let the server accept them all (no assertion on time: the bound below is exact)
        # the serve loop, the deadline watchdog and at most 2 handlers, whatever the number of clients
        assert _http_threads() <= 4
        for sock in idle:  # each is closed by the server: at once over the cap, at its deadline within it
            assert sock.recv(1024) == b""
        assert get(port, "/healthz")[0] == 200  # and the server still answers
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()


def test_headers_sent_one_byte_at_a_time_are_cut_off_at_the_deadline():
    server = serve("127.0.0.1", 0, CollectorRegistry(), Health(), lambda: {}, threads=1, timeout_s=0.5)
    port = server.server_address[1]
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sent = 0
        request = b"GET /healthz HTTP/1.0\r\n" + b"X-Slow: " + b"a" * 10_000
        with pytest.raises(OSError):  # the server shuts the connection: a write fails
            for byte in request:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.01)
        assert sent < len(request)  # never let it finish: ~100 s at this pace
    finally:
        sock.close()
        server.shutdown()
        server.server_close()


def test_liveness_and_readiness_answer_while_slow_clients_hold_every_thread():
    """Issue 17 review, hole 5: /healthz waited behind slow clients for one of the 4 threads, so a probe
    could fail (and the worker be restarted) because of someone else's scrape."""
    release = threading.Event()
    busy = threading.Semaphore(0)

    def stuck_status() -> dict:  # a /status whose client reads slowly: it holds its thread until released
        busy.release()
        release.wait(60)
        return {}

    health = Health()
    server = serve("127.0.0.1", 0, CollectorRegistry(), health, stuck_status, threads=4, timeout_s=60)
    port = server.server_address[1]
    held = []
    try:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /status HTTP/1.0\r\n\r\n")
            held.append(sock)
            assert busy.acquire(timeout=10)  # every thread of the pool now held
        for _ in range(3):  # and more clients still sending their headers, byte by byte
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
        assert get(port, "/healthz") == (200, b"ok\n")
        assert get(port, "/readyz?full=1") == (503, b"not ready\n")
        health.ready = True
        assert get(port, "/readyz") == (200, b"ready\n")
    finally:
        release.set()
        for sock in held:
            sock.close()
        server.shutdown()
        server.server_close()


def test_a_client_that_goes_away_is_one_json_log_line_not_a_traceback(caplog, capfd):
    answered = threading.Event()
    client_gone = threading.Event()

    def slow_status() -> dict:
        answered.set()
        client_gone.wait(10)  # the client resets the connection before the answer is written
        return {"models": {}}

    server = serve("127.0.0.1", 0, CollectorRegistry(), Health(), slow_status)
    port = server.server_address[1]
    try:
        with caplog.at_level(logging.INFO, logger="streamdrift.http"):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /status HTTP/1.0\r\n\r\n")
            assert answered.wait(10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # linger 0: a reset, as a client that times out or dies
            client_gone.set()
            deadline = time.monotonic() + 10
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.05)
        assert get(port, "/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    assert [r.getMessage() for r in caplog.records] == ["http client disconnected"]
    line = JsonFormatter().format(caplog.records[0])
    assert "\n" not in line
    assert orjson.loads(line)["error"] in {"ConnectionResetError", "BrokenPipeError"}
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.kafka
def test_a_running_worker_serves_its_view_and_no_status_when_off(kafka_bootstrap, unique_name, tmp_path):
    env = worker_env(
        kafka_bootstrap,
        unique_name("http"),
        tmp_path / "snapshots",
        status_endpoint="false",
        **{f"monitor__{k}": v for k, v in {"reference_size": 500, "window_size": 500, "subwindows": 5}.items()},
    )
    done = streamdrift(env, "topics", "create", "--partitions", "1")
    assert done.returncode == 0, done.stderr
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        messages = demo_messages(2000, seed=5)
        names = {PRED: env["STREAMDRIFT_TOPICS__PREDICTIONS"], FB: env["STREAMDRIFT_TOPICS__FEEDBACK"]}
        produce(kafka_bootstrap, [(names[m.topic], m.key, m.value) for m in messages])
        expected = sum(1 for m in messages if m.topic == PRED)

        def counted() -> float:
            families = text_string_to_metric_families(worker.get("/metrics")[1].decode())
            return sum(
                s.value
                for f in families
                if f.name == "streamdrift_events"
                for s in f.samples
                if s.labels.get("stream") == "predictions"
            )

        worker.wait_for(lambda: counted() == expected, 90, "every prediction counted in /metrics")
        assert worker.get("/status")[0] == 404
        for _ in range(5):  # clients that reset their connection mid-request
            sock = socket.create_connection(("127.0.0.1", worker.port), timeout=10)
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        assert worker.get("/healthz")[0] == 200
        assert worker.stop() == 0
    finally:
        worker.stop(signal.SIGKILL)
    for line in worker.log().splitlines():  # JSON logs only: no traceback from the HTTP server
        orjson.loads(line)


@pytest.mark.kafka
def test_a_worker_whose_metrics_port_is_taken_stops_at_start_naming_the_setting(kafka_bootstrap, unique_name, tmp_path):
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path / "snapshots")
    assert streamdrift(env, "topics", "create", "--partitions", "1").returncode == 0
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = streamdrift({**env, "STREAMDRIFT_METRICS_PORT": str(port)}, "worker", timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "set metrics_port (env STREAMDRIFT_METRICS_PORT) to a free port, or 0 for any" in done.stderr
