"""``streamdrift alerts``: print drift events from the alerts topic as JSON lines."""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doc = "Print drift events from the alerts topic as JSON lines."
    p = subparsers.add_parser("alerts", help=doc, description=doc, parents=[common])
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after this many idle seconds (0: never)")


def consumer(settings: Settings, from_beginning: bool) -> Consumer:
    alerts = Consumer(kafka.consumer_config(settings, **{"group.id": f"streamdrift-cli-{time.time_ns()}"}))
    n = kafka.partition_counts(kafka.admin(settings), [settings.topics.alerts]).get(settings.topics.alerts, 0)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    alerts.assign([TopicPartition(settings.topics.alerts, p, start) for p in range(n)])
    return alerts


def _impact_line(impact: dict | None) -> str:
    """A prediction_drift event's drift_impact, readable: the mean score's change and what explains it."""
    if not impact:
        return ""
    features = ", ".join(f"{f['feature']} {f['explained_change']:+.3f}" for f in impact["features"][:3])
    return (
        f"; mean score {impact['reference_mean_score']:.3f} -> {impact['window_mean_score']:.3f} "
        f"({impact['observed_change']:+.3f}), explained by {features}"
    )


def _retrain_line(event: dict) -> str:
    """What a retrain decision rests on: a ``retrain`` event's training window, or the budget that demoted a
    retrain to ``investigate``."""
    window, budget = event.get("training_window"), event.get("budget")
    if window:
        excluded = len(window["exclude"])
        stretches = "stretch" if excluded == 1 else "stretches"
        return f"; train on {window['start_time']} .. {window['end_time']}, {excluded} {stretches} excluded"
    if budget:
        return (
            f"; over retrain budget: {budget['used']} of {budget['limit']} per {budget['period_s']:g} s used, "
            f"next retrain allowed at {budget['next_allowed_at']}"
        )
    return ""


def print_alerts(consumer: Consumer, timeout: float, summary: bool = False) -> int:
    """Drift events as JSON lines on stdout; with ``summary``, a readable line on stderr first."""
    messages = consumer.consume(100, timeout)
    for msg in messages:
        value = msg.value()
        if msg.error() is None and value is not None:  # a tombstone (no value) is not a drift event
            if summary:
                e = orjson.loads(value)
                moved = (
                    ", ".join(f"{f['feature']} {f['score']:.2f}" for f in e["top_features"][:3])
                    or f"{e['statistic']:.3g} against {e['threshold']:.3g}"
                )
                print(
                    f"DRIFT {e['model_id']} {e['kind']} ({e['severity']}, action {e['action']}): "
                    f"{e['detector']} {moved}{_impact_line(e.get('drift_impact'))}{_retrain_line(e)}",
                    file=sys.stderr,
                    flush=True,
                )
            print(value.decode(), flush=True)
    return len(messages)


def run(settings: Settings, args: argparse.Namespace) -> int:
    alerts = consumer(settings, args.from_beginning)
    idle_since = time.monotonic()
    try:
        while not args.timeout or time.monotonic() - idle_since < args.timeout:
            if print_alerts(alerts, 0.5):
                idle_since = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        alerts.close()
    return 0
