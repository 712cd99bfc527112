"""Settings: environment variables ``STREAMDRIFT_*`` over a TOML file over defaults.

Nested settings use ``__`` in environment names and tables in TOML::

    STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS=broker:9092   # [kafka] bootstrap_servers
    STREAMDRIFT_TOPICS__PREDICTIONS=preds              # [topics] predictions
    STREAMDRIFT_BATCH_SIZE=2000                        # batch_size

``load_settings`` turns any validation failure into a ``ConfigError`` whose
message names the setting and the environment variable that sets it, so a
worker with a bad setting stops at start and says why. An unknown
``STREAMDRIFT_*`` variable is refused too (``STREAMDRIFT_TEST_*`` is left to
the test suite, ``STREAMDRIFT_HOOK_*`` to retrain hooks), since a typo would
otherwise be ignored.
"""

from __future__ import annotations

import hmac
import os
import socket
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from streamdrift.core.config import InputBounds, ModelSettings, MonitorSettings
from streamdrift.core.decode import MODEL_ID, OTHER_MODELS
from streamdrift.core.errors import ConfigError
from streamdrift.core.routing import Misrouted
from streamdrift.core.state import Seal

ENV_PREFIX = "STREAMDRIFT_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)  # as core.config's sections


class KafkaSettings(_Section):
    """Connection to the brokers. Security settings are passed to librdkafka as they are."""

    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    # Any other librdkafka property, e.g. {"client.rack" = "eu-1a"}, for every client.
    extra: dict[str, str] = Field(default_factory=dict)
    # Consumer-only properties, e.g. {"session.timeout.ms" = "10000", "group.instance.id" = "worker-1"}
    # (static membership: a restarted worker gets its partitions back without a rebalance).
    consumer_extra: dict[str, str] = Field(default_factory=dict)

    def librdkafka(self) -> dict[str, str]:
        """The librdkafka configuration these settings describe, secrets revealed."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        for name, value in optional.items():
            if value is not None:
                conf[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        conf.update(self.extra)
        return conf


class PrivacySettings(_Section):
    """What streamdrift keeps and shows of users' values (``core.config.InputBounds`` holds the same fields)."""

    redact_values: bool = Field(
        True, description="dead-letter reasons and logs name the field and the rule, not the value"
    )
    max_category_length: int = Field(
        64, ge=8, description="string feature values longer than this are tracked as a hash (SHA-256, 16 hex digits)"
    )
    hash_categories: bool = Field(False, description="every string feature value is tracked as a hash")
    hash_salt: SecretStr | None = Field(
        None,
        description="a secret: hashes are HMAC-SHA256 under it, so a low-entropy value cannot be found by hashing "
        "every candidate; changing it changes the hashes in state (a snapshot made under another is refused)",
    )

    @field_validator("hash_salt")
    @classmethod
    def _not_empty(cls, salt: SecretStr | None) -> SecretStr | None:
        # an unset variable substituted into STREAMDRIFT_PRIVACY__HASH_SALT: an HMAC under an empty key is no secret
        if salt is not None and not salt.get_secret_value():
            raise ValueError("is empty: an HMAC under an empty key is no secret; set a secret, or leave it unset")
        return salt


# The librdkafka properties whose values `Settings.redacted` hides. Those librdkafka marks sensitive
# (``_RK_SENSITIVE`` in rdkafka_conf.c) whose names carry no secret-looking word, the Kerberos kinit
# command (a shell line, which may hold a password) ...
_SECRET_PROPERTIES = frozenset({"sasl.username", "sasl.oauthbearer.config", "sasl.kerberos.kinit.cmd", "ssl.ca.pem"})
# ... and any name with one of these words: ``*.password``, ``*.secret``, ``ssl.key.*``, ``ssl_key``,
# ``*.keystore.*``, ``*.keytab``, ``sasl.oauthbearer.assertion.*`` (OIDC client assertions and their keys).
_SECRET_WORDS = ("password", "passphrase", "secret", "key", "token", "credential", "assertion", "pem", "jaas")


