"""Start to ready of a worker restoring ``--state-models`` models (issue 16): ``bench.py --state``'s large
phase alone (``bench_state.large_phase``), on a broker of its own, with ``--restarts`` restarts of each kind.

A worker consumes the stream of ``--state-models`` models (``--state-events`` predictions, their labels) and
stops; then a worker restores them from its local cache plus the state topic's tail, and one from the topic
alone. Each restart's ``restore_s`` (the worker's log: ``cache_s``, ``read_s``, ``unpack_s``, ``build_s``) and
its wall-clock start to ready (``/readyz``; the machine is shared, so it counts the others' work too).

    cd benchmarks && ../.venv/bin/python bench_restore_worker.py --restarts 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

import orjson

from bench import start_own_broker
from bench_state import large_phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-models", type=int, default=10_000)
    parser.add_argument("--state-events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument(
        "--state-write-budget",
        type=float,
        default=None,
        help="the consuming worker's state_write_budget (default: the worker's; 0: every checkpoint writes)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="streamdrift-bench-restore-worker-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        bootstrap = start_own_broker(stack, workdir)
        out = large_phase(bootstrap, args, workdir, uuid.uuid4().hex[:8], args.restarts)
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
