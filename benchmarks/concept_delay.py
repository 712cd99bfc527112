#!/usr/bin/env python3
"""The concept detector alone against River's ADWIN: median delay on gradual and abrupt error-rate changes.

    .venv/bin/python benchmarks/concept_delay.py [--streams plain|benchmark] [--seeds FIRST-LAST] [--kinds gradual,abrupt]

The detector as the monitor builds it at default settings (``make_detector("cusum", ...)``: run length
``false_alarm_run_length × FAMILIES``, ``concept_ratio``, ``concept_warmup``, ``budget_confidence``), fed the
error stream directly (the monitor hands it the errors as they are); River's ADWIN at its defaults on the same
errors. The error rate goes from 10 % to 20 % from labelled event 20,000: linearly over 20,000 events (gradual,
60,000 events) or at once (abrupt). Delay in labelled events from the first changed one (an alarm on it: 1);
alarms before the change are false. Seconds for hundreds of seeds, where ``detection_bench.py --only
gradual,concept`` runs the whole monitor (the same medians, measured on seeds 1000-1099: docs/benchmarks.md).

Streams (``--streams``):

plain
    ``numpy.random.default_rng([seed, 22]).random(n) < rate``: the tuning set is seeds 0-299; 5000-5199 were
    held out.
benchmark
    The errors of ``detection_bench.py``'s streams: ``tabular(400 + seed)`` (gradual, 60,000 events) and
    ``tabular(200 + seed)`` (abrupt, 30,000 events); seeds 0-9 are the benchmark's.

Prints one line per kind, then one JSON object with every delay.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from streamdrift.core.concept import make_detector
from streamdrift.core.config import MonitorSettings
from streamdrift.core.monitor import FAMILIES

CHANGE, WIDTH = 20_000, 20_000


def profile(kind: str, n: int) -> np.ndarray:
    """The error rate of each labelled event."""
    if kind == "gradual":
        return np.concatenate([np.full(CHANGE, 0.1), np.linspace(0.1, 0.2, WIDTH), np.full(n - CHANGE - WIDTH, 0.2)])
    return np.where(np.arange(n) < CHANGE, 0.1, 0.2)


def errors(streams: str, kind: str, seed: int) -> np.ndarray:
    if streams == "plain":
        return np.random.default_rng([seed, 22]).random(60_000) < profile(kind, 60_000)
    import detection_bench  # the benchmark's own streams (benchmarks/ is on the path when run as a script)

    if kind == "gradual":
        return detection_bench.tabular(400 + seed, 60_000, error_profile=profile(kind, 60_000)).errors
    return detection_bench.tabular(200 + seed, 30_000, error_rates=(0.1, 0.2), change_at=CHANGE).errors


def delay(alarms: list[int]) -> tuple[int | None, int]:
    """(delay of the first alarm at or after the change, alarms before it)."""
    after = [a for a in alarms if a >= CHANGE]
    return (after[0] - CHANGE + 1 if after else None), len(alarms) - len(after)


def streamdrift_alarms(seen: np.ndarray) -> list[int]:
    settings = MonitorSettings()
    detector = make_detector(
        "cusum",
        settings.false_alarm_run_length * FAMILIES,
        settings.concept_ratio,
        settings.concept_warmup,
        confidence=settings.budget_confidence,
    )
    return [d["index"] for d in detector.update(seen)]


def adwin_alarms(seen: np.ndarray) -> list[int]:
    from river import drift

    adwin, alarms = drift.ADWIN(), []
    for i, e in enumerate(seen.astype(int).tolist()):
        adwin.update(e)
        if adwin.drift_detected:
            alarms.append(i)
    return alarms


def summary(results: list[tuple[int | None, int]]) -> dict:
    delays = [d for d, _ in results if d is not None]
    return {
        "median": float(np.median(delays)) if delays else None,
        "detected": len(delays),
        "seeds": len(results),
        "false_alarms": sum(f for _, f in results),
    }


def paired(ours: list[tuple[int | None, int]], adwin: list[tuple[int | None, int]]) -> dict:
    """Seed by seed, on the seeds both found: which found the change first, and the median difference
    (streamdrift's delay minus ADWIN's; negative: streamdrift sooner). The same streams make the medians'
    difference noisy where the paired one is not (a median of a few hundred delays moves by ~100 events)."""
    both = [(a, b) for (a, _), (b, _) in zip(ours, adwin, strict=True) if a is not None and b is not None]
    differences = [a - b for a, b in both]
    return {
        "streamdrift_sooner": sum(d < 0 for d in differences),
        "adwin_sooner": sum(d > 0 for d in differences),
        "median_difference": float(np.median(differences)) if differences else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", choices=("plain", "benchmark"), default="plain")
    parser.add_argument("--seeds", default="0-299", help="FIRST-LAST")
    parser.add_argument("--kinds", default="gradual,abrupt", help="comma-separated: gradual, abrupt")
    args = parser.parse_args(argv)
    first, _, last = args.seeds.partition("-")
    seeds = range(int(first), int(last) + 1)
    out: dict = {"streams": args.streams, "seeds": [seeds.start, seeds.stop - 1]}
    for kind in args.kinds.split(","):
        ours, adwin = [], []
        for seed in seeds:
            seen = errors(args.streams, kind, seed)
            ours.append(delay(streamdrift_alarms(seen)))
            adwin.append(delay(adwin_alarms(seen)))
        out[kind] = {
            "streamdrift": summary(ours),
            "River ADWIN": summary(adwin),
            "paired": paired(ours, adwin),
            "delays": [d for d, _ in ours],
        }
        a, b, p = out[kind]["streamdrift"], out[kind]["River ADWIN"], out[kind]["paired"]
        print(
            f"{kind} ({args.streams} streams, seeds {args.seeds}): streamdrift median {a['median']:g} "
            f"({a['detected']}/{a['seeds']} found, {a['false_alarms']} false alarms), River ADWIN {b['median']:g} "
            f"({b['detected']}/{b['seeds']}, {b['false_alarms']} false); seed by seed streamdrift sooner on "
            f"{p['streamdrift_sooner']}, ADWIN on {p['adwin_sooner']}, median difference {p['median_difference']:g}"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