class TopicSettings(_Section):
    predictions: str = "streamdrift.predictions"
    feedback: str = "streamdrift.feedback"
    alerts: str = "streamdrift.alerts"
    dead_letter: str = "streamdrift.dead-letter"
    # The state of input partition p in partition p (state_store = "kafka"): compacted, the inputs' partition count.
    state: str = "streamdrift.state"
    # Decisions on retrain events (`streamdrift approve` / `reject`, `retrain-listener --require-approval`):
    # compacted, key = alert id, one partition.
    approvals: str = "streamdrift.approvals"
    # Used by `streamdrift topics create`; predictions and feedback always share it.
    partitions: int = Field(3, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=32)
    # `topics create` sets message.timestamp.after.max.ms to this on the input topics, so the broker refuses a
    # record stamped further ahead of its clock: one record of year 9999 would move a partition's event clock
    # (idle models evicted, the merge's epoch stuck there). `topics check` and the worker's start name input
    # topics that accept more.
    max_timestamp_ahead_s: int = Field(3600, ge=1, le=365 * 86400)

    @field_validator("predictions", "feedback", "alerts", "dead_letter", "state", "approvals")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not value or len(value) > 249 or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("a Kafka topic name is 1-249 characters of [a-zA-Z0-9._-]")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    toml_path: ClassVar[Path | None] = None

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    group_id: str = Field("streamdrift", min_length=1)
    batch_size: int = Field(1000, ge=1, le=100_000, description="messages consumed per batch")
    merge_epoch_ms: int = Field(
        100, ge=1, description="record-time epochs in which predictions and feedback are merged (predictions first)"
    )
    max_task_idle_ms: int = Field(
        3000,
        ge=0,
        description="a topic caught up and without a record this long, and this long since the partition's traffic "
        "resumed after a quiet spell, is not waited for by the merge: a forced release, counted "
        "(streamdrift_merge_forced_releases_total), where the order can depart from the log's",
    )
    poll_timeout_s: float = Field(0.5, gt=0, le=60)
    state_store: Literal["kafka", "local"] = Field(
        "kafka",
        description="kafka: state in the compacted topics.state (any worker resumes any partition; snapshot_dir "
        "is its local cache); local: only in snapshot_dir (one worker, or one host per partition set)",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="exactly_once: each checkpoint's drift events, dead letters, state records and input offsets "
        "commit in one Kafka transaction (state_store = kafka only); drift events become visible to read_committed "
        "consumers at the checkpoint, so checkpoint_interval_s bounds alert latency",
    )
    misrouted: Misrouted = Field(
        "forward",
        description="a record on another partition than the one murmur2 maps its key (or, for a null key, its "
        "model_id) to: forward it to that partition of the same topic (written twice), dead_letter it (reason "
        "misrouted), or process it where it landed (its labels may never join)",
    )
    transactional_id: str | None = Field(
        None,
        min_length=1,
        description="exactly_once: the producer's transactional.id, stable for this worker instance across its "
        "restarts (a restart fences its previous incarnation); default <group_id>.<group.instance.id> where "
        "kafka.consumer_extra sets group.instance.id, else <group_id>.<host name>",
    )
    snapshot_dir: Path = Path(".streamdrift/snapshots")
    checkpoint_interval_s: float = Field(10.0, gt=0, allow_inf_nan=False, description="seconds between checkpoints")
    snapshot_interval_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="deprecated name of checkpoint_interval_s (used when that one is not set)",
    )
    state_write_budget: float = Field(
        0.25,
        ge=0,
        description="state_store = kafka, at_least_once: a partition's checkpoint writes its changed models once "
        "the input consumed since its last one, times this, weighs at least what their records are expected to "
        "(state bytes per input byte), or checkpoint_max_interval_s has passed; 0: every checkpoint writes",
    )
    checkpoint_max_interval_s: float = Field(
        120.0,
        gt=0,
        allow_inf_nan=False,  # inf: a partition under its budget never written while the worker runs
        description="the longest a changed partition's state waits for state_write_budget (what a crash replays "
        "at most); at least checkpoint_interval_s (its default is raised to a longer checkpoint_interval_s)",
    )
    snapshot_fork: bool = Field(
        True,
        description="checkpoints written by a forked copy of the worker: a pause of "
        "milliseconds, but memory for the pages the copy reads",
    )
    max_models: int = Field(
        10_000,
        ge=1,
        description="models monitored per input partition (a worker owning n partitions holds up to n times as "
        "many); events of more are counted",
    )
    # issue 17, findings 2, 7 and 8: bounds on input and what is kept of it
    max_event_time_skew_s: float = Field(
        86400, gt=0, description="event times further ahead of the record's Kafka timestamp are dead-lettered"
    )
    model_idle_ttl_s: float | None = Field(
        30 * 86400, gt=0, description="event time without events after which a model's state is evicted; unset: never"
    )
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")
    metrics_max_models: int = Field(100, ge=0, description="models exported with their own model_id label")
    status_endpoint: bool = Field(
        True, description="serve /status (model ids, features, segments, offsets) beside /metrics; off in the container"
    )
    snapshot_key: SecretStr | None = Field(
        None,
        description="a secret: snapshots carry an HMAC-SHA256 under it, and one without it or tampered with is "
        "refused (state topic records too)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple:
        sources: tuple = (init_settings, env_settings)
        if cls.toml_path is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path),)
        return sources

    @field_validator("models")
    @classmethod
    def _model_ids_the_contract_accepts(cls, models: dict[str, ModelSettings]) -> dict[str, ModelSettings]:
        # a section named otherwise would apply to no model, silently: its events are dead-lettered, never monitored
        bad = sorted(model_id for model_id in models if MODEL_ID.fullmatch(model_id) is None)
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))} is not a model id events can carry: 1 to 128 of A-Z a-z 0-9 . _ : -, "
                f"other than {OTHER_MODELS!r}"
            )
        return models

    @field_validator("model_idle_ttl_s")
    @classmethod
    def _longer_than_one_record_can_move_the_clock(cls, ttl: float | None, info: ValidationInfo) -> float | None:
        # One record's event time may be max_event_time_skew_s past its Kafka timestamp, which the broker lets be
        # topics.max_timestamp_ahead_s in the future: the partition's event clock jumps by both at once, and a
        # TTL no longer than that would then find every other model idle and evict its state.
        skew, topics = info.data.get("max_event_time_skew_s"), info.data.get("topics")
        if ttl is None or skew is None or topics is None:
            return ttl  # one of them is invalid itself, and named so
        jump = skew + topics.max_timestamp_ahead_s
        if ttl <= jump:
            raise ValueError(
                f"must be longer than max_event_time_skew_s ({skew:g}) + topics.max_timestamp_ahead_s "
                f"({topics.max_timestamp_ahead_s}) = {jump:g} s: one record stamped that far ahead moves the "
                "partition's event clock by as much, and every model would be evicted at its next event; raise "
                "model_idle_ttl_s or lower the other two"
            )
        return ttl

    @model_validator(mode="after")
    def _deprecated_names(self) -> Settings:
        if self.snapshot_interval_s is not None and "checkpoint_interval_s" not in self.model_fields_set:
            self.checkpoint_interval_s = self.snapshot_interval_s
        return self

    @model_validator(mode="after")
    def _max_interval_not_below_the_interval(self) -> Settings:
        if self.checkpoint_max_interval_s >= self.checkpoint_interval_s:
            return self
        if "checkpoint_max_interval_s" not in self.model_fields_set:  # its default under a longer interval
            self.checkpoint_max_interval_s = self.checkpoint_interval_s
        else:
            raise ValueError(
                f"checkpoint_max_interval_s ({self.checkpoint_max_interval_s:g}) is below checkpoint_interval_s "
                f"({self.checkpoint_interval_s:g}): raise checkpoint_max_interval_s, or lower checkpoint_interval_s"
            )
        return self

    @model_validator(mode="after")
    def _exactly_once_needs_the_state_topic(self) -> Settings:
        if self.processing_guarantee == "exactly_once" and self.state_store != "kafka":
            raise ValueError(
                'processing_guarantee = "exactly_once" needs state_store = "kafka": the state records commit in '
                "the same transaction as the drift events and the input offsets"
            )
        return self

    def ignored(self) -> list[str]:
        """Settings given that do nothing with the others, each with why (the worker logs them at start): a user
        who set one expects it to do something."""
        given, out = self.model_fields_set, []
        budget = [name for name in ("state_write_budget", "checkpoint_max_interval_s") if name in given]
        if budget and (self.state_store != "kafka" or self.processing_guarantee == "exactly_once"):
            out += [
                f"{name} is ignored: the write budget is the state topic's with at_least_once (state_store = "
                f'"{self.state_store}", processing_guarantee = "{self.processing_guarantee}"), whose every '
                "checkpoint writes every changed partition"
                for name in budget
            ]
        if "transactional_id" in given and self.processing_guarantee != "exactly_once":
            out.append('transactional_id is ignored: only processing_guarantee = "exactly_once" has transactions')
        return out

    def effective_transactional_id(self) -> str:
        """``transactional_id``, or one derived from what identifies this worker instance across restarts."""
        if self.transactional_id is not None:
            return self.transactional_id
        instance = self.kafka.consumer_extra.get("group.instance.id") or socket.gethostname()
        return f"{self.group_id}.{instance}"

    def input_bounds(self) -> InputBounds:
        """What the decoder accepts and shows, from ``max_event_time_skew_s`` and ``privacy``."""
        salt = self.privacy.hash_salt
        return InputBounds(
            max_event_time_skew_s=self.max_event_time_skew_s,
            hash_salt=salt.get_secret_value() if salt is not None else None,
            **self.privacy.model_dump(exclude={"hash_salt"}),
        )

    def engine_settings(self) -> dict[str, Any]:
        """The ``core.engine.PartitionEngine`` arguments that shape a partition's state, as the worker and
        ``streamdrift replay`` both pass them, so that a backtest keeps the state a worker keeps."""
        return {
            "epoch_ms": self.merge_epoch_ms,
            "max_models": self.max_models,
            "batch_size": self.batch_size,
            "bounds": self.input_bounds(),
            "model_idle_ttl_s": self.model_idle_ttl_s,
        }

    def state_seal(self, cluster_id: str | None = None) -> Seal:
        """What checkpoints are written under and checked against, in either store (``core.state.Seal``).

        The settings that shape a model's state (detection, per-model, the input bounds and privacy rules,
        the idle-model TTL), the Kafka cluster, consumer group and input topics the state belongs to, and
        ``snapshot_key``. A checkpoint made under other ones is refused with a message naming what differs,
        so neither a changed setting nor another deployment's directory or topic can silently rewind or
        reshape a model.

        ``cluster_id``: the id the broker's metadata gives (``kafka.cluster_id``); the worker learns it at
        start, ``streamdrift status --state-topic`` too. A reader that does not connect passes none
        (``status --snapshots``): the cluster is then not checked, group and topics still are. A checkpoint
        written before the cluster was recorded loads under any cluster id (the upgrade path).
        """
        shaping: dict[str, Any] = {
            "monitor": self.monitor.model_dump(mode="json"),
            "models": {m: s.model_dump(mode="json") for m, s in sorted(self.models.items())},
            "bounds": self.input_bounds().model_dump(mode="json"),
            "model_idle_ttl_s": self.model_idle_ttl_s,
        }
        if self.privacy.hash_salt is not None:  # which salt, never the salt: an HMAC of a constant under it
            salt = self.privacy.hash_salt.get_secret_value().encode()
            shaping["category_hash_key"] = hmac.new(salt, b"streamdrift category hash key", "sha256").hexdigest()[:16]
        identity: dict[str, Any] = {"group": self.group_id, "topics": [self.topics.predictions, self.topics.feedback]}
        if cluster_id is not None:
            identity["cluster"] = cluster_id
        key = self.snapshot_key.get_secret_value().encode() if self.snapshot_key is not None else None
        return Seal.of(shaping, identity, key)

    def redacted(self) -> dict:
        """The settings as a dict safe to log: SecretStr prints as '**********', and so does any value of
        ``kafka.extra`` / ``kafka.consumer_extra`` whose property can carry a secret (``sasl.password``,
        ``sasl.oauthbearer.config``, ``sasl.oauthbearer.client.secret``, ``ssl.key.pem``...: ``_is_secret``)."""
        doc = orjson.loads(orjson.dumps(self.model_dump(mode="json")))
        for section in ("extra", "consumer_extra"):
            properties = doc["kafka"][section]
            for name in properties:
                if _is_secret(name):
                    properties[name] = "**********"
        return doc


