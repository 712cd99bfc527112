"""The local store's write path when the disk says no (issue 17, item 6): no temporary file is left, and an
unwritable snapshot_dir is refused at start naming the setting."""

from __future__ import annotations

import errno
import os

import pytest

from streamdrift.core.errors import ConfigError
from streamdrift.core.state import Snapshot
from streamdrift.runtime.checkpoint import LocalSnapshotStore


def snapshot() -> Snapshot:
    return Snapshot(0, {"predictions": 5, "feedback": 3}, {})


def test_a_write_that_fails_midway_leaves_neither_temp_file_nor_snapshot(tmp_path, monkeypatch) -> None:
    store = LocalSnapshotStore(tmp_path, "config")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save(snapshot())
    assert list(tmp_path.iterdir()) == []


def test_a_directory_in_place_of_the_temp_file_is_left_alone(tmp_path) -> None:
    store = LocalSnapshotStore(tmp_path, "config")
    (tmp_path / "partition-0.tmp").mkdir()
    with pytest.raises(IsADirectoryError):
        store.save(snapshot())
    assert [p.name for p in tmp_path.iterdir()] == ["partition-0.tmp"]
    (tmp_path / "partition-0.tmp").rmdir()
    assert store.save(snapshot()) > 0
    assert store.load(0) is not None


def test_clean_temp_removes_what_an_interrupted_writer_left(tmp_path) -> None:
    store = LocalSnapshotStore(tmp_path, "config")
    store.save(snapshot())
    (tmp_path / "partition-1.tmp").write_bytes(b"half a snapshot")
    (tmp_path / "partition-2.tmp").mkdir()  # not ours to remove
    assert [p.name for p in store.clean_temp()] == ["partition-1.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partition-0.snapshot", "partition-2.tmp"]


def test_an_unwritable_snapshot_dir_is_refused_naming_the_setting(tmp_path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"snapshot_dir .* \(env STREAMDRIFT_SNAPSHOT_DIR\)"):
        LocalSnapshotStore(a_file / "snapshots", "config").check_writable()
    LocalSnapshotStore(tmp_path / "new" / "snapshots", "config").check_writable()  # created, probe removed
    assert list((tmp_path / "new" / "snapshots").iterdir()) == []
