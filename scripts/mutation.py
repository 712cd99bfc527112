"""`make mutation`: mutmut over chosen core modules, each module with its own fast tests (issue 18).

mutmut 3 reads one ``[tool.mutmut]`` from ./pyproject.toml: one set of modules, one test selection. A survivor
costs every selected test that reaches its function, so one selection for every module is as slow as its
slowest test file (``test_monitor.py`` reaches the policy and the codec). Here each module runs apart, in
``build/mutation/<module>/``: links to ``src``, ``tests``, ``scripts`` and ``schemas``, and a copy of
pyproject.toml whose ``[tool.mutmut]`` mutates that module only, with the tests listed for it in ``MODULES``
(the repository's ``[tool.mutmut]`` gives the rest: pytest arguments, timeouts). Then one line per module
(caught / all mutants) and the survivors by name; ``cd build/mutation/<module> && mutmut show NAME`` shows one.

    python scripts/mutation.py policy state          # as `make mutation MUTATION_MODULES="policy state"`
    python scripts/mutation.py --max-children 2 stats
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).with_name("mutmut")
# name -> (the file mutated, the tests run against its mutants: fast ones that pin its behaviour exactly, and
# the functions mutated, as mutant name patterns: all of the file's when none)
MODULES: dict[str, tuple[str, list[str], list[str]]] = {
    "policy": (
        "src/streamdrift/core/policy.py",
        [
            "tests/unit/test_mutants_policy.py",
            "tests/unit/test_pinned_behaviour.py",
            "tests/unit/test_one_event_per_change.py",  # the alarms' watch and resolution (issue 22)
            "tests/unit/test_retrain_budget.py",  # the retrain ledger (issue 23)
        ],
        [],
    ),
    "state": (
        "src/streamdrift/core/state.py",
        ["tests/unit/test_mutants_state.py", "tests/unit/test_snapshot.py", "tests/unit/test_mutants_checkpoint.py"],
        [],
    ),
    "stats": ("src/streamdrift/core/stats.py", ["tests/unit/test_mutants_stats.py", "tests/unit/test_stats.py"], []),
    # the join's expiry: its clock (watermark, horizon), deadlines and what expires; the rest of join.py
    # (555 mutants in all) is tested equal to the bulk path by test_join's property test, 12 s a survivor
    "join-expiry": (
        "src/streamdrift/core/join.py",
        ["tests/unit/test_mutants_join.py", "tests/unit/test_join.py", "tests/unit/test_pinned_behaviour.py"],
        [f"streamdrift.core.join.*{f}__mutmut_*" for f in ("expire", "next_deadline", "advance", "forget", "horizon")],
    ),
    # the whole row loop, the reference of the bulk join: its own exact tests, without the two comparisons with the
    # bulk path over long random streams (6 s and 0.6 s a survivor, and a mutant of the shared code moves both
    # sides alike); test_mutants_join's table pins the loop's pairs, counters and state row by row
    "join": (
        "src/streamdrift/core/join.py",
        [
            "tests/unit/test_mutants_join.py",
            "tests/unit/test_join.py",
            "tests/unit/test_pinned_behaviour.py",
            "--deselect",
            "tests/unit/test_join.py::test_the_bulk_path_gives_exactly_what_the_row_loop_gives",
            "--deselect",
            "tests/unit/test_join.py::test_the_bulk_path_handles_every_batch_of_an_in_order_stream",
        ],
        [],
    ),
    # the bulk path the monitors use, tested equal to the row loop (test_join's property test: 13 s a survivor)
    "join-bulk": (
        "src/streamdrift/core/join_bulk.py",
        ["tests/unit/test_mutants_join.py", "tests/unit/test_join.py", "tests/unit/test_pinned_behaviour.py"],
        [],
    ),
    # test_concept's protocol test fails under mutmut (isinstance against ConceptDetector, a runtime_checkable
    # Protocol, is False for the rewritten classes): left out; test_mutants_concept round-trips every detector
    "concept": (
        "src/streamdrift/core/concept.py",
        [
            "tests/unit/test_mutants_concept.py",
            "tests/unit/test_concept.py",
            "tests/unit/test_pinned_behaviour.py",
            "--deselect",
            "tests/unit/test_concept.py::test_every_registered_detector_is_a_concept_detector_that_round_trips_its_state",
        ],
        [],
    ),
    # the sketch's columns: how values map to bins, the reference fitted from rows or from a warm-up summary,
    # the count dtypes (the StreamSketch around them is reached through test_monitor: minutes a survivor)
    "sketch-columns": (
        "src/streamdrift/core/sketch.py",
        # test_impact: the per-bin mean scores of a reference (summary_scores, scores_of) drift_impact reads
        [
            "tests/unit/test_mutants_sketch.py",
            "tests/unit/test_sketch.py",
            "tests/unit/test_warmup.py",
            "tests/unit/test_impact.py",
        ],
        [
            f"streamdrift.core.sketch.{f}__mutmut_*"
            for f in ("xǁColumnǁ*", "x_infer_kind", "x_to_float", "x_category_keys", "x__categories", "x_count_dtype")
        ],
    ),
    # the warm-up's counts (issue 17): buckets, distinct numbers, categories, state
    "warmup": (
        "src/streamdrift/core/warmup.py",
        # test_buckets: compact(), the columns of a checkpoint bucketed together (issue 19); test_impact: the
        # scored columns drift_impact reads; test_multivariate: numbers_copy, the columns it borrows (issue 23)
        [
            "tests/unit/test_mutants_warmup.py",
            "tests/unit/test_warmup.py",
            "tests/unit/test_buckets.py",
            "tests/unit/test_impact.py",
            "tests/unit/test_multivariate.py",
        ],
        [],
    ),
    # the warm-up's bucket geometry (moved out of warmup.py for issue 19), and its plain-Python path for a few numbers
    "buckets": (
        "src/streamdrift/core/buckets.py",
        ["tests/unit/test_mutants_warmup.py", "tests/unit/test_buckets.py", "tests/unit/test_warmup.py"],
        [],
    ),
    "buckets_small": ("src/streamdrift/core/buckets_small.py", ["tests/unit/test_buckets.py"], []),
    # where a record belongs and what a partition does with misrouted ones and forwarded copies
    "routing": (
        "src/streamdrift/core/routing.py",
        ["tests/unit/test_mutants_routing.py", "tests/unit/test_routing.py", "tests/unit/test_worker_routing.py"],
        [],
    ),
    # correlation drift (issue 22): exact co-moments, pooled correlations, the Fisher z test, the warm-up's scale
    "multivariate": ("src/streamdrift/core/multivariate.py", ["tests/unit/test_multivariate.py"], []),
    # drift_impact: how much of the mean score's change each feature's shift explains
    "impact": ("src/streamdrift/core/impact.py", ["tests/unit/test_impact.py"], []),
    "attribution": ("src/streamdrift/core/attribution.py", ["tests/unit/test_attributions.py"], []),
    "cost": ("src/streamdrift/core/metrics/cost.py", ["tests/unit/test_cost.py"], []),
}
LINKED = ("src", "tests", "scripts", "schemas")


def mutmut_section(module: str) -> str:
    """The ``[tool.mutmut]`` of one module's run: the repository's, with its own file and tests."""
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    path, tests, _ = MODULES[module]
    config = {**base, "only_mutate": [path], "pytest_add_cli_args_test_selection": tests}
    lines = ["[tool.mutmut]"]
    for key, value in config.items():
        if isinstance(value, list):
            value = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        elif isinstance(value, str):
            value = f'"{value}"'
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def stage(module: str) -> Path:
    """``build/mutation/<module>``, fresh: the links and the module's pyproject.toml."""
    where = ROOT / "build" / "mutation" / module
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    for name in LINKED:
        (where / name).symlink_to(ROOT / name)
    pyproject = (ROOT / "pyproject.toml").read_text()
    # the repository's [tool.mutmut] table, up to the next table, replaced by this module's
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[)", mutmut_section(module) + "\n", pyproject)
    (where / "pyproject.toml").write_text(pyproject)
    return where


