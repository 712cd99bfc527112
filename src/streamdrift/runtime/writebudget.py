"""When a partition's state is worth writing to the state topic: its write budget (issue 16).

A checkpoint writes the whole state of every model that changed since the
partition's last one, whatever the number of events that changed it. A model's
state is kilobytes (a warm-up keeps a sketch of every column); an event is a few
hundred bytes. With many models and few events each between two checkpoints
(10,000 models at 3,500 events/s is 3.5 events per model in 10 s) the state
topic took 2-4 bytes for every input byte it summarised: the state outgrew its
input, in bytes written to the brokers and in the checkpoints' CPU.

So with ``state_store = "kafka"`` and ``at_least_once``, the periodic
checkpoint writes a partition only once it is *due*: the input bytes consumed
since its last checkpoint, times ``state_write_budget``, are at least what its
changed models' records are expected to weigh (their number times the mean
bytes of a model record at the partition's last write), or
``checkpoint_max_interval_s`` has passed since it. A partition not due keeps
its changed models for a later checkpoint; its state, its offsets and the
state topic stay those of its last checkpoint, which remains a consistent
point to resume from. State is a function of the log: *when* it is written
changes what a crash replays (at most ``checkpoint_max_interval_s`` of input,
as the checkpoint interval does), never what it gives.

A rebalance's revocation and the shutdown write every changed partition, due
or not, and so does the checkpoint after a failed one: whether writing works
again is what makes the worker ready again, and a partition whose write failed
does not wait for its budget once more. ``exactly_once`` writes every
checkpoint: its transaction holds the drift events of every partition, which
become visible only at its commit.

Examples
--------
>>> budget = WriteBudget(ratio=0.25, max_interval_s=120.0)
>>> budget.due(input_bytes=40_000, changed_models=10, bytes_per_model=4096, since_s=10.0)
False
>>> budget.due(input_bytes=200_000, changed_models=10, bytes_per_model=4096, since_s=10.0)
True
>>> budget.due(input_bytes=40_000, changed_models=10, bytes_per_model=4096, since_s=120.0)
True
>>> WriteBudget(ratio=0.0, max_interval_s=120.0).due(0, 10_000, 4096, 0.0)  # no budget: every checkpoint
True
"""

from __future__ import annotations

from dataclasses import dataclass

# What a model record is expected to weigh before the partition wrote one: about a warm-up model's record
# (``benchmarks/bench_state_bytes.py``: 3.9 KiB after 20 predictions of 26 features, compressed)
FIRST_BYTES_PER_MODEL = 4096.0


@dataclass(frozen=True, slots=True)
class WriteBudget:
    """``ratio``: state bytes written per input byte consumed (``state_write_budget``; 0: no budget, every
    checkpoint writes); ``max_interval_s``: the longest a changed partition waits (``checkpoint_max_interval_s``)."""

    ratio: float
    max_interval_s: float

    def due(self, input_bytes: int, changed_models: int, bytes_per_model: float, since_s: float) -> bool:
        """Whether a partition whose ``changed_models`` changed since its last checkpoint, ``since_s`` seconds
        ago, with ``input_bytes`` consumed since, is worth writing now."""
        if self.ratio == 0 or since_s >= self.max_interval_s:
            return True
        return input_bytes * self.ratio >= changed_models * bytes_per_model
