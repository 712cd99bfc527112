"""``streamdrift demo``: produce the synthetic stream with an injected drift and print drift events."""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from confluent_kafka import Producer

from streamdrift.cli.alerts import consumer, print_alerts
from streamdrift.core.synthetic import DRIFTING, generate
from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doc = "Produce a synthetic stream with an injected drift and print drift events."
    p = subparsers.add_parser("demo", help=doc, description=doc, parents=[common])
    p.add_argument("--events", type=int, default=60_000, help="predictions to produce, all models together")
    p.add_argument("--rate", type=float, default=2000.0, help="predictions per second")
    p.add_argument("--drift-at", type=int, default=6000, help="prediction of credit-risk where drift starts")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--linger", type=float, default=15.0, help="seconds to keep printing drift events after")


def run(settings: Settings, args: argparse.Namespace) -> int:
    kafka.check_topics(settings)
    alerts = consumer(settings, from_beginning=False)
    producer = Producer(kafka.producer_config(settings))
    topic = {"prediction": settings.topics.predictions, "feedback": settings.topics.feedback}
    print(
        f"demo: producing {args.events} predictions at {args.rate:.0f}/s; drift injected into {DRIFTING} "
        f"at its prediction #{args.drift_at}. Drift events appear below.",
        file=sys.stderr,
    )
    started = time.monotonic()
    produced = 0
    try:
        for kind, event in generate(
            args.events, seed=args.seed, drift_at=args.drift_at, start_time=time.time(), rate=args.rate
        ):
            producer.produce(topic[kind], orjson.dumps(event), event["model_id"].encode())
            produced += kind == "prediction"
            if produced % 200 == 0 and kind == "prediction":
                producer.poll(0)
                print_alerts(alerts, 0, summary=True)
                ahead = produced / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush(30)
        print(
            f"demo: all {produced} predictions produced; waiting {args.linger:.0f}s for drift events", file=sys.stderr
        )
        until = time.monotonic() + args.linger
        while time.monotonic() < until:
            print_alerts(alerts, 0.5, summary=True)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush(10)
        alerts.close()
    return 0
