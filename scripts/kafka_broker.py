"""Start and stop a real local Kafka broker for tests, via ``scripts/kafka``.

``start_broker(data_dir)`` picks two free loopback ports, runs
``scripts/kafka start`` with ``KAFKA_PORT`` / ``KAFKA_CONTROLLER_PORT`` /
``KAFKA_DATA_DIR`` set, and returns a :class:`Broker` whose ``.stop()`` runs
``scripts/kafka stop`` with the same environment (so it only ever stops the
process recorded in that data dir's pid file).

Jars are cached in ``KAFKA_CACHE_DIR`` (see scripts/kafka), inherited from the
environment, so only the first start on a machine needs Maven.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO_ROOT / "scripts" / "kafka"

# Extra time allowed for the subprocess beyond KAFKA_START_TIMEOUT: the very
# first start also downloads the broker jars with Maven.
_RESOLVE_ALLOWANCE_S = 900
_STOP_TIMEOUT_S = 60
_PORT_RETRIES = 3


class BrokerStartError(RuntimeError):
    """The broker could not be started (no java/mvn, port clash, timeout...)."""


def in_ci() -> bool:
    """True when running under CI (env ``CI`` set to true/1/yes)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def broker_unavailable(reason: str) -> None:
    """Fail (under CI) or skip (locally) a test that needs a broker it cannot get.

    Under CI a Kafka test must never be skipped silently.
    """
    if in_ci():
        pytest.fail(f"Kafka broker unavailable (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(f"Kafka broker unavailable: {reason}")


def free_ports(count: int = 2) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open at once while picking)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Broker:
    """A broker started by ``scripts/kafka`` in ``data_dir``."""

    data_dir: Path
    port: int
    controller_port: int
    env: dict[str, str] = field(repr=False)
    start_output: str = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(
        self, command: str, *, timeout: float | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/kafka <command>`` with this broker's environment."""
        env = dict(self.env)
        if extra_env:
            env.update(extra_env)
        return subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """(Re)start on the same ports and data dir; raises BrokerStartError on failure."""
        timeout = int(self.env.get("KAFKA_START_TIMEOUT", "90")) + _RESOLVE_ALLOWANCE_S
        try:
            proc = self.run("start", timeout=timeout, extra_env=extra_env)
        except subprocess.TimeoutExpired as exc:
            self._stop_quietly()
            raise BrokerStartError(f"scripts/kafka start did not return within {timeout}s") from exc
        self.start_output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            self._stop_quietly()
            raise BrokerStartError(f"scripts/kafka start exited {proc.returncode}:\n{self.start_output.strip()}")
        return proc

    def status(self) -> int:
        """Exit code of ``scripts/kafka status``: 0 running, 3 stopped."""
        return self.run("status", timeout=30).returncode

    def stop(self) -> None:
        """Stop this broker (only the pid recorded in its data dir). Idempotent."""
        proc = self.run("stop", timeout=_STOP_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/kafka stop exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")

    def _stop_quietly(self) -> None:
        try:
            self.stop()
        except (OSError, RuntimeError, subprocess.SubprocessError):
            pass

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_broker(
    data_dir: Path, *, start_timeout: int | None = None, extra_env: dict[str, str] | None = None
) -> Broker:
    """Start a broker on two free loopback ports with its data in ``data_dir``.

    ``data_dir`` should be fresh (e.g. from ``tmp_path``); it is created if
    missing. Raises :class:`BrokerStartError` if the broker cannot be started.
    """
    if not os.access(KAFKA_SCRIPT, os.X_OK):
        raise BrokerStartError(f"{KAFKA_SCRIPT} is missing or not executable")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    last_error: BrokerStartError | None = None
    for _ in range(_PORT_RETRIES):
        port, controller_port = free_ports(2)
        env = dict(os.environ)
        env.update(
            KAFKA_PORT=str(port),
            KAFKA_CONTROLLER_PORT=str(controller_port),
            KAFKA_DATA_DIR=str(data_dir),
        )
        if start_timeout is not None:
            env["KAFKA_START_TIMEOUT"] = str(start_timeout)
        if extra_env:
            env.update(extra_env)
        broker = Broker(data_dir=data_dir, port=port, controller_port=controller_port, env=env)
        try:
            broker.start()
        except BrokerStartError as exc:
            # Someone grabbed a port between picking and binding: try new ports.
            text = str(exc)
            if "already in use" in text or "Address already in use" in text:
                last_error = exc
                continue
            raise
        except FileNotFoundError as exc:  # e.g. no bash
            raise BrokerStartError(f"cannot run {KAFKA_SCRIPT}: {exc}") from exc
        return broker
    assert last_error is not None
    raise last_error


def stop_broker(data_dir: Path) -> None:
    """Stop the broker whose pid file is in ``data_dir`` (``scripts/kafka stop``), if it runs. Idempotent."""
    env = dict(os.environ, KAFKA_DATA_DIR=str(Path(data_dir).resolve()))
    for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT"):
        env.pop(name, None)  # only the data dir's pid file decides what is stopped
    proc = subprocess.run(
        [str(KAFKA_SCRIPT), "stop"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=_STOP_TIMEOUT_S
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/kafka stop exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


def shared_broker(shared_dir: Path, ready_timeout: float = 30.0) -> str:
    """``host:port`` of the one broker that several test processes share (pytest-xdist workers).

    The first process to ask starts it in ``shared_dir/kafka`` and writes its address to
    ``shared_dir/bootstrap``; the others, serialised by a lock on ``shared_dir/lock``, read it. A start
    that failed is written to ``shared_dir/error`` so that the others fail at once with the same reason
    (no second attempt of a minute and a half). Nobody here stops it: whoever chose ``shared_dir`` does,
    once every process is done (:func:`stop_broker` on ``shared_dir/kafka``).
    """
    shared_dir.mkdir(parents=True, exist_ok=True)
    address, error = shared_dir / "bootstrap", shared_dir / "error"
    with open(shared_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if address.exists():
            return address.read_text()
        if error.exists():
            raise BrokerStartError(error.read_text())
        try:
            broker = start_broker(shared_dir / "kafka")
            wait_ready(broker.bootstrap, timeout=ready_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure means "no broker", for every process
            error.write_text(f"the shared broker in {shared_dir}: {exc}")
            raise BrokerStartError(error.read_text()) from exc
        address.write_text(broker.bootstrap)
        return broker.bootstrap


def wait_ready(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until ``bootstrap`` answers a metadata request with at least one broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 5000})
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s: {last_error}")
        try:
            metadata = admin.list_topics(timeout=min(5.0, max(remaining, 0.5)))
            if metadata.brokers:
                return
            last_error = RuntimeError("metadata lists no brokers yet")
        except KafkaException as exc:
            last_error = exc
        time.sleep(0.2)
