"""Every error streamdrift raises on purpose, with a message saying what to do next."""


class StreamdriftError(Exception):
    """Base class of streamdrift's own errors."""


class ConfigError(StreamdriftError):
    """A setting is invalid; the message names the setting."""


class SnapshotError(StreamdriftError):
    """A snapshot cannot be loaded; the message says how to recover."""
