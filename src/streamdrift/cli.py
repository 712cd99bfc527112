"""The ``streamdrift`` command."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import orjson

from streamdrift import __version__, logs, replay, retrain, status
from streamdrift.errors import StreamdriftError
from streamdrift.settings import Settings, load_settings

log = logging.getLogger("streamdrift")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdrift", description="Streaming drift detection on Kafka.")
    parser.add_argument("--version", action="version", version=f"streamdrift {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", type=Path, help="TOML settings file (environment STREAMDRIFT_* wins over it)")
        return p

    command("worker", "Consume predictions and feedback, detect drift, publish drift events.")

    topics = command("topics", "Manage the Kafka topics.")
    topics.add_argument("action", choices=["create", "check"])
    topics.add_argument("--partitions", type=int, help="partitions of every topic (default: topics.partitions)")

    demo = command("demo", "Produce a synthetic stream with an injected drift and print drift events.")
    demo.add_argument("--events", type=int, default=60_000, help="predictions to produce, all models together")
    demo.add_argument("--rate", type=float, default=2000.0, help="predictions per second")
    demo.add_argument("--drift-at", type=int, default=6000, help="prediction of credit-risk where drift starts")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--linger", type=float, default=15.0, help="seconds to keep printing drift events after")

    ref = command("reference", "Build or show a model's reference profile.")
    ref.add_argument("action", choices=["build", "show"])
    ref.add_argument("profile", nargs="?", type=Path, help="with show: the profile to print")
    ref.add_argument("--model-id", help="with build: the model the profile is for")
    ref.add_argument("--input", type=Path, help="with build: training data, JSONL (prediction-shaped) or CSV")
    ref.add_argument("--out", type=Path, help="with build: where to write the profile")
    ref.add_argument("--sample-size", type=int, default=1000, help="rows kept in the profile's sample")

    alerts = command("alerts", "Print drift events from the alerts topic as JSON lines.")
    alerts.add_argument("--from-beginning", action="store_true")
    alerts.add_argument("--timeout", type=float, default=0.0, help="stop after this many idle seconds (0: never)")
    retrain.add_parser(sub)
    status.add_parser(sub)
    replay.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        logs.setup(settings.log_level)
        if args.command == "worker":
            from streamdrift.worker import Worker

            return Worker(settings).run()
        if args.command == "topics":
            return _topics(settings, args)
        if args.command == "demo":
            return _demo(settings, args)
        if args.command == "alerts":
            return _alerts(settings, args)
        if args.command == "reference":
            return _reference(settings, args)
        if args.command == "retrain-listener":
            return retrain.run(settings, args)
        if args.command == "status":
            return status.run(settings, args)
        if args.command == "replay":
            return replay.run(settings, args)
    except StreamdriftError as exc:
        print(f"streamdrift: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # a bug or an outage: one JSON log line with the traceback, not a bare traceback
        log.exception("stopped on an unexpected error", extra={"fields": {"command": args.command}})
        return 1
    return 1


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from streamdrift import kafka

    if args.action == "create":
        created = kafka.create_topics(settings, args.partitions)
        print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
    n = kafka.check_topics(settings)
    print(f"topics ok: {settings.topics.predictions} and {settings.topics.feedback} have {n} partitions each")
    return 0


def _reference(settings: Settings, args: argparse.Namespace) -> int:
    from streamdrift import reference
    from streamdrift.errors import ConfigError

    if args.action == "show":
        if args.profile is None:
            raise ConfigError("reference show needs the profile: streamdrift reference show PROFILE.json")
        print(reference.show(reference.load_profile(args.profile), settings.monitor))
        return 0
    missing = [f"--{n.replace('_', '-')}" for n in ("model_id", "input", "out") if getattr(args, n) is None]
    if missing:
        raise ConfigError(f"reference build needs {', '.join(missing)}")
    if not args.input.is_file():
        raise ConfigError(f"--input {args.input} does not exist")
    profile = reference.build_profile(args.model_id, reference.read_rows(args.input), settings.monitor,
                                      args.sample_size)
    args.out.write_bytes(orjson.dumps(profile, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    print(f"wrote {args.out}: {profile['rows']} rows, {len(profile['features'])} features", file=sys.stderr)
    print(reference.show(profile, settings.monitor))
    return 0


def _alert_consumer(settings: Settings, from_beginning: bool):
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    from streamdrift import kafka

    consumer = Consumer(kafka.consumer_config(settings, **{"group.id": f"streamdrift-cli-{time.time_ns()}"}))
    n = kafka.partition_counts(kafka.admin(settings), [settings.topics.alerts]).get(settings.topics.alerts, 0)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(settings.topics.alerts, p, start) for p in range(n)])
    return consumer


def _print_alerts(consumer, timeout: float, summary: bool = False) -> int:
    """Drift events as JSON lines on stdout; with ``summary``, a readable line on stderr first."""
    messages = consumer.consume(100, timeout)
    for msg in messages:
        if msg.error() is None:
            if summary:
                e = orjson.loads(msg.value())
                moved = (", ".join(f"{f['feature']} {f['score']:.2f}" for f in e["top_features"][:3])
                         or f"{e['statistic']:.3g} against {e['threshold']:.3g}")
                print(f"DRIFT {e['model_id']} {e['kind']} ({e['severity']}, action {e['action']}): "
                      f"{e['detector']} {moved}", file=sys.stderr, flush=True)
            print(msg.value().decode(), flush=True)
    return len(messages)


def _alerts(settings: Settings, args: argparse.Namespace) -> int:
    consumer = _alert_consumer(settings, args.from_beginning)
    idle_since = time.monotonic()
    try:
        while not args.timeout or time.monotonic() - idle_since < args.timeout:
            if _print_alerts(consumer, 0.5):
                idle_since = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from streamdrift import kafka
    from streamdrift.demo import DRIFTING, generate

    kafka.check_topics(settings)
    alerts = _alert_consumer(settings, from_beginning=False)
    producer = Producer(kafka.producer_config(settings))
    topic = {"prediction": settings.topics.predictions, "feedback": settings.topics.feedback}
    print(f"demo: producing {args.events} predictions at {args.rate:.0f}/s; drift injected into {DRIFTING} "
          f"at its prediction #{args.drift_at}. Drift events appear below.", file=sys.stderr)
    started = time.monotonic()
    produced = 0
    try:
        for kind, event in generate(args.events, seed=args.seed, drift_at=args.drift_at, start_time=time.time(),
                                    rate=args.rate):
            producer.produce(topic[kind], orjson.dumps(event), event["model_id"].encode())
            produced += kind == "prediction"
            if produced % 200 == 0 and kind == "prediction":
                producer.poll(0)
                _print_alerts(alerts, 0, summary=True)
                ahead = produced / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush(30)
        print(f"demo: all {produced} predictions produced; waiting {args.linger:.0f}s for drift events",
              file=sys.stderr)
        until = time.monotonic() + args.linger
        while time.monotonic() < until:
            _print_alerts(alerts, 0.5, summary=True)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush(10)
        alerts.close()
    return 0
