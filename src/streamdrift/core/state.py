"""Snapshots: the state of one input partition and the input offsets it reflects.

A snapshot file is a header line, a line of JSON (the skeleton) and the raw
bytes of the state's numpy arrays::

    {"arrays": <n>, "body": <bytes after this line>, "checksum": "crc32:<hex>", "config": "<settings hash>",
     "format": "streamdrift-snapshot", "marker": "$nd", "version": 7}
    {"merge": {...}, "models": {"<model_id>": {...}, ...}, "offsets": {"<topic>": <next offset>}, "partition": 0}
    <the arrays' bytes, one after the other>

In the skeleton each array is ``{"<marker>": [<offset>, "<dtype>", [<shape>]]}``,
where the offset counts from the start of the array bytes. Model states are
plain data with numpy arrays of numbers in them (counts, edges, fixed-point
sums): an array costs one memory copy to write and one to read back, not a
number-to-text conversion per element. An array must be the value of a dict
key (loading looks for them there, never inside lists, which is what keeps
long join buffers cheap to load). The marker is a key that no string of the
state spells (``"$nd"``, else ``"$nd1"``, ...), so a model id, feature name
or segment value can never pass for an array.

The header is checked before the body is parsed: a file that is truncated,
edited, from another format version or from other detection settings is
refused with a ``SnapshotError`` that says how to recover. Keys are sorted
and arrays keep their dtype, so equal states are equal bytes; the checksum
(CRC-32) guards against corruption, not against an attacker. Loading parses
JSON and makes read-only views of the file's bytes as arrays of the listed
number dtypes (never objects): nothing from the file is executed. The
``load_state`` methods copy what they keep, so a restored monitor never holds
on to the file.

The store that writes these files and the forked writer are in
``streamdrift.runtime.checkpoint``.

Examples
--------
>>> import numpy as np
>>> data = dumps({"ring": np.arange(6, dtype=np.int16).reshape(2, 3), "rows": 6})
>>> data.split(b"\\n")[1]
b'{"ring":{"$nd":[0,"<i2",[2,3]]},"rows":6}'
>>> loads(data)
{'ring': array([[0, 1, 2],
       [3, 4, 5]], dtype=int16), 'rows': 6}
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import orjson
from numpy.typing import NDArray

from streamdrift.core.dormant import Dormant
from streamdrift.core.errors import SnapshotError
from streamdrift.core.protocols import State

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

try:  # the walk that puts a skeleton's arrays in place, in C (built with decode's C reader)
    from streamdrift.core import _speedups
except ImportError:
    # mypy types the name as the module (its stub, _speedups.pyi); None means not built, checked where used
    _speedups = None  # type: ignore[assignment]

FORMAT = "streamdrift-snapshot"
# 3: a sketch's warm-up is a summary of counts (core/warmup.py), no longer its raw rows. Version 2 is read
# too: its raw warm-up rows are counted into summaries as they are loaded (StreamSketch.load_state).
# 4: a warm-up column leaves out the histogram its distinct numbers make, and writes the others' keys as
# steps (WarmupColumn.state); version 3's columns are read as they are.
# 5: a sketch's warm-up columns written together, one array each for all of them (warmup.sketch_state).
# 6: a warm-up column's anchor as its bucket's key, its distinct numbers as integers in arrays (warmup.sketch_state).
# 7: the score sum of a warm-up entry of one row as its place among such sums (warmup._sketch_scores).
VERSION = 7
READS = (2, 3, 4, 5, 6, 7)
MARKER = "$nd"
# dtypes an array of the state may have: plain numbers, read back by np.frombuffer (never object arrays)
_DTYPE = {
    np.dtype(t).str: np.dtype(t)
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float32,
        np.float64,
    )
}
DTYPES = frozenset(_DTYPE)
_DTYPE_NAMES: dict[np.dtype[Any], str] = {}  # dtype -> its name in DTYPES, filled as they come


@dataclass
class Snapshot:
    partition: int
    offsets: dict[str, int]  # topic -> next offset to consume
    # model_id -> ModelMonitor.state(), or, restored from a store that kept it so, the model still encoded
    models: dict[str, State | Dormant]
    merge: State = field(default_factory=dict)  # merge.EpochMerge.state()
    # Where this state lies in the Kafka state topic (``runtime.statetopic.Changelog.state()``); empty for
    # the local store. A snapshot file with it is the state topic's local cache.
    changelog: State = field(default_factory=dict)


@dataclass(frozen=True)
class Seal:
    """What a snapshot file is written under and checked against, besides its own bytes.

    Every ``config`` argument of this module takes a `Seal` or, as before, a bare settings hash.

    Parameters
    ----------
    config
        A hash of everything that shapes the state (``Seal.of`` makes it from ``settings``).
    settings
        That configuration itself (detection settings, per-model settings), recorded in the header
        so that a mismatch is refused naming the setting that changed; empty: the hash only.
    identity
        Where the state belongs: ``cluster`` (the Kafka cluster id), ``group``, ``topics``. Recorded in
        the header; a file of another cluster, group or topics is refused naming the difference. Empty:
        not checked. The cluster is compared only where both the file and the reader have one: a file
        written before it was recorded still loads (and is written with it at the next checkpoint), and
        a reader that has not connected (``streamdrift status --snapshots``) checks group and topics only.
    key
        ``snapshot_key``: with it every file carries an HMAC-SHA256 over its header and body, and a
        file without one, or whose MAC does not verify (tampered with), is refused.

    Examples
    --------
    >>> seal = Seal.of({"monitor": {"window_size": 500}, "models": {"m": {"task": None}}}, {"group": "g"}, b"k")
    >>> data = encode(Snapshot(0, {"p": 1}, {}), seal)
    >>> decode(data, seal, "f").offsets
    {'p': 1}
    >>> other = Seal.of({"monitor": {"window_size": 500}, "models": {"m": {"task": "regression"}}}, {"group": "g"}, b"k")
    >>> decode(data, other, "f")
    Traceback (most recent call last):
    ...
    streamdrift.core.errors.SnapshotError: f was made with other detection settings (models.m.task: None, now 'regression'); ...
    """

    config: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    identity: Mapping[str, Any] = field(default_factory=dict)
    key: bytes | None = None

    @classmethod
    def of(cls, settings: Mapping[str, Any], identity: Mapping[str, Any] = {}, key: bytes | None = None) -> Seal:
        """A seal whose ``config`` is the hash of ``settings`` (JSON values)."""
        digest = hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        return cls(digest, settings, identity, key)


def _seal(config: str | Seal) -> Seal:
    return config if isinstance(config, Seal) else Seal(config)


def _differences(written: object, now: object, path: str = "") -> list[str]:
    """``path: written, now now`` for each leaf where two JSON documents differ."""
    if isinstance(written, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(written) | set(now), key=str):
            out += _differences(written.get(key), now.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if written == now else [f"{path}: {written!r}, now {now!r}"]


def _check_identity(written: object, now: Mapping[str, Any], source: str, recover: str) -> None:
    """Refuse a file of another cluster, group or topics (``Seal.identity``); the cluster only where both
    sides know it."""
    written = dict(written) if isinstance(written, dict) else {}
    now = dict(now)
    if written.get("cluster") is None or now.get("cluster") is None:
        written.pop("cluster", None)
        now.pop("cluster", None)
    changed = _differences(written, now)
    if not changed:
        return
    where = (
        f"it was written against Kafka cluster {written['cluster']!r} and this reader is connected to "
        f"cluster {now['cluster']!r}, so its offsets are another cluster's"
        if written.get("cluster") != now.get("cluster")
        else "its offsets are not this group's"
    )
    raise SnapshotError(
        f"{source} belongs elsewhere ({'; '.join(changed)}): {where}. Point snapshot_dir "
        f"at this deployment's own directory, or: {recover}"
    )


# -- the body: JSON skeleton + array bytes ----------------------------------------------------


def _pack(tree: State) -> tuple[bytes, list[Buffer], str]:
    """``tree`` as skeleton JSON and its arrays' bytes, one piece per array; also their marker."""
    # a state has finitely many strings, so some marker is free: feature names are the user's to choose, and a
    # model that names its features "$nd", "$nd1", ... must still be checkpointed
    for attempt in itertools.count():
        marker = MARKER if attempt == 0 else f"{MARKER}{attempt}"
        skeleton, chunks = _skeleton(tree, marker)
        key = orjson.dumps(marker) + b":"
        # a string of the state spelling the marker would pass for an array on load: take another marker
        if skeleton.count(key) != len(chunks):
            continue
        # loading looks for arrays among the values of objects only, never in lists (join buffers are long)
        if skeleton.count(b":{" + key) != len(chunks):
            raise TypeError("a numpy array in a snapshot must be the value of a dict key, not a list item")
        return skeleton, chunks, marker
    raise AssertionError("unreachable: itertools.count() does not end")


