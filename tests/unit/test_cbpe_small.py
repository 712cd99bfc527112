"""The plain-Python path of ``CBPE.update`` (``metrics/cbpe_small.py``) gives the general path's state, byte for
byte, and the same windows, on seeded streams cut into small batches."""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core.metrics import cbpe as cbpe_module
from streamdrift.core.metrics.cbpe import CBPE
from streamdrift.core.metrics.cbpe_small import update_small
from streamdrift.core.state import encode_tree

# scores a stream draws from besides uniform ones: 0.5 (both sides), the ends, halves of the fixed point's unit
_SPECIAL = [0.5, 0.0, 1.0, 0.5 + 2**-21, 0.5 - 2**-21, 3 * 2**-21, 1 - 2**-53, np.nan, np.nan]


def _scores(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    special = rng.random(n) < 0.3
    scores[special] = rng.choice(np.array(_SPECIAL), size=int(special.sum()))
    return scores


def _bytes(cbpe: CBPE) -> bytes:
    return encode_tree(cbpe.state(), "c")


def _feed(cbpe: CBPE, scores: np.ndarray, sizes: list[int]) -> list[tuple[int, int, float]]:
    windows, at = [], 0
    for size in sizes:
        if at >= len(scores):
            break
        windows += [
            (w["position"], w["row"] + at, w["estimated_accuracy"]) for w in cbpe.update(scores[at : at + size])
        ]
        at += size
    assert at >= len(scores)
    return windows


@pytest.mark.parametrize("seed", range(6))
def test_small_batches_give_the_general_paths_state(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = _scores(seed, 3000)
    sizes = np.random.default_rng(100 + seed).integers(1, 21, size=3000).tolist()  # 1 to 20 rows: small and general
    calls = {"small": 0, "starts": 0}

    def counted(cbpe: CBPE, batch: np.ndarray) -> bool:
        starts = cbpe.rows % cbpe.slot_size == 0
        done = update_small(cbpe, batch)
        calls["small"] += done
        calls["starts"] += done and starts
        return done

    monkeypatch.setattr(cbpe_module, "update_small", counted)
    fast = CBPE(window_size=160, subwindows=4)
    fast_windows = _feed(fast, scores, sizes)
    monkeypatch.setattr(cbpe_module, "update_small", lambda *args: False)
    general = CBPE(window_size=160, subwindows=4)
    general_windows = _feed(general, scores, sizes)
    whole = CBPE(window_size=160, subwindows=4)  # one batch: the general path alone
    whole_windows = _feed(whole, scores, [3000])

    assert calls["small"] > 50 and calls["starts"] > 0  # both kinds of small batch were taken
    assert len(fast_windows) > 10
    assert fast_windows == general_windows
    assert [w[::2] for w in fast_windows] == [w[::2] for w in whole_windows]  # rows differ: other batch starts
    assert _bytes(fast) == _bytes(general) == _bytes(whole)


def test_what_the_small_path_leaves_to_the_general_one() -> None:
    cbpe = CBPE(window_size=8, subwindows=2)
    cbpe.update(np.array([0.9]))
    before = _bytes(cbpe)
    assert not update_small(cbpe, np.array([0.9, 0.8, 0.7]))  # closes the sub-window
    assert not update_small(cbpe, np.array([[0.2, 0.8]]))  # class probabilities
    assert not update_small(cbpe, np.array([1.5]))  # not a probability
    assert not update_small(cbpe, [0.9])  # type: ignore[arg-type]  # not an array
    assert not update_small(cbpe, np.array([]))
    assert _bytes(cbpe) == before
    assert update_small(cbpe, np.array([np.nan, np.nan]))  # nothing scored: nothing counted
    assert _bytes(cbpe) == before
    assert update_small(cbpe, np.array([0.25, np.nan]))
    assert cbpe.rows == 2 and cbpe.sums[-1].tolist() == [2, round(0.9 * 2**20) + round(0.75 * 2**20)]
