"""core/state.py pinned exactly: the tests that kill the mutants `make mutation` found surviving there.

Each states what a user of a snapshot relies on: the message that refuses a file names it and says how to
recover, a file's shape is checked before its state is used, the settings hash ignores the order of keys,
the MAC covers the header. docs/mutation.md lists the mutants left alive and why.
"""

from __future__ import annotations

import hashlib

import numpy as np
import orjson
import pytest

from streamdrift.core import state
from streamdrift.core.errors import SnapshotError
from streamdrift.core.state import (
    FORMAT,
    VERSION,
    Seal,
    Snapshot,
    decode,
    decode_tree,
    dumps,
    encode,
    encode_tree,
    file_pieces,
    loads,
)

SOURCE = "partition-3.snapshot"
RECOVER = (
    f"Move {SOURCE} away and restart: the partition then starts from its committed offsets "
    "with a fresh warm-up reference."
)


def _refused(data: bytes, config: str | Seal = "cfg") -> str:
    with pytest.raises(SnapshotError) as refused:
        decode(data, config, SOURCE)
    return str(refused.value)


# -- the settings hash and the differences a refusal names ------------------------------------------------


def test_the_settings_hash_is_the_sha256_of_the_sorted_settings_whatever_their_order() -> None:
    expected = hashlib.sha256(b'{"a":{"c":1,"d":2},"b":2}').hexdigest()[:16]
    assert (
        Seal.of({"b": 2, "a": {"d": 2, "c": 1}}).config == expected == Seal.of({"a": {"c": 1, "d": 2}, "b": 2}).config
    )


def test_other_settings_are_refused_naming_each_setting_that_changed() -> None:
    written = Seal.of({"monitor": {"window_size": 500, "bins": 10}, "models": {"m": {"task": None}}})
    now = Seal.of({"monitor": {"window_size": 400, "bins": 10, "cooldown": 5}, "models": 3})
    message = _refused(encode(Snapshot(3, {}, {}), written), now)
    assert message == (
        f"{SOURCE} was made with other detection settings (models: {{'m': {{'task': None}}}}, now 3; "
        "monitor.cooldown: None, now 5; monitor.window_size: 500, now 400); its state would not match them. "
        f"Restore the old settings, or: {RECOVER}"
    )


# -- the MAC ---------------------------------------------------------------------------------------------


def test_the_mac_covers_the_header_a_file_moved_to_another_group_by_editing_it_is_refused() -> None:
    data = encode(Snapshot(3, {"predictions": 7}, {}), Seal("cfg", identity={"group": "a"}, key=b"k"))
    header, rest = data.split(b"\n", 1)
    edited = orjson.dumps({**orjson.loads(header), "identity": {"group": "b"}}, option=orjson.OPT_SORT_KEYS)
    message = _refused(edited + b"\n" + rest, Seal("cfg", identity={"group": "b"}, key=b"k"))
    assert message == f"{SOURCE} was modified or written under another snapshot_key (MAC mismatch). {RECOVER}"


# -- the body's shape --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "problem"),
    [
        ({"partition": -1, "offsets": {}, "models": {}}, "'partition' is not a partition number"),
        ({"partition": "3", "offsets": {}, "models": {}}, "'partition' is not a partition number"),
        ({"partition": 3, "offsets": {"p": -1}, "models": {}}, "'offsets' is not topic -> offset"),
        ({"partition": 3, "offsets": {"p": "7"}, "models": {}}, "'offsets' is not topic -> offset"),
        ({"partition": 3, "offsets": [7], "models": {}}, "'offsets' is not topic -> offset"),
        ({"partition": 3, "offsets": {}, "models": {"m": 1}}, "'models' is not model id -> state"),
        ({"partition": 3, "offsets": {}, "models": [{}]}, "'models' is not model id -> state"),
        ({"partition": 3, "offsets": {}, "models": {}, "merge": []}, "'merge' is not an object"),
        ({"partition": 3, "offsets": {}, "models": {}, "changelog": 5}, "'changelog' is not an object"),
    ],
)
def test_a_body_of_the_wrong_shape_is_refused_saying_what_is_wrong(tree: dict, problem: str) -> None:
    assert _refused(encode_tree(tree, "cfg")) == f"{SOURCE} is corrupt ({problem}). {RECOVER}"


