"""A state-topic checkpoint as pieces on a pipe: from the forked child that packs it to the worker that produces it.

The child (``checkpoint.ForkedPack``) sends, per input partition of the checkpoint, first the
changelog the partition will have once its records are acknowledged (``Planned``), then each of its
records (``statetopic.Record``), in the order they must be produced. The changelog comes first so
that the worker knows it for every partition record it may see acknowledged, even if the child dies
before the end. The bytes of a record are those ``statetopic.checkpoint_records`` made in the child:
the worker only copies them to its producer.

A piece is its kind (``C`` or ``R``), then::

    C  orjson {"partition", "changelog": Changelog.state(), "garbage": [key as latin-1, ...]}
    R  partition (u32), key length (u32), value length (i32, -1: a tombstone), header count (u16),
       key, value, then per header: name length (u16), name (UTF-8), value length (i32, -1: None), value
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import orjson

from streamdrift.runtime.statetopic import Changelog, Record

_RECORD = struct.Struct(">IIiH")
_NAME = struct.Struct(">H")
_VALUE = struct.Struct(">i")


class Planned(NamedTuple):
    """The changelog partition ``partition`` takes once this checkpoint's records are acknowledged."""

    partition: int
    changelog: Changelog


def planned(partition: int, changelog: Changelog) -> bytes:
    doc = {
        "partition": partition,
        "changelog": changelog.state(),
        "garbage": sorted(key.decode("latin-1") for key in changelog.garbage),
    }
    return b"C" + orjson.dumps(doc)


def record(partition: int, rec: Record) -> bytes:
    value = rec.value
    out = [b"R", _RECORD.pack(partition, len(rec.key), -1 if value is None else len(value), len(rec.headers))]
    out += [rec.key, value or b""]
    for name, header in rec.headers:
        encoded = name.encode()
        raw = header.encode() if isinstance(header, str) else header
        out += [_NAME.pack(len(encoded)), encoded, _VALUE.pack(-1 if raw is None else len(raw)), raw or b""]
    return b"".join(out)


def decode(piece: bytes) -> Planned | tuple[int, Record]:
    """What ``planned`` or ``record`` encoded."""
    if piece[:1] == b"C":
        doc = orjson.loads(piece[1:])
        changelog = Changelog.from_state(doc["changelog"])
        changelog.garbage = {key.encode("latin-1") for key in doc["garbage"]}
        return Planned(doc["partition"], changelog)
    if piece[:1] != b"R":
        raise ValueError(f"not a piece of a checkpoint: kind {piece[:1]!r}")
    partition, key_len, value_len, count = _RECORD.unpack_from(piece, 1)
    at = 1 + _RECORD.size
    key = piece[at : at + key_len]
    at += key_len
    value = None if value_len < 0 else piece[at : at + value_len]
    at += max(value_len, 0)
    headers: list[tuple[str, str | bytes | None]] = []
    for _ in range(count):
        (name_len,) = _NAME.unpack_from(piece, at)
        at += _NAME.size
        name = piece[at : at + name_len].decode()
        at += name_len
        (raw_len,) = _VALUE.unpack_from(piece, at)
        at += _VALUE.size
        headers.append((name, None if raw_len < 0 else piece[at : at + raw_len]))
        at += max(raw_len, 0)
    return partition, Record(key, value, headers)
