"""runtime/checkpoint.py: a snapshot file is loaded only for the partition it holds (issue 18).

Switching that check off was one of the planted mutants no test killed: a file renamed or copied to
another partition's name would be restored into that partition, its models and offsets with it, and the
worker would seek the partition to offsets of another one.
"""

from __future__ import annotations

import shutil

import pytest

from streamdrift.core.config import MonitorSettings
from streamdrift.core.errors import SnapshotError
from streamdrift.core.state import Snapshot
from streamdrift.runtime.checkpoint import LocalSnapshotStore

SETTINGS = MonitorSettings(reference_size=500, window_size=400, subwindows=4)


def test_a_snapshot_under_another_partitions_name_is_refused_naming_both(tmp_path) -> None:
    store = LocalSnapshotStore(tmp_path, SETTINGS.fingerprint())
    store.save(Snapshot(1, {"predictions": 7, "feedback": 3}, {}))
    assert store.load(1).offsets == {"predictions": 7, "feedback": 3}
    assert store.load(0) is None

    shutil.copy(store.path(1), store.path(0))  # renamed or copied by hand
    expected = f"{store.path(0)} holds partition 1, not 0; was the file renamed? Move it away and restart."
    with pytest.raises(SnapshotError) as refused:
        store.load(0)
    assert str(refused.value) == expected
    assert store.load(1).partition == 1  # the original still loads
