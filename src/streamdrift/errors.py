"""Every error streamdrift raises on purpose, with a message saying what to do next."""


class StreamdriftError(Exception):
    """Base class of streamdrift's own errors."""


class ConfigError(StreamdriftError):
    """A setting is invalid; the message names the setting."""


class TopicError(StreamdriftError):
    """Topics are missing or not co-partitioned."""


class SnapshotError(StreamdriftError):
    """A snapshot cannot be loaded; the message says how to recover."""


class DeliveryError(StreamdriftError):
    """The producer could not deliver a record (drift event or dead letter)."""
