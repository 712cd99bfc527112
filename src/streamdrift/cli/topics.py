"""``streamdrift topics create|check``: the Kafka topics, their co-partitioning and the state topic."""

from __future__ import annotations

import argparse

from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doc = "Manage the Kafka topics."
    p = subparsers.add_parser("topics", help=doc, description=doc, parents=[common])
    p.add_argument("action", choices=["create", "check"])
    p.add_argument("--partitions", type=int, help="partitions of every topic (default: topics.partitions)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "create":
        created = kafka.create_topics(settings, args.partitions)
        print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
    n = kafka.check_topics(settings)
    print(f"topics ok: {settings.topics.predictions} and {settings.topics.feedback} have {n} partitions each")
    if settings.state_store == "kafka":  # check_topics checked it
        print(f"state topic ok: {settings.topics.state} is compacted and has {n} partitions")
    return 0
