"""The Kafka edge: client configurations and topic administration.

Producers use the murmur2 partitioner, as Java producers do, so a model's
events land on the same partition whoever wrote them; consumers use the range
assignor, which gives partition ``p`` of every subscribed topic to the same
member, so predictions and feedback of a model meet in one worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from streamdrift.runtime import deadletter
from streamdrift.runtime.errors import StateTopicError, TopicError
from streamdrift.runtime.settings import Settings

log = logging.getLogger("streamdrift.kafka")


def _client(settings: Settings) -> dict:
    # librdkafka's own log lines go through logging, so they come out as JSON lines too
    return {**settings.kafka.librdkafka(), "logger": logging.getLogger("streamdrift.librdkafka")}


def consumer_config(settings: Settings, **overrides: object) -> dict:
    return {
        **_client(settings),
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "isolation.level": "read_committed",
        **settings.kafka.consumer_extra,
        **overrides,
    }


def producer_config(settings: Settings, **overrides: object) -> dict:
    return {
        **_client(settings),
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 20,
        "compression.type": "lz4",
        **overrides,
    }


LIBRDKAFKA_BATCH_SIZE = 1_000_000  # librdkafka's batch.size default
# The broker aborts a transaction open longer than this; it caps it with transaction.max.timeout.ms (15 min)
TRANSACTION_TIMEOUT_CAP_MS = 900_000


def worker_producer_config(settings: Settings, max_batch_bytes: int | None = None) -> dict:
    """The worker's producer: transactional with ``processing_guarantee = "exactly_once"``.

    A transaction stays open from one checkpoint to the next, so its timeout is the checkpoint
    interval plus a minute for the checkpoint itself (within the broker's default cap).
    ``max_batch_bytes``: keep batches under it (``batch.size``; the broker judges a whole batch
    against a topic's ``max.message.bytes``) where it is under librdkafka's default; a record
    larger than it still goes, alone in its batch.
    """
    overrides: dict[str, object] = {}
    if max_batch_bytes is not None and max_batch_bytes < LIBRDKAFKA_BATCH_SIZE:
        overrides["batch.size"] = max(max_batch_bytes, 1)
    if settings.processing_guarantee == "exactly_once":
        overrides["transactional.id"] = settings.effective_transactional_id()
        overrides["transaction.timeout.ms"] = min(
            int(settings.checkpoint_interval_s * 1000) + 60_000, TRANSACTION_TIMEOUT_CAP_MS
        )
    return producer_config(settings, **overrides)


def admin(settings: Settings) -> AdminClient:
    return AdminClient(_client(settings))


def partition_counts(client: AdminClient, topics: list[str], timeout: float = 10.0) -> dict[str, int]:
    """Partitions per existing topic among ``topics``; missing topics are left out."""
    try:
        metadata = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicError(
            f"cannot reach Kafka to read topic metadata: {exc}. "
            "Check kafka.bootstrap_servers (env STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS)."
        ) from None
    return {
        t: len(metadata.topics[t].partitions)
        for t in topics
        if t in metadata.topics and metadata.topics[t].error is None
    }


def cluster_id(client: AdminClient, timeout: float = 10.0) -> str | None:
    """The id of the Kafka cluster ``client`` is connected to (None from a broker too old to tell)."""
    try:
        return client.list_topics(timeout=timeout).cluster_id
    except KafkaException as exc:
        raise TopicError(
            f"cannot reach Kafka to read the cluster id: {exc}. "
            "Check kafka.bootstrap_servers (env STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS)."
        ) from None


def check_topics(settings: Settings, client: AdminClient | None = None) -> int:
    """Refuse to start on missing or non co-partitioned topics; return the partition count."""
    t = settings.topics
    names = [t.predictions, t.feedback, t.alerts, t.dead_letter]
    counts = partition_counts(client or admin(settings), names)
    missing = [n for n in names if n not in counts]
    if missing:
        raise TopicError(f"topic(s) {', '.join(missing)} do not exist; create them with `streamdrift topics create`")
    if counts[t.predictions] != counts[t.feedback]:
        raise TopicError(
            f"topics are not co-partitioned: {t.predictions} has {counts[t.predictions]} partitions and "
            f"{t.feedback} has {counts[t.feedback]}; a model's predictions and feedback must land on the same "
            "partition number. Recreate one of them with the other's partition count."
        )
    if settings.state_store == "kafka":
        check_state_topic(settings, counts[t.predictions], client or admin(settings))
    return counts[t.predictions]


STATE_TOPIC_CONFIG = {"cleanup.policy": "compact"}


def check_state_topic(settings: Settings, partitions: int, client: AdminClient) -> int:
    """Refuse a state topic that is missing, not compacted or not partitioned like the inputs;
    return its ``max.message.bytes``."""
    name = settings.topics.state
    fix = (
        f"Create it with `streamdrift topics create`, or recreate it with {partitions} partitions and "
        'cleanup.policy=compact (or set state_store = "local" for a single worker without a state topic)'
    )
    counts = partition_counts(client, [name])
    if name not in counts:
        raise StateTopicError(f"state topic {name} (topics.state) does not exist. {fix}")
    if counts[name] != partitions:
        raise StateTopicError(
            f"state topic {name} has {counts[name]} partitions and the input topics have {partitions}: "
            f"partition p of the state topic holds input partition p's state. {fix}"
        )
    resource = ConfigResource(ResourceType.TOPIC, name)
    try:
        config = client.describe_configs([resource])[resource].result(timeout=30)
    except KafkaException as exc:
        raise StateTopicError(f"cannot read the configuration of state topic {name}: {exc}") from None
    policy = config["cleanup.policy"].value
    if policy != "compact":
        raise StateTopicError(
            f"state topic {name} has cleanup.policy={policy}, not compact: deletion by time or size "
            f"would lose the state of models that have not changed for a while. {fix}"
        )
    return int(config["max.message.bytes"].value)


def check_approvals_topic(client: AdminClient, name: str) -> int:
    """Refuse an approvals topic that is missing or deletes by age or size; return its partition count.

    The decisions on it are the audit trail and the record a restarted retrain listener acts on, so deletion by
    time or size would lose them. Where its configuration cannot be read (no DescribeConfigs permission), say so
    in the log and go on: a listener allowed to read and write the decisions can still work."""
    partitions = partition_counts(client, [name]).get(name)
    if not partitions:
        raise TopicError(
            f"approvals topic {name!r} does not exist: create it with `streamdrift topics create` "
            "(or name another with topics.approvals / --approvers-topic)"
        )
    resource = ConfigResource(ResourceType.TOPIC, name)
    try:
        policy = client.describe_configs([resource])[resource].result(timeout=30)["cleanup.policy"].value
    except KafkaException as exc:
        log.warning(
            "cannot read the approvals topic's cleanup.policy", extra={"fields": {"topic": name, "error": str(exc)}}
        )
        return partitions
    if policy != "compact":
        raise TopicError(
            f"approvals topic {name!r} has cleanup.policy={policy}, not compact: decisions, the audit trail, would be "
            "deleted by age. Recreate it with cleanup.policy=compact (`streamdrift topics create` makes it so)"
        )
    return partitions


def dead_letter_max_bytes(settings: Settings, client: AdminClient) -> int:
    """The largest key + value + headers a dead letter may carry (``deadletter.max_bytes``), under the
    dead-letter topic's ``max.message.bytes`` and the producer's ``message.max.bytes``. Where the topic's
    configuration cannot be read (no DescribeConfigs permission), under the producer's alone: a delivery
    that then fails for its size is written again without its value (at least once)."""
    return max_record_bytes(settings, client, [settings.topics.dead_letter])


def max_record_bytes(settings: Settings, client: AdminClient, topics: list[str]) -> int:
    """The largest key + value + headers a record the worker produces to any of ``topics`` may carry
    (``deadletter.max_bytes``): under their ``max.message.bytes`` and the producer's ``message.max.bytes``,
    or the producer's alone where a topic's configuration cannot be read."""
    producer_max = int(worker_producer_config(settings).get("message.max.bytes", deadletter.PRODUCER_MAX_MESSAGE_BYTES))
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    limits = []
    try:
        for future in client.describe_configs(resources).values():
            limits.append(int(future.result(timeout=30)["max.message.bytes"].value))
    except KafkaException as exc:
        log.warning("cannot read a topic's max.message.bytes", extra={"fields": {"topics": topics, "error": str(exc)}})
    return deadletter.max_bytes(min(limits) if limits else None, producer_max)


TIMESTAMP_AHEAD_CONFIG = "message.timestamp.after.max.ms"


def input_topic_config(settings: Settings) -> dict[str, str]:
    """The configuration ``create_topics`` gives the predictions and feedback topics: the broker refuses a record
    stamped more than ``topics.max_timestamp_ahead_s`` ahead of its clock (KIP-937, Kafka 3.6+)."""
    return {TIMESTAMP_AHEAD_CONFIG: str(settings.topics.max_timestamp_ahead_s * 1000)}


def future_timestamp_warnings(settings: Settings, client: AdminClient) -> list[str]:
    """One line per input topic whose broker accepts records stamped further ahead than
    ``topics.max_timestamp_ahead_s`` (CreateTime and a larger ``message.timestamp.after.max.ms``), naming the fix.
    A topic stamped by the broker (LogAppendTime) cannot be. Where the configuration cannot be read, say so in
    the log and return nothing: the worker works all the same."""
    bound_ms = settings.topics.max_timestamp_ahead_s * 1000
    topics = [settings.topics.predictions, settings.topics.feedback]
    resources = {name: ConfigResource(ResourceType.TOPIC, name) for name in topics}
    try:
        futures = client.describe_configs(list(resources.values()))
        configs = {name: futures[resource].result(timeout=30) for name, resource in resources.items()}
    except KafkaException as exc:
        log.warning(
            "cannot read the input topics' message.timestamp.after.max.ms",
            extra={"fields": {"topics": topics, "error": str(exc)}},
        )
        return []
    lines = []
    for name, config in configs.items():
        if config["message.timestamp.type"].value == "LogAppendTime" or TIMESTAMP_AHEAD_CONFIG not in config:
            continue  # stamped by the broker, or a broker older than KIP-937 (3.6), which cannot bound it
        ahead_ms = int(config[TIMESTAMP_AHEAD_CONFIG].value)
        if ahead_ms > bound_ms:
            lines.append(
                f"input topic {name} accepts records stamped up to {ahead_ms} ms ahead of the broker's clock "
                f"({TIMESTAMP_AHEAD_CONFIG}); one record stamped far in the future moves its partition's event "
                f"clock for good. Bound it: kafka-configs --alter --entity-type topics --entity-name {name} "
                f"--add-config {TIMESTAMP_AHEAD_CONFIG}={bound_ms}"
            )
    return lines


def create_topics(settings: Settings, partitions: int | None = None, client: AdminClient | None = None) -> list[str]:
    """Create the four topics (inputs with equal partition counts), the compacted approvals topic (one
    partition: a few decisions, read whole by every listener) and, with ``state_store = "kafka"``, the
    compacted state topic partitioned like the inputs; return those created.

    A topic that another creator (another ``streamdrift topics create`` at the same time) made between the look
    at the existing topics and the creation is not an error: it is left out of those returned, and
    ``check_topics``, which follows, verifies it as any other (partitions, the state topic's cleanup policy)."""
    t = settings.topics
    client = client or admin(settings)
    existing = partition_counts(client, [t.predictions, t.feedback, t.alerts, t.dead_letter, t.state, t.approvals])
    n = partitions or existing.get(t.predictions) or t.partitions
    wanted = [
        NewTopic(t.predictions, n, t.replication_factor, config=input_topic_config(settings)),
        NewTopic(t.feedback, n, t.replication_factor, config=input_topic_config(settings)),
        NewTopic(t.alerts, n, t.replication_factor),
        NewTopic(t.dead_letter, n, t.replication_factor),
        NewTopic(t.approvals, 1, t.replication_factor, config={"cleanup.policy": "compact"}),
    ]
    if settings.state_store == "kafka":
        wanted.append(NewTopic(t.state, n, t.replication_factor, config=dict(STATE_TOPIC_CONFIG)))
    todo = [nt for nt in wanted if nt.topic not in existing]
    created = []
    if todo:
        created = _create(client, todo)
        _wait_until_listed(client, [nt.topic for nt in todo])
    return created


def _create(client: AdminClient, topics: list[NewTopic]) -> list[str]:
    """Create ``topics``; return those this call made (one another creator made meanwhile is left out).

    A broker older than KIP-937 (Kafka 3.6) refuses the input topics' ``message.timestamp.after.max.ms`` as an
    unknown config: those topics are made without it, with a warning, since such a broker has no bound to set."""
    created, again = [], []
    futures = client.create_topics(topics, operation_timeout=30)
    for nt in topics:
        try:
            futures[nt.topic].result()
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another creator's
            if error.code() == KafkaError.INVALID_CONFIG and TIMESTAMP_AHEAD_CONFIG in (nt.config or {}):
                log.warning(
                    "this broker does not know message.timestamp.after.max.ms (Kafka before 3.6): the input topic "
                    "is made without a bound on future timestamps",
                    extra={"fields": {"topic": nt.topic, "error": error.str()}},
                )
                config = {k: v for k, v in (nt.config or {}).items() if k != TIMESTAMP_AHEAD_CONFIG}
                again.append(NewTopic(nt.topic, nt.num_partitions, nt.replication_factor, config=config))
                continue
            raise
        created.append(nt.topic)
    return created + (_create(client, again) if again else [])


def _wait_until_listed(client: AdminClient, topics: list[str], timeout: float = 30.0) -> None:
    """Return once the broker's metadata lists ``topics`` (or after ``timeout``: the check that follows says
    what is missing). A broker acknowledges a creation once its controller committed it; the metadata that
    ``list_topics`` reads catches up a moment later, and a check in that moment would call the topics missing."""
    poll_until(lambda: len(partition_counts(client, topics)) == len(topics), timeout)


def poll_until(ready: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Ask ``ready`` every ``interval_s`` until it says True (return True) or ``timeout_s`` passed (return False);
    it is asked at least once.

    >>> answers = iter([False, False, True, False])
    >>> poll_until(lambda: next(answers), timeout_s=30, interval_s=0), next(answers)  # asked three times
    (True, False)
    >>> poll_until(lambda: False, timeout_s=0, interval_s=0)
    False
    """
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True
