"""The state topic's local cache: one file per partition holding each model as the topic's value, and its summary.

With ``state_store = "kafka"`` the snapshot file of a partition (``LocalSnapshotStore``) is the cache of its
state-topic partition (``runtime/statetopic.py``: a restore loads it and reads only the records after it).
It holds each model as the bytes the topic holds it as (``statetopic.pack``: encoded, compressed, sealed
without the settings), and beside them the model's summary (``summary.stored_summary``) and quarantine, so
a restore reads bytes and builds no monitor: a model stays `Dormant` (``core/dormant.py``) until its
first event or until its state is asked for. Each value is inflated at load (not decoded): a cache holding one
that does not inflate is refused, and the partition is rebuilt from the topic. The file is a snapshot file (the same header: format
version, settings, identity, checksum, MAC with ``snapshot_key``) whose tree is::

    {"partition": p, "offsets": {}, "models": {}, "merge": {},
     "state_cache": {"version": 1, "offsets": {...}, "merge": {...}, "changelog": {...},
                     "models": {"<model_id>": {"value": <bytes>, "summary": <bytes>, "quarantined": ...}}}}

where each ``<bytes>`` is an array of bytes (``uint8``, read back as a view of the file, not parsed). A
model without ``summary`` (one JSON cannot carry exactly: a NaN score), or whose summary this streamdrift
cannot read (written when summaries had other fields), is decoded at load, as before. The
top-level ``offsets`` and ``models`` are empty so that a reader that does not know this layout (an older
streamdrift) finds no changelog in it and rebuilds the partition from the topic, as it does from any
cache it cannot use. A file of the layout before this one (every model's state decoded in the tree) is
still read, its models decoded at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from streamdrift.core.dormant import Dormant
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.errors import SnapshotError
from streamdrift.core.protocols import State
from streamdrift.core.state import Seal, Snapshot, tree_body
from streamdrift.core.summary import stored_summary
from streamdrift.runtime.statetopic import Loader, inflate, model_seal, pack, record_summary

if TYPE_CHECKING:
    from typing_extensions import Buffer

LAYOUT = "state_cache"  # the key of this layout in a snapshot file's tree
VERSION = 1


def cache_tree(
    engine: PartitionEngine,
    changelog: State,
    config: str | Seal,
    packed: Mapping[str, bytes],
    previous: Snapshot | None = None,
    summaries: Mapping[str, Mapping[str, Any]] = {},
) -> State:
    """The cache file's tree of ``engine``'s partition, whose state lies in the topic as ``changelog`` says.

    ``packed``: values this checkpoint packed for the topic (model_id -> value), taken as they are; a
    dormant model's are its stored bytes; so are those of a model ``previous`` (the cache as it was, loaded)
    holds at the same place in the topic (the same slot and checkpoint in its ledger: the same value); any
    other model is packed here. ``summaries``: the summaries this checkpoint's records carry (model_id ->
    ``statetopic.summaries``' doc), of the same states, taken rather than made again (about 0.1 ms a model).
    """
    base = engine.snapshot(())  # the offsets and the merge, and the check that no record is held
    seal = model_seal(config)
    ledger, kept = changelog.get("models", {}), _stored(previous)
    models: dict[str, State] = {}
    for model_id, monitor in sorted(engine.monitors.items()):
        summary: bytes | None
        stored = kept.get(model_id)
        if stored is not None and model_id in ledger and stored[0] == ledger[model_id]:
            monitor = stored[1]  # its committed value, as the cache on disk holds it
        if isinstance(monitor, Dormant):
            value, summary, quarantined = monitor.value, monitor.stored, monitor.quarantined
        else:
            doc = summaries.get(model_id)
            if doc is not None:  # the packer's, of this state: stored as ``stored_summary`` writes it
                summary = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
            else:
                shown = monitor.summary()
                doc = record_summary(monitor, shown)  # the value the topic would hold: with its summary
                summary = stored_summary(shown)
            value = packed.get(model_id) or pack(monitor.state(), seal, doc)
            quarantined = monitor.quarantined
        entry: State = {"value": np.frombuffer(value, np.uint8), "quarantined": quarantined}
        if summary is not None:
            entry["summary"] = np.frombuffer(summary, np.uint8)
        models[model_id] = entry
    layout = {"version": VERSION, "offsets": base.offsets, "merge": base.merge, "changelog": changelog}
    return {
        "partition": engine.partition,
        "offsets": {},
        "models": {},
        "merge": {},
        LAYOUT: {**layout, "models": models},
    }


def _stored(previous: Snapshot | None) -> dict[str, tuple[Any, Dormant]]:
    """model_id -> (its place in the topic, its entry) of the models ``previous`` kept with a summary."""
    if previous is None:
        return {}
    ledger = previous.changelog.get("models", {})
    return {m: (ledger.get(m), d) for m, d in previous.models.items() if isinstance(d, Dormant)}


def cache_body(
    engine: PartitionEngine,
    changelog: State,
    config: str | Seal,
    packed: Mapping[str, bytes] = {},
    previous: Snapshot | None = None,
    summaries: Mapping[str, Mapping[str, Any]] = {},
) -> tuple[int, list[Buffer], str]:
    """What ``LocalSnapshotStore.write`` takes to write the cache of ``engine``'s partition (``cache_tree``)."""
    return engine.partition, *tree_body(cache_tree(engine, changelog, config, packed, previous, summaries))


