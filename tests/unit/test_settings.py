"""Settings: precedence, validation messages that name the setting, secrets never shown."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from streamdrift.core.errors import ConfigError
from streamdrift.runtime.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("STREAMDRIFT_") and not name.startswith("STREAMDRIFT_TEST_"):
            monkeypatch.delenv(name)


def test_environment_wins_over_toml_and_nested_sections_merge(tmp_path, monkeypatch):
    config = tmp_path / "streamdrift.toml"
    config.write_text('batch_size = 50\n[kafka]\nbootstrap_servers = "a:1"\n[monitor]\nwindow_size = 600\n')
    monkeypatch.setenv("STREAMDRIFT_BATCH_SIZE", "70")
    monkeypatch.setenv("STREAMDRIFT_MONITOR__SUBWINDOWS", "3")
    s = load_settings(config)
    assert (s.batch_size, s.kafka.bootstrap_servers, s.monitor.window_size, s.monitor.subwindows) == (70, "a:1", 600, 3)


@pytest.mark.parametrize(
    "env, value, message",
    [
        ("STREAMDRIFT_BATCH_SIZE", "0", "invalid setting batch_size (env STREAMDRIFT_BATCH_SIZE)"),
        ("STREAMDRIFT_KAFKA__SECURITY_PROTOCOL", "TLS", "invalid setting kafka.security_protocol"),
        ("STREAMDRIFT_TOPICS__ALERTS", "bad topic!", "invalid setting topics.alerts (env STREAMDRIFT_TOPICS__ALERTS)"),
        ("STREAMDRIFT_MONITOR__SUBWINDOWS", "7", "invalid setting monitor.subwindows"),
        ("STREAMDRIFT_METRICS_PORT", "70000", "invalid setting metrics_port"),
    ],
)
def test_bad_setting_is_named(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


def test_bad_toml_key_is_named(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[monitor]\npsi_treshold = 0.3\n")
    with pytest.raises(ConfigError, match=r"invalid setting monitor\.psi_treshold"):
        load_settings(config)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_secrets_reach_librdkafka_but_never_the_log_view(monkeypatch):
    monkeypatch.setenv("STREAMDRIFT_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("STREAMDRIFT_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    s = load_settings()
    assert s.kafka.librdkafka()["sasl.password"] == "hunter2"
    assert "hunter2" not in str(s.redacted()) and "hunter2" not in repr(s)


def test_worker_with_a_bad_setting_stops_at_start_naming_it(monkeypatch):
    monkeypatch.setenv("STREAMDRIFT_SNAPSHOT_INTERVAL_S", "-1")
    done = subprocess.run([sys.executable, "-m", "streamdrift", "worker"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "invalid setting snapshot_interval_s (env STREAMDRIFT_SNAPSHOT_INTERVAL_S)" in done.stderr


def test_checkpoint_max_interval_below_the_interval_is_named_and_its_default_follows_a_longer_interval(monkeypatch):
    monkeypatch.setenv("STREAMDRIFT_CHECKPOINT_INTERVAL_S", "300")
    assert load_settings().checkpoint_max_interval_s == 300  # its default, 120, raised to the interval
    monkeypatch.setenv("STREAMDRIFT_CHECKPOINT_MAX_INTERVAL_S", "60")
    with pytest.raises(
        ConfigError, match=r"checkpoint_max_interval_s \(60\) is below checkpoint_interval_s \(300\)"
    ) as bad:
        load_settings()
    # a rule over two settings: named by its message, not by a setting "settings" of env STREAMDRIFT_SETTINGS
    assert str(bad.value).startswith("invalid settings: checkpoint_max_interval_s (60)")
    assert "STREAMDRIFT_SETTINGS" not in str(bad.value)
    monkeypatch.delenv("STREAMDRIFT_CHECKPOINT_INTERVAL_S")
    assert load_settings().checkpoint_max_interval_s == 60


@pytest.mark.parametrize("name", ["checkpoint_interval_s", "snapshot_interval_s", "checkpoint_max_interval_s"])
def test_an_interval_that_never_ends_is_refused_naming_it(monkeypatch, name: str) -> None:
    """``inf`` passed ``gt=0``: a checkpoint_interval_s of inf never checkpointed (and raised the longest
    interval's default to inf), a checkpoint_max_interval_s of inf let the write budget hold a partition's state
    back for as long as the worker ran, so a crash replayed all its input since the start, retention permitting."""
    monkeypatch.setenv(f"STREAMDRIFT_{name.upper()}", "inf")
    with pytest.raises(ConfigError, match=rf"invalid setting {name} \(env STREAMDRIFT_{name.upper()}\)"):
        load_settings()


def test_settings_given_that_do_nothing_with_the_others_are_named() -> None:
    """The write budget applies to the state topic with at_least_once, transactional_id to exactly_once: given
    with other settings, each is named (the worker logs it at start), and nothing is named where none was given."""
    assert Settings().ignored() == []
    assert Settings(state_write_budget=0.5).ignored() == []
    local = Settings(state_store="local", state_write_budget=0.5, checkpoint_max_interval_s=300)
    assert [line.split(" ", 1)[0] for line in local.ignored()] == ["state_write_budget", "checkpoint_max_interval_s"]
    assert 'state_store = "local"' in local.ignored()[0]
    exactly = Settings(processing_guarantee="exactly_once", state_write_budget=0.5)
    assert exactly.ignored() == [
        "state_write_budget is ignored: the write budget is the state topic's with at_least_once (state_store = "
        '"kafka", processing_guarantee = "exactly_once"), whose every checkpoint writes every changed partition'
    ]
    assert Settings(transactional_id="w1").ignored() == [
        'transactional_id is ignored: only processing_guarantee = "exactly_once" has transactions'
    ]
    assert Settings(processing_guarantee="exactly_once", transactional_id="w1").ignored() == []


def test_redacted_hides_secrets_put_in_the_librdkafka_extras() -> None:
    """Issue 17, finding 7: a sasl.password in kafka.extra was logged in clear."""
    s = Settings(
        kafka={
            "extra": {"sasl.password": "hunter2", "sasl.oauthbearer.client.secret": "s3", "client.rack": "eu-1a"},
            "consumer_extra": {"ssl.key.password": "k3y", "SASL.Token": "t0k", "session.timeout.ms": "10000"},
        }
    )
    shown = s.redacted()["kafka"]
    assert not any(secret in str(shown) for secret in ("hunter2", "s3", "k3y", "t0k"))
    assert shown["extra"]["client.rack"] == "eu-1a" and shown["consumer_extra"]["session.timeout.ms"] == "10000"
    assert s.kafka.librdkafka()["sasl.password"] == "hunter2"  # the clients still get it


# Every librdkafka property whose value can hold a secret: those librdkafka itself marks sensitive
# (_RK_SENSITIVE in rdkafka_conf.c), the OIDC client-assertion ones, and the kinit command (a shell line).
SECRET_PROPERTIES = {
    "sasl.username": "u5er",
    "sasl.password": "pa55",
    "sasl.oauthbearer.config": "principal=admin extension_token=0auth",
    "sasl.oauthbearer.client.secret": "c1ient",
    "sasl.oauthbearer.assertion.private.key.passphrase": "pa55phrase",
    "sasl.oauthbearer.assertion.private.key.pem": "-----BEGIN PRIVATE KEY-----pr1v",
    "sasl.oauthbearer.assertion.private.key.file": "/run/secrets/a55ertion.pem",
    "sasl.oauthbearer.assertion.file": "/run/secrets/a55ertion.jwt",
    "sasl.kerberos.keytab": "/run/secrets/keyt4b",
    "sasl.kerberos.kinit.cmd": "echo k1nitpw | kinit admin",
    "ssl.key.location": "/run/secrets/c1ient.key",
    "ssl.key.password": "k3ypw",
    "ssl.key.pem": "-----BEGIN PRIVATE KEY-----k3ypem",
    "ssl_key": "k3yobj",
    "ssl.ca.pem": "-----BEGIN CERTIFICATE-----c4pem",
    "ssl.keystore.password": "st0re",
}


@pytest.mark.parametrize("section", ["extra", "consumer_extra"])
def test_redacted_hides_every_librdkafka_property_that_can_carry_a_secret(section: str) -> None:
    """Issue 17 review: sasl.oauthbearer.config (and others without a secret-looking word) were logged in clear."""
    s = Settings(kafka={section: {**SECRET_PROPERTIES, "client.rack": "eu-1a"}})
    shown = s.redacted()["kafka"][section]
    leaked = [name for name, value in SECRET_PROPERTIES.items() if shown[name] != "**********"]
    assert leaked == []
    assert shown["client.rack"] == "eu-1a"


def test_bounds_and_privacy_settings_reach_the_decoder() -> None:
    s = Settings(max_event_time_skew_s=60, privacy={"redact_values": False, "hash_categories": True})
    bounds = s.input_bounds()
    assert (bounds.max_event_time_skew_s, bounds.redact_values, bounds.hash_categories) == (60, False, True)
    assert Settings().input_bounds().redact_values and Settings().model_idle_ttl_s == 30 * 86400


def test_the_hash_salt_is_a_secret_that_seals_the_state_without_being_written() -> None:
    plain, salted = Settings(), Settings(privacy={"hash_salt": "s3cret"})
    assert salted.input_bounds().hash_salt == "s3cret" and plain.input_bounds().hash_salt is None
    assert "s3cret" not in str(salted.redacted()) and "s3cret" not in repr(salted)
    seal, other = salted.state_seal(), Settings(privacy={"hash_salt": "other"}).state_seal()
    assert "s3cret" not in orjson.dumps(dict(seal.settings)).decode()
    assert len({plain.state_seal().config, seal.config, other.config}) == 3  # another salt: other hashes in state
    assert plain.state_seal().settings == Settings().state_seal().settings  # no salt: the seal of before


def test_an_idle_ttl_one_future_record_could_outrun_stops_the_worker_naming_both_bounds(monkeypatch):
    """One record may stamp its event time ``max_event_time_skew_s`` past its Kafka timestamp, which the broker
    lets be ``topics.max_timestamp_ahead_s`` ahead: the partition's event clock jumps by both, and with a shorter
    ``model_idle_ttl_s`` every other model's next event finds it idle and evicts its state (found by a review:
    five models, one such record, all five evicted). Such settings are refused at start."""
    monkeypatch.setenv("STREAMDRIFT_MODEL_IDLE_TTL_S", "3600")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "invalid setting model_idle_ttl_s (env STREAMDRIFT_MODEL_IDLE_TTL_S)" in message
    assert "max_event_time_skew_s (86400) + topics.max_timestamp_ahead_s (3600)" in message
    monkeypatch.setenv("STREAMDRIFT_MAX_EVENT_TIME_SKEW_S", "600")
    monkeypatch.setenv("STREAMDRIFT_TOPICS__MAX_TIMESTAMP_AHEAD_S", "600")
    assert load_settings().model_idle_ttl_s == 3600
    monkeypatch.setenv("STREAMDRIFT_MODEL_IDLE_TTL_S", "1200")  # equal: the jump reaches the TTL exactly
    with pytest.raises(ConfigError, match="invalid setting model_idle_ttl_s"):
        load_settings()


@pytest.mark.parametrize("model_id", ["churn model", "", "fraud/v2", "x" * 129, "__other__"])
def test_a_model_section_no_model_id_can_match_is_named(tmp_path, model_id):
    """``[models."churn model"]``: the contract's model ids (schemas/, decode.MODEL_ID) never hold a space, so
    the section would apply to no model, silently. A bad setting stops the worker at start, naming it."""
    config = tmp_path / "c.toml"
    config.write_text(f'[models."{model_id}"]\ntask = "classification"\n')
    with pytest.raises(ConfigError, match=r"invalid setting models .* is not a model id events can carry"):
        load_settings(config)


def test_a_model_section_of_a_valid_model_id_is_taken(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[models."churn:v2.1-eu_a"]\ntask = "classification"\n')
    assert list(load_settings(config).models) == ["churn:v2.1-eu_a"]


def test_an_empty_hash_salt_stops_the_worker_naming_it(monkeypatch):
    """``STREAMDRIFT_PRIVACY__HASH_SALT=${HASH_SALT}`` with the variable unset (a compose file) sets it empty: an
    HMAC under an empty key anyone recomputes for every SSN, while the settings say the hashes are salted."""
    monkeypatch.setenv("STREAMDRIFT_PRIVACY__HASH_SALT", "")
    with pytest.raises(ConfigError, match=r"invalid setting privacy\.hash_salt .*empty"):
        load_settings()