def _is_secret(librdkafka_property: str) -> bool:
    name = librdkafka_property.lower()
    return name in _SECRET_PROPERTIES or any(word in name for word in _SECRET_WORDS)


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The settings section a field holds (``X`` or ``X | None``), if any."""
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    for candidate in typing.get_args(annotation) if union else (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def setting_path(env_name: str, model: type[BaseModel] = Settings) -> tuple[str, ...]:
    """The setting an environment variable sets: ``("kafka", "bootstrap_servers")``.

    Resolved as the loader does: the prefix, then names split on ``__``,
    case-insensitive; a dict-valued field (``kafka.extra``) takes one more key.
    Raises ``ConfigError`` naming the part that matches no setting, because
    pydantic-settings would silently ignore a misspelt name.

    >>> setting_path("STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS")
    ('kafka', 'bootstrap_servers')
    >>> setting_path("STREAMDRIFT_METRICS__PORT")
    Traceback (most recent call last):
    ...
    streamdrift.core.errors.ConfigError: STREAMDRIFT_METRICS__PORT: 'metrics' is not a setting of Settings; known: ...
    """
    if not env_name.upper().startswith(ENV_PREFIX):
        raise ConfigError(f"{env_name}: does not start with {ENV_PREFIX}")
    parts = env_name[len(ENV_PREFIX) :].lower().split("__")
    path: list[str] = []
    current: type[BaseModel] | None = model
    for i, part in enumerate(parts):
        where = ".".join(path) or model.__name__
        if current is None:
            raise ConfigError(f"{env_name}: {where} has no sub-settings, {part!r} sets nothing")
        fields = current.model_fields
        if part not in fields:
            raise ConfigError(f"{env_name}: {part!r} is not a setting of {where}; known: {', '.join(sorted(fields))}")
        path.append(part)
        annotation = fields[part].annotation
        rest = parts[i + 1 :]
        if rest and (annotation is dict or typing.get_origin(annotation) is dict):
            if len(rest) != 1 or not rest[0]:
                raise ConfigError(f"{env_name}: {'.'.join(path)} takes one key, not {'__'.join(rest)!r}")
            return (*path, rest[0])
        current = _section_model(annotation)
    return tuple(path)


def env_name(loc: tuple) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment and the optional TOML file.

    Raises ``ConfigError`` naming the first bad setting.
    """
    if config is not None and not Path(config).is_file():
        raise ConfigError(f"config file {config} does not exist (--config)")
    for name in os.environ:
        upper = name.upper()
        # STREAMDRIFT_TEST_* belong to the test suite, STREAMDRIFT_HOOK_* to the retrain listener's hooks
        if upper.startswith(ENV_PREFIX) and not upper.startswith((ENV_PREFIX + "TEST_", ENV_PREFIX + "HOOK_")):
            setting_path(name)
    cls = type("FileSettings", (Settings,), {"toml_path": Path(config) if config else None})
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not isinstance(p, int))
            if not loc:  # a rule over several settings (a model validator), whose message names them
                problems.append(f"invalid settings: {err['msg'].removeprefix('Value error, ')}")
                continue
            dotted = ".".join(str(p) for p in loc)
            problems.append(f"invalid setting {dotted} (env {env_name(loc)}): {err['msg']}")
        raise ConfigError("; ".join(problems)) from None
    except ValueError as exc:  # e.g. malformed TOML or JSON in an env value
        raise ConfigError(f"cannot read settings: {exc}") from None
