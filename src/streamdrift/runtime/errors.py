"""Errors of the Kafka runtime, with a message saying what to do next."""

from streamdrift.core.errors import StreamdriftError


class TopicError(StreamdriftError):
    """Topics are missing or not co-partitioned."""


class DeliveryError(StreamdriftError):
    """The producer could not deliver a record (drift event or dead letter)."""


class StateTopicError(StreamdriftError):
    """The state topic is missing, does not fit the inputs, or holds a damaged partition."""


class TransactionError(StreamdriftError):
    """The transactional producer failed for good (fenced by a newer instance, or a fatal error)."""