def test_offset_and_partition_zero_are_valid_and_merge_and_changelog_may_be_absent() -> None:
    snapshot = decode(encode_tree({"partition": 0, "offsets": {"p": 0}, "models": {"m": {}}}, "cfg"), "cfg", SOURCE)
    assert snapshot == Snapshot(0, {"p": 0}, {"m": {}}, {}, {})


# -- the header --------------------------------------------------------------------------------------------


def test_another_format_or_version_is_refused_naming_both() -> None:
    data = encode(Snapshot(3, {}, {}), "cfg").replace(b'"format":"streamdrift-snapshot"', b'"format":"other"', 1)
    assert _refused(data) == (
        f"{SOURCE} has format 'other' version {VERSION}; this streamdrift reads {FORMAT!r} versions 2, 3, 4, 5, 6 and 7. {RECOVER}"
    )


def test_a_file_that_is_only_its_header_is_truncated_and_one_that_starts_with_a_newline_is_unreadable() -> None:
    header = encode(Snapshot(3, {}, {}), "cfg").split(b"\n", 1)[0]
    written = orjson.loads(header)["body"]
    assert _refused(header) == (
        f"{SOURCE} is corrupt: truncated or extended (0 bytes after the header, {written} written). {RECOVER}"
    )
    assert _refused(b"\n" + header) == f"{SOURCE} is not a streamdrift snapshot (unreadable header). {RECOVER}"


def test_a_state_record_is_read_from_a_memoryview_as_from_bytes() -> None:
    data = encode_tree({"ring": np.arange(3, dtype=np.uint8), "rows": 3}, "cfg")
    tree = decode_tree(memoryview(data), "cfg", SOURCE, RECOVER)
    assert tree["rows"] == 3 and tree["ring"].tolist() == [0, 1, 2]


# -- dumps / loads -------------------------------------------------------------------------------------------


def test_array_bytes_that_look_like_whitespace_are_read_back_as_written() -> None:
    ring = np.frombuffer(b" \t\n\r  \x0b\x0c", dtype=np.uint8).copy()  # every byte Python's split() would eat
    assert loads(dumps({"ring": ring}))["ring"].tolist() == ring.tolist()


def test_more_array_bytes_than_the_arrays_use_are_refused() -> None:
    data = dumps({"ring": np.arange(3, dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"^1 arrays in 3 bytes, expected 1 in 4$"):
        loads(data + b"x")


def test_an_array_placed_past_the_array_bytes_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^an array \(\|u1, \[2\]\) lies outside the array bytes$"):
        loads(b'["$nd",1]\n{"a":{"$nd":[4,"|u1",[2]]}}\nxx')


def test_an_array_in_a_list_is_refused_when_written() -> None:
    with pytest.raises(
        TypeError, match=r"^a numpy array in a snapshot must be the value of a dict key, not a list item$"
    ):
        dumps({"a": [np.arange(2)]})


def test_arrays_that_are_not_contiguous_are_written_as_their_values() -> None:
    ring = np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2]
    assert loads(dumps({"ring": ring}))["ring"].tolist() == ring.tolist()


def test_the_first_array_of_a_dtype_in_a_process_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "_DTYPE_NAMES", {})  # as in a fresh worker: no dtype seen yet
    assert dumps({"a": np.zeros(1, np.uint16)}).split(b"\n")[1] == b'{"a":{"$nd":[0,"<u2",[1]]}}'