def _skeleton(tree: State, marker: str) -> tuple[bytes, list[Buffer]]:
    """The JSON of ``tree`` with each array replaced by its placeholder, and the arrays' bytes in order."""
    chunks: list[Buffer] = []
    at = 0

    def placeholder(value: object) -> dict[str, list[Any]]:
        nonlocal at
        if type(value) is not np.ndarray:
            raise TypeError(f"a snapshot holds JSON values and numpy arrays, not {type(value).__name__}")
        dtype = _DTYPE_NAMES.get(value.dtype)
        if dtype is None:
            dtype = value.dtype.str
            if dtype not in DTYPES:
                raise TypeError(f"a snapshot cannot hold arrays of dtype {value.dtype}")
            _DTYPE_NAMES[value.dtype] = dtype
        if not value.flags.c_contiguous:
            value = np.ascontiguousarray(value)
        # written and checksummed through the buffer protocol: no copy. The cast: numpy's stubs declare
        # an array a buffer (__buffer__) only for Python 3.12 and later, where the protocol got a dunder
        chunks.append(cast("Buffer", value))
        size = value.nbytes
        at += size
        return {marker: [at - size, dtype, value.shape]}  # a tuple: a JSON array all the same

    try:
        return orjson.dumps(tree, default=placeholder, option=orjson.OPT_SORT_KEYS), chunks
    except orjson.JSONEncodeError as exc:  # say what placeholder() refused, not only that orjson could not
        raise (exc.__cause__ or exc) from None


