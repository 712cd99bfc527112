"""``streamdrift worker``: consume predictions and feedback, detect drift, publish drift events."""

from __future__ import annotations

import argparse

from streamdrift.runtime.settings import Settings


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doc = "Consume predictions and feedback, detect drift, publish drift events."
    subparsers.add_parser("worker", help=doc, description=doc, parents=[common])


def run(settings: Settings, args: argparse.Namespace) -> int:
    from streamdrift.runtime.worker import Worker  # the Kafka runtime, loaded only by the commands that run it

    return Worker(settings).run()
