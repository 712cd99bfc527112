"""Snapshots: the state of one input partition and the input offsets it reflects.

A snapshot file is two lines of JSON::

    {"format": "streamdrift-snapshot", "version": 1, "config": "<settings hash>", "sha256": "<of line 2>"}
    {"merge": {...}, "models": {"<model_id>": {...}, ...}, "offsets": {"<topic>": <next offset>, ...}, "partition": 0}

The header is checked before the body is parsed: a file that is truncated,
edited, from another format version or from other detection settings is
refused with a ``SnapshotError`` that says how to recover. Bodies are plain
JSON with sorted keys, so equal states are equal bytes, and loading one
never executes code.

``LocalSnapshotStore.save`` writes atomically: a temporary file in the same
directory, fsync, rename over the old snapshot, fsync of the directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streamdrift.errors import SnapshotError

FORMAT = "streamdrift-snapshot"
VERSION = 1
_DUMP = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


@dataclass
class Snapshot:
    partition: int
    offsets: dict[str, int]  # topic -> next offset to consume
    models: dict[str, dict]  # model_id -> ModelMonitor.state()
    merge: dict = field(default_factory=dict)  # merge.EpochMerge.state()


def encode(snapshot: Snapshot, config: str) -> bytes:
    body = orjson.dumps({"partition": snapshot.partition, "offsets": snapshot.offsets, "models": snapshot.models,
                         "merge": snapshot.merge}, option=_DUMP)
    header = orjson.dumps({"format": FORMAT, "version": VERSION, "config": config,
                           "sha256": hashlib.sha256(body).hexdigest()}, option=orjson.OPT_SORT_KEYS)
    return header + b"\n" + body + b"\n"


def decode(data: bytes, config: str, source: str) -> Snapshot:
    recover = (f"Move {source} away and restart: the partition then starts from its committed offsets "
               "with a fresh warm-up reference.")
    head, sep, body = data.partition(b"\n")
    try:
        header = orjson.loads(head)
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except ValueError:
        raise SnapshotError(f"{source} is not a streamdrift snapshot (unreadable header). {recover}") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise SnapshotError(f"{source} has format {header.get('format')!r} version {header.get('version')!r}; "
                            f"this streamdrift reads {FORMAT!r} version {VERSION}. {recover}")
    if header.get("config") != config:
        raise SnapshotError(f"{source} was made with other detection settings (config hash {header.get('config')}, "
                            f"now {config}); its state would not match them. Restore the old [monitor] "
                            f"settings, or: {recover}")
    body = body.rstrip(b"\n")
    if not sep or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise SnapshotError(f"{source} is corrupt or was modified (checksum mismatch). {recover}")
    doc = orjson.loads(body)
    return Snapshot(partition=doc["partition"], offsets=doc["offsets"], models=doc["models"],
                    merge=doc.get("merge", {}))


class LocalSnapshotStore:
    """One snapshot file per input partition in a local directory.

    Parameters
    ----------
    directory
        Where the files live; created by the first save.
    config
        Hash of the detection settings (``MonitorSettings.fingerprint()``).
    """

    def __init__(self, directory: Path, config: str):
        self.directory = Path(directory)
        self.config = config

    def path(self, partition: int) -> Path:
        return self.directory / f"partition-{partition}.snapshot"

    def load(self, partition: int) -> Snapshot | None:
        path = self.path(partition)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        snapshot = decode(data, self.config, str(path))
        if snapshot.partition != partition:
            raise SnapshotError(f"{path} holds partition {snapshot.partition}, not {partition}; "
                                "was the file renamed? Move it away and restart.")
        return snapshot

    def save(self, snapshot: Snapshot) -> int:
        """Write atomically; return the number of bytes written."""
        data = encode(snapshot, self.config)
        self.directory.mkdir(parents=True, exist_ok=True)  # here, not on open: readers never create it
        path = self.path(snapshot.partition)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return len(data)
