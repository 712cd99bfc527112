"""Issue 17 review, hole 3: ``max_models`` is a bound per input partition, so whether a model is
monitored depends on that partition's log only, never on which partitions a worker owns or how far
each has got (a budget shared by a worker's partitions made state depend on the assignment)."""

from __future__ import annotations

from streamdrift.core.records import RawMessage
from streamdrift.core.state import encode
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker
from streams import model_prediction

P, F = "streamdrift.predictions", "streamdrift.feedback"


def _predictions(partition: int, models: list[str]) -> list[RawMessage]:
    return [model_prediction(P, partition, offset, m, 1_700_000_000 + offset) for offset, m in enumerate(models)]


def _partition_zero_state(tmp_path, owned: list[int]) -> bytes:
    """Partition 0's state once the worker owning ``owned`` consumed its partitions, partition 0 last."""
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path / f"owned{len(owned)}", max_models=2))
    worker.partitions = {p: worker._new_state(p) for p in owned}
    for p in sorted(owned, reverse=True):
        engine = worker.partitions[p].engine
        engine.add(P, _predictions(p, [f"p{p}-a", f"p{p}-b", f"p{p}-c", f"p{p}-a"]))
        engine.release(ended={P, F})
    engine = worker.partitions[0].engine
    assert sorted(engine.monitors) == ["p0-a", "p0-b"] and engine.unmonitored_events == 1
    return encode(engine.snapshot(), "c")


def test_a_partition_state_is_the_same_whether_its_worker_owns_one_partition_or_three(tmp_path) -> None:
    assert _partition_zero_state(tmp_path, [0]) == _partition_zero_state(tmp_path, [0, 1, 2])