def _unpack(skeleton: bytes, arrays: bytes | memoryview, marker: str, expected: int) -> State:
    """The tree of ``_pack``, with read-only arrays over ``arrays`` (``load_state`` methods copy them)."""
    tree = orjson.loads(skeleton)
    if type(tree) is not dict:
        raise ValueError("the skeleton is not an object")
    size = len(arrays)
    used = 0

    def array(spec: list[Any]) -> NDArray[Any]:
        nonlocal used
        offset, dtype, shape = spec
        dt = _DTYPE[dtype]  # KeyError: not a dtype a snapshot may hold
        nbytes = math.prod(shape) * dt.itemsize
        if not 0 <= offset <= offset + nbytes <= size:
            raise ValueError(f"an array ({dtype}, {shape}) lies outside the array bytes")
        used += nbytes
        return np.ndarray(shape, dt, arrays, offset)

    found = (_walk if _speedups is None else _speedups.arrays)(tree, marker, array)
    if found != expected or used != size:
        raise ValueError(f"{found} arrays in {used} bytes, expected {expected} in {size}")
    return tree


def _walk(tree: State, marker: str, make: Callable[[list[Any]], NDArray[Any]]) -> int:
    """Replace each dict value ``{marker: spec}`` in the dicts of ``tree`` (not in lists) by
    ``make(spec)``; how many. ``_speedups.arrays`` does the same in C, in the same order."""
    found = 0
    stack = [tree]
    while stack:
        node = stack.pop()
        for key, value in node.items():
            if type(value) is not dict:
                continue
            spec = value.get(marker)
            if spec is None:
                stack.append(value)
                continue
            node[key] = make(spec)
            found += 1
    return found


def dumps(tree: State) -> bytes:
    """A state (JSON values and numpy arrays) as bytes: equal states give equal bytes."""
    skeleton, chunks, marker = _pack(tree)
    return b"".join((orjson.dumps([marker, len(chunks)]), b"\n", skeleton, b"\n", *chunks))


def loads(data: bytes) -> State:
    """The state ``dumps`` wrote; its arrays are read-only views of ``data``."""
    head, skeleton, arrays = data.split(b"\n", 2)
    marker, count = orjson.loads(head)
    return _unpack(skeleton, arrays, marker, count)


