"""The ``streamdrift`` command: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamdrift import __version__
from streamdrift.cli import alerts, approvals, demo, reference, replay, status, topics, worker
from streamdrift.core.errors import StreamdriftError
from streamdrift.retrain import listener as retrain
from streamdrift.runtime import logs
from streamdrift.runtime.settings import load_settings

log = logging.getLogger("streamdrift")

COMMANDS = {
    "worker": worker,
    "topics": topics,
    "demo": demo,
    "reference": reference,
    "alerts": alerts,
    "retrain-listener": retrain,
    "status": status,
    "replay": replay,
    "approvals": approvals,  # and approve, reject: its add_parser adds the three
    "approve": approvals,
    "reject": approvals,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdrift", description="Streaming drift detection on Kafka.")
    parser.add_argument("--version", action="version", version=f"streamdrift {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML settings file (environment STREAMDRIFT_* wins over it)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in dict.fromkeys(COMMANDS.values()):  # a module of several commands adds them once
        command.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        logs.setup(settings.log_level)
        return COMMANDS[args.command].run(settings, args)
    except StreamdriftError as exc:
        print(f"streamdrift: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # a bug or an outage: one JSON log line with the traceback, not a bare traceback
        log.exception("stopped on an unexpected error", extra={"fields": {"command": args.command}})
        return 1