def test_without_the_c_walk_the_plain_one_reads_the_same_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = {
        "a": 1,
        "b": {"c": np.arange(3, dtype=np.int64), "d": {"e": np.ones(2, np.float32)}, "f": "g"},
        "h": [{"i": 2}],
        "j": np.zeros(0, np.uint8),
    }
    data = dumps(tree)
    monkeypatch.setattr(state, "_speedups", None)
    plain = loads(data)
    assert orjson.dumps(plain, option=orjson.OPT_SERIALIZE_NUMPY) == orjson.dumps(
        tree, option=orjson.OPT_SERIALIZE_NUMPY
    )
    assert [plain["b"]["c"].dtype, plain["b"]["d"]["e"].dtype, plain["j"].dtype] == [np.int64, np.float32, np.uint8]


def test_a_skeleton_that_is_not_an_object_or_has_no_array_bytes_is_corrupt() -> None:
    listed = b"".join(file_pieces([b"[1]", b"\n"], "$nd", "cfg"))
    assert _refused(listed) == f"{SOURCE} is corrupt (the skeleton is not an object). {RECOVER}"
    unended = b"".join(file_pieces([b"{}"], "$nd", "cfg"))
    assert _refused(unended) == f"{SOURCE} is corrupt (no array bytes). {RECOVER}"


def test_a_file_of_another_deployment_is_refused_naming_each_difference() -> None:
    data = encode(Snapshot(3, {}, {}), Seal("cfg", identity={"group": "a", "topics": ["p", "f"]}))
    message = _refused(data, Seal("cfg", identity={"group": "b", "topics": ["p", "g"]}))
    assert message == (
        f"{SOURCE} belongs elsewhere (group: 'a', now 'b'; topics: ['p', 'f'], now ['p', 'g']): its offsets are "
        f"not this group's. Point snapshot_dir at this deployment's own directory, or: {RECOVER}"
    )


def test_a_file_sealed_by_a_bare_hash_is_refused_naming_both_hashes() -> None:
    message = _refused(encode(Snapshot(3, {}, {}), "0123"), Seal.of({"monitor": {"bins": 10}}))
    now = Seal.of({"monitor": {"bins": 10}}).config
    assert message == (
        f"{SOURCE} was made with other detection settings (config hash 0123, now {now}); its state would not "
        f"match them. Restore the old settings, or: {RECOVER}"
    )


def test_the_header_is_written_with_sorted_keys_so_equal_settings_give_equal_bytes() -> None:
    one = encode(Snapshot(3, {}, {}), Seal.of({"b": 1, "a": {"d": 1, "c": 2}}, {"z": 1, "y": 2}))
    other = encode(Snapshot(3, {}, {}), Seal.of({"a": {"c": 2, "d": 1}, "b": 1}, {"y": 2, "z": 1}))
    assert one == other
    header = one.split(b"\n", 1)[0]
    assert header == orjson.dumps(orjson.loads(header), option=orjson.OPT_SORT_KEYS)
    assert header.startswith(b'{"arrays":0,"body":')


def test_a_file_of_this_cluster_but_another_group_says_its_offsets_are_not_this_group_s() -> None:
    """The cluster's sentence only where the clusters differ: here both files are of cluster c-1."""
    data = encode(Snapshot(3, {}, {}), Seal("cfg", identity={"cluster": "c-1", "group": "a"}))
    assert _refused(data, Seal("cfg", identity={"cluster": "c-1", "group": "b"})) == (
        f"{SOURCE} belongs elsewhere (group: 'a', now 'b'): its offsets are not this group's. Point snapshot_dir "
        f"at this deployment's own directory, or: {RECOVER}"
    )
    assert _refused(data, Seal("cfg", identity={"cluster": "c-2", "group": "a"})) == (
        f"{SOURCE} belongs elsewhere (cluster: 'c-1', now 'c-2'): it was written against Kafka cluster 'c-1' and "
        f"this reader is connected to cluster 'c-2', so its offsets are another cluster's. Point snapshot_dir at "
        f"this deployment's own directory, or: {RECOVER}"
    )


def test_a_file_written_without_an_identity_is_refused_by_a_reader_with_one() -> None:
    data = encode(Snapshot(3, {}, {}), Seal("cfg"))
    message = _refused(data, Seal("cfg", identity={"group": "b"}))
    assert message.startswith(f"{SOURCE} belongs elsewhere (group: ") and "its offsets are not this group's" in message