# -- files --------------------------------------------------------------------------------------


def body(snapshot: Snapshot) -> tuple[list[Buffer], str]:
    """The body's pieces (skeleton, then the arrays) and the marker: all that depends on the state."""
    doc: State = {
        "partition": snapshot.partition,
        "offsets": snapshot.offsets,
        "models": snapshot.models,
        "merge": snapshot.merge,
    }
    if snapshot.changelog:  # only the state topic's cache has it: local snapshots keep their bytes
        doc["changelog"] = snapshot.changelog
    return tree_body(doc)


def tree_body(tree: State) -> tuple[list[Buffer], str]:
    """The pieces of any state tree (skeleton, then the arrays) and the marker."""
    skeleton, chunks, marker = _pack(tree)
    return [skeleton, b"\n", *chunks], marker


def file_pieces(
    body: list[Buffer], marker: str, config: str | Seal, extra: Mapping[str, Any] | None = None
) -> list[Buffer]:
    """The file's pieces, in order: the header (checksum of the body, and its MAC with a key) and the body.
    ``extra``: more fields of the header (JSON values, under names of their own), covered by the MAC as the
    body is; a reader that does not know them ignores them."""
    return [_header(body, len(body) - 2, marker, config, extra), b"\n", *body]


def _header(body: list[Buffer], arrays: int, marker: str, config: str | Seal, extra: Mapping[str, Any] | None) -> bytes:
    """The header line (without its newline) of a body in ``body``'s pieces that holds ``arrays`` arrays."""
    seal = _seal(config)
    crc = 0
    for piece in body:
        crc = zlib.crc32(piece, crc)
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": seal.config,
        "marker": marker,
        "arrays": arrays,
        "body": sum(memoryview(p).nbytes for p in body),
        "checksum": f"crc32:{crc:08x}",
    }
    if seal.settings:  # (absent otherwise: files written without them keep their bytes)
        header["settings"] = seal.settings
    if seal.identity:
        header["identity"] = seal.identity
    if extra:
        if not header.keys().isdisjoint(extra):
            raise ValueError(f"a header field of its own given as extra: {sorted(header.keys() & extra.keys())}")
        header.update(extra)
    if seal.key is not None:
        header["mac"] = "hmac-sha256:" + _mac(seal.key, header, body)
    return orjson.dumps(header, option=orjson.OPT_SORT_KEYS)


def _mac(key: bytes, header: Mapping[str, Any], body: list[Buffer] | list[memoryview]) -> str:
    """HMAC-SHA256 over the header (without its MAC, keys sorted) and the body."""
    mac = hmac.new(
        key, orjson.dumps({k: v for k, v in header.items() if k != "mac"}, option=orjson.OPT_SORT_KEYS), "sha256"
    )
    for piece in body:
        mac.update(piece)
    return mac.hexdigest()


def encode(snapshot: Snapshot, config: str | Seal) -> bytes:
    return b"".join(file_pieces(*body(snapshot), config))


def encode_tree(tree: State, config: str | Seal, extra: Mapping[str, Any] | None = None) -> bytes:
    """Any state tree with the snapshot file's header (format, version, settings hash, checksum, and
    ``extra``'s fields): the value of a state-topic record. The same bytes as ``file_pieces`` joined."""
    pieces, marker = tree_body(tree)
    # the body joined first and checksummed in one call: a record is small (a model's state, ~20 KB), and a
    # CRC call per piece (one per array, ~40 in a model) cost more than copying it once more
    body = b"".join(pieces)
    return b"".join((_header([body], len(pieces) - 2, marker, config, extra), b"\n", body))


def recover_by_moving(source: str) -> str:
    """How to recover from a snapshot file that cannot be loaded (the end of its refusal's message)."""
    return (
        f"Move {source} away and restart: the partition then starts from its committed offsets "
        "with a fresh warm-up reference."
    )


def decode(data: bytes, config: str | Seal, source: str) -> Snapshot:
    recover = recover_by_moving(source)
    return snapshot_of(decode_tree(data, config, source, recover), source, recover)


