"""processing_guarantee and transactional_id (issue 16): what the settings accept and the id they give."""

from __future__ import annotations

import socket

import pytest

from streamdrift.core.errors import ConfigError
from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def no_streamdrift_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("STREAMDRIFT_"):
            monkeypatch.delenv(name)


def test_at_least_once_is_the_default_and_its_producer_is_not_transactional() -> None:
    settings = Settings()
    assert settings.processing_guarantee == "at_least_once"
    assert "transactional.id" not in kafka.worker_producer_config(settings)


def test_exactly_once_needs_the_state_topic() -> None:
    with pytest.raises(ConfigError, match='exactly_once" needs state_store = "kafka"'):
        load_settings(processing_guarantee="exactly_once", state_store="local")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"transactional_id": "worker-a"}, "worker-a"),
        ({"kafka": {"consumer_extra": {"group.instance.id": "pod-1"}}}, "sd.pod-1"),
        ({}, f"sd.{socket.gethostname()}"),
    ],
)
def test_the_transactional_id_is_stable_per_instance(overrides: dict, expected: str) -> None:
    settings = Settings(group_id="sd", processing_guarantee="exactly_once", **overrides)
    assert settings.effective_transactional_id() == expected
    config = kafka.worker_producer_config(settings)
    assert config["transactional.id"] == expected
    assert config["enable.idempotence"] is True


def test_the_transaction_timeout_covers_a_checkpoint_interval_within_the_brokers_cap() -> None:
    short = Settings(processing_guarantee="exactly_once", checkpoint_interval_s=10)
    assert kafka.worker_producer_config(short)["transaction.timeout.ms"] == 70_000
    long = Settings(processing_guarantee="exactly_once", checkpoint_interval_s=3600)
    assert kafka.worker_producer_config(long)["transaction.timeout.ms"] == kafka.TRANSACTION_TIMEOUT_CAP_MS
