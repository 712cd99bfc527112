"""Malformed snapshots (issue 17, finding 5): any truncation or byte flip of a valid snapshot, its CRC
recomputed so that the body is what gets parsed, is refused with a SnapshotError, never another exception.

Without a key a flip inside a number or an array's bytes is a different, well-formed snapshot that no
checksum can tell from a real one: it is accepted only as a well-formed `Snapshot` (typed as the store
expects, re-encodable). With ``snapshot_key`` the MAC covers it: every change is refused and only the
exact original loads."""

from __future__ import annotations

import zlib

import numpy as np
import orjson
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from streamdrift.core import state
from streamdrift.core.errors import SnapshotError
from streamdrift.core.state import Snapshot

CONFIG = "0123456789abcdef"
ORIGINAL = Snapshot(
    3,
    {"predictions": 17, "feedback": 5},
    {
        "churn": {"counts": np.arange(12, dtype=np.int64).reshape(3, 4), "mean": np.float64(0.5).item(), "tags": ["a"]},
        "fraud": {"edges": np.linspace(0, 1, 5), "seen": {"x": {"flags": np.array([True, False])}}},
    },
    {"epochs": {"0": 1}},
)
DATA = state.encode(ORIGINAL, CONFIG)
HEADER, BODY = DATA.split(b"\n", 1)
KEYED = state.Seal(CONFIG, key=b"secret")
KEYED_DATA = state.encode(ORIGINAL, KEYED)


def _with_body(body: bytes) -> bytes:
    """A file around ``body`` whose header is right about it: length and CRC recomputed."""
    header = orjson.loads(HEADER)
    header.update(body=len(body), checksum=f"crc32:{zlib.crc32(body):08x}")
    return orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + b"\n" + body


def _well_formed_or_refused(data: bytes) -> None:
    try:
        got = state.decode(data, CONFIG, "fuzzed")
    except SnapshotError:
        return
    assert type(got.partition) is int and all(type(o) is int for o in got.offsets.values())
    assert all(type(m) is dict for m in got.models.values())
    again = state.encode(got, CONFIG)
    assert state.encode(state.decode(again, CONFIG, "again"), CONFIG) == again


def _original_or_refused_with_a_key(data: bytes) -> None:
    header = orjson.loads(KEYED_DATA.split(b"\n", 1)[0])
    body = data.split(b"\n", 1)[1] if b"\n" in data else b""
    header.update(body=len(body), checksum=f"crc32:{zlib.crc32(body):08x}")  # CRC right, MAC as written
    try:
        got = state.decode(orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + b"\n" + body, KEYED, "fuzzed")
    except SnapshotError:
        return
    assert state.encode(got, KEYED) == KEYED_DATA


def _decodes_to_original_or_refuses(data: bytes) -> None:
    _well_formed_or_refused(data)
    _original_or_refused_with_a_key(data)


@seed(17)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(BODY) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_byte_flips_of_the_body_with_a_valid_crc(flips):
    body = bytearray(BODY)
    for at, value in flips:
        body[at] = value
    _decodes_to_original_or_refuses(_with_body(bytes(body)))


@seed(18)
@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(BODY)), st.integers(0, len(BODY)))
def test_truncations_and_cut_outs_with_a_valid_crc(start, stop):
    _decodes_to_original_or_refuses(_with_body(BODY[: min(start, stop)] + BODY[max(start, stop) :]))


@seed(19)
@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(DATA)), st.binary(max_size=8))
def test_any_cut_of_the_whole_file_plus_junk(cut, junk):
    _decodes_to_original_or_refuses(DATA[:cut] + junk)


def test_the_original_decodes():
    _decodes_to_original_or_refuses(DATA)
    assert state.decode(DATA, CONFIG, "f").offsets == ORIGINAL.offsets