def snapshot_of(doc: State, source: str, recover: str) -> Snapshot:
    """The snapshot a decoded file's tree holds, its shape checked."""
    problem = _malformed(doc)
    if problem:
        raise SnapshotError(f"{source} is corrupt ({problem}). {recover}")
    return Snapshot(
        partition=doc["partition"],
        offsets=doc["offsets"],
        models=doc["models"],
        merge=doc.get("merge", {}),
        changelog=doc.get("changelog", {}),
    )


def _malformed(doc: State) -> str:
    """What is wrong with the shape of a snapshot's body, or ``""``."""
    if type(doc.get("partition")) is not int or doc["partition"] < 0:
        return "'partition' is not a partition number"
    offsets = doc.get("offsets")
    if type(offsets) is not dict or any(type(o) is not int or o < 0 for o in offsets.values()):
        return "'offsets' is not topic -> offset"
    models = doc.get("models")
    if type(models) is not dict or any(type(m) is not dict for m in models.values()):
        return "'models' is not model id -> state"
    for name in ("merge", "changelog"):
        if type(doc.get(name, {})) is not dict:
            return f"{name!r} is not an object"
    return ""


def decode_tree(data: bytes | memoryview, config: str | Seal, source: str, recover: str) -> State:
    """The tree ``encode_tree`` (or ``encode``) wrote, checked; ``recover`` ends each refusal's message."""
    data = bytes(data) if isinstance(data, memoryview) else data
    return tree_of(data, checked_header(data, config, source, recover), source, recover)


class Header(NamedTuple):
    """A checked header (``checked_header``): its fields, and where its line ends in the data."""

    fields: dict[str, Any]
    end: int


def checked_header(data: bytes, config: str | Seal, source: str, recover: str) -> Header:
    """The header of what ``encode_tree`` wrote, checked with everything it says of the body (format version,
    MAC, identity, settings, length, checksum) without parsing the body: ``tree_of`` then reads it."""
    end = data.find(b"\n")
    try:
        header = orjson.loads(data[:end] if end >= 0 else data)
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except ValueError:
        raise SnapshotError(f"{source} is not a streamdrift snapshot (unreadable header). {recover}") from None
    if header.get("format") != FORMAT or header.get("version") not in READS:
        raise SnapshotError(
            f"{source} has format {header.get('format')!r} version {header.get('version')!r}; "
            f"this streamdrift reads {FORMAT!r} versions {', '.join(map(str, READS[:-1]))} and {READS[-1]}. {recover}"
        )
    seal = _seal(config)
    body = memoryview(data)[end + 1 :] if end >= 0 else memoryview(b"")
    if seal.key is not None:
        mac = header.get("mac")
        if not isinstance(mac, str):
            raise SnapshotError(f"{source} is not authenticated (no MAC) and snapshot_key is set. {recover}")
        if not hmac.compare_digest(mac, "hmac-sha256:" + _mac(seal.key, header, [body])):
            raise SnapshotError(
                f"{source} was modified or written under another snapshot_key (MAC mismatch). {recover}"
            )
    if seal.identity:
        _check_identity(header.get("identity"), seal.identity, source, recover)
    if header.get("config") != seal.config:
        named = _differences(header.get("settings"), dict(seal.settings)) if "settings" in header else []
        what = "; ".join(named) if named else f"config hash {header.get('config')}, now {seal.config}"
        raise SnapshotError(
            f"{source} was made with other detection settings ({what}); its state would not match them. "
            f"Restore the old settings, or: {recover}"
        )
    if end < 0 or len(body) != header.get("body"):
        raise SnapshotError(
            f"{source} is corrupt: truncated or extended ({len(body)} bytes after the header, "
            f"{header.get('body')} written). {recover}"
        )
    if f"crc32:{zlib.crc32(body):08x}" != header.get("checksum"):
        raise SnapshotError(f"{source} is corrupt or was modified (checksum mismatch). {recover}")
    return Header(header, end)


def tree_of(data: bytes, header: Header, source: str, recover: str) -> State:
    """The tree whose header ``checked_header`` checked."""
    end = header.end
    split = data.find(b"\n", end + 1)
    try:
        if split < 0:
            raise ValueError("no array bytes")
        return _unpack(
            data[end + 1 : split], memoryview(data)[split + 1 :], header.fields["marker"], header.fields["arrays"]
        )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError) as exc:  # a valid CRC, a bad body
        raise SnapshotError(f"{source} is corrupt ({exc}). {recover}") from None
