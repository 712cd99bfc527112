"""``labels.Registry.register``: names numbered in order of their first row, each with that row, capped.

Seeded batches are registered one after the other and compared with the numpy registration it replaced
(``np.unique`` for each name's first row, in stream order), whatever the batch sizes and the cap.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamdrift.core.metrics.labels import OTHER, Registry


def _numpy_register(registry: Registry, keys: np.ndarray, rows: np.ndarray) -> None:
    """The registration before issue 19's plain loop, as it was."""
    if not len(keys) or registry._index.keys() >= set(keys.tolist()):
        return
    uniq, first = np.unique(keys, return_index=True)
    for j in np.argsort(first, kind="stable").tolist():
        name = str(uniq[j])
        if name in registry._index:
            continue
        if len(registry.names) - (OTHER in registry._index) < registry.cap:
            registry._add(name, int(rows[first[j]]))
        elif OTHER not in registry._index:
            registry._add(OTHER, int(rows[first[j]]))


def test_first_rows_in_stream_order_and_the_cap() -> None:
    registry = Registry(cap=3)
    registry.register(np.array(["b", "a", "b", "c"]), np.array([10, 11, 12, 13]))
    assert registry.state() == {"names": ["b", "a", "c"], "since": [10, 11, 13], "overflow": 0}
    registry.register(np.array(["a", "d", "e", "d"]), np.array([14, 15, 16, 17]))  # past the cap: __other__ once
    assert registry.state() == {"names": ["b", "a", "c", OTHER], "since": [10, 11, 13, 15], "overflow": 0}
    registry.register(np.array(["f"]), np.array([18]))
    assert registry.names == ["b", "a", "c", OTHER]


@pytest.mark.parametrize("seed", range(12))
def test_same_as_numpy_registration(seed: int) -> None:
    rng = random.Random(seed)
    cap = rng.choice([1, 2, 3, 5, 20])
    ours, theirs = Registry(cap), Registry(cap)
    row = 0
    for _ in range(rng.randint(1, 8)):
        n = rng.choice([0, 1, 2, 3, 8, 40])
        keys = np.array([f"c{rng.randint(0, 7)}" for _ in range(n)], dtype=str)
        rows = np.arange(row, row + n)
        ours.register(keys, rows)
        _numpy_register(theirs, keys, rows)
        assert ours.state() == theirs.state()
        assert ours._index == theirs._index
        row += n