def is_cache(tree: State) -> bool:
    return LAYOUT in tree


def snapshot_of(tree: State, config: str | Seal, source: str, recover: str) -> Snapshot:
    """The snapshot a cache file's tree holds: its models `Dormant` (decoded on demand by ``unpack``),
    those stored without a summary decoded now. A malformed tree is a ``SnapshotError``."""
    layout = tree[LAYOUT]
    if type(layout) is not dict or layout.get("version") != VERSION:
        version = layout.get("version") if type(layout) is dict else None
        raise SnapshotError(
            f"{source} is a state cache of layout {version!r}; this streamdrift reads {VERSION}. {recover}"
        )
    seal = model_seal(config)
    try:
        models: dict[str, State | Dormant] = {}
        for model_id, entry in layout["models"].items():
            value = _bytes(entry["value"])
            # The whole stream inflated, not kept (about 30 us a model of the benchmark's, a tenth of waking it): a
            # value it cannot inflate is refused now, and the worker rebuilds the partition from the topic, as from
            # a stale cache, where at the model's first event it could only quarantine the model (``engine._wake``).
            inflate(value, f"{source} model {model_id!r}", recover)
            loader = Loader(seal, f"{source} model {model_id!r}", recover)
            summary = entry.get("summary")
            dormant = None
            if summary is not None:
                dormant = Dormant(model_id, value, _bytes(summary), _quarantine(entry["quarantined"]), loader)
                dormant = dormant if _readable(dormant) else None
            models[model_id] = dormant if dormant is not None else loader(value)
        offsets, merge, changelog = layout["offsets"], layout["merge"], layout["changelog"]
        if not (
            type(offsets) is dict and type(merge) is dict and type(changelog) is dict and type(tree["partition"]) is int
        ):
            raise ValueError("offsets, merge or changelog is not an object")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"{source} is corrupt ({type(exc).__name__}: {exc}). {recover}") from None
    return Snapshot(tree["partition"], offsets, models, merge, changelog)


def _readable(dormant: Dormant) -> bool:
    """Whether this streamdrift reads the model's stored summary (one written by a streamdrift whose summaries
    had other fields, or another ``summary.SUMMARY_VERSION``, is not: the model is then decoded at load, and its
    summary made from its state)."""
    try:
        dormant.summary()  # read now rather than at the first /status: the restore reads it anyway
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _bytes(array: Any) -> bytes:
    if type(array) is not np.ndarray or array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError("a stored value is not an array of bytes")
    return array.tobytes()


def _quarantine(quarantined: Any) -> dict[str, Any] | None:
    if quarantined is not None and type(quarantined) is not dict:
        raise ValueError("a model's quarantine is not an object")
    return quarantined