def results(where: Path) -> dict[str, str]:
    """Mutant name -> status (killed, survived, no tests, timeout...), as `mutmut results --all true` prints."""
    out = subprocess.run(
        [MUTMUT, "results", "--all", "true"], cwd=where, capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("streamdrift."):
            found[name] = status
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=["policy", "state"], help=f"of {', '.join(MODULES)}")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    table = []
    for module in args.modules:
        where = stage(module)
        started = time.monotonic()
        patterns = MODULES[module][2]
        run = subprocess.run(
            ["nice", "-n", "15", MUTMUT, "run", "--max-children", str(args.max_children), *patterns], cwd=where
        )
        if run.returncode:
            print(f"mutmut failed on {module} (exit {run.returncode}); see above", file=sys.stderr)
            return run.returncode
        statuses = {
            name: status
            for name, status in results(where).items()
            if not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)
        }
        table.append((module, statuses, time.monotonic() - started))
    print()
    for module, statuses, seconds in table:
        # a mutant that makes the tests run past their time limit (an endless loop) is caught too, as
        # Stryker and PIT count it; the killed share is printed apart
        total = len(statuses) or 1
        killed = sum(s == "killed" for s in statuses.values())
        timeout = sum(s == "timeout" for s in statuses.values())
        args = MODULES[module][1]
        # the test files and ids, without pytest options and what they take (--deselect ID)
        tests = ", ".join(
            Path(t).name for t, before in zip(args, ["", *args]) if not t.startswith("-") and before != "--deselect"
        )
        print(
            f"{module:12} {killed + timeout:4} / {len(statuses):4} caught ({100 * (killed + timeout) / total:.1f} %: "
            f"{killed} killed, {timeout} timed out) in {seconds / 60:.1f} min; tests: {tests}"
        )
    for module, statuses, _ in table:
        survivors = sorted(n for n, s in statuses.items() if s not in ("killed", "timeout"))
        for name in survivors:
            print(f"  {statuses[name]:10} {name}   (cd build/mutation/{module} && mutmut show {name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
