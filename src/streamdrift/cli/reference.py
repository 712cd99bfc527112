"""``streamdrift reference build|show``: a model's reference profile from training data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from streamdrift.core import reference
from streamdrift.core.errors import ConfigError
from streamdrift.runtime.settings import Settings


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doc = "Build or show a model's reference profile."
    p = subparsers.add_parser("reference", help=doc, description=doc, parents=[common])
    p.add_argument("action", choices=["build", "show"])
    p.add_argument("profile", nargs="?", type=Path, help="with show: the profile to print")
    p.add_argument("--model-id", help="with build: the model the profile is for")
    p.add_argument("--input", type=Path, help="with build: training data, JSONL (prediction-shaped) or CSV")
    p.add_argument("--out", type=Path, help="with build: where to write the profile")
    p.add_argument("--sample-size", type=int, default=1000, help="rows kept in the profile's sample")


def run(settings: Settings, args: argparse.Namespace) -> int:
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
    profile = reference.build_profile(
        args.model_id, reference.read_rows(args.input), settings.monitor, args.sample_size
    )
    args.out.write_bytes(orjson.dumps(profile, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    print(f"wrote {args.out}: {profile['rows']} rows, {len(profile['features'])} features", file=sys.stderr)
    print(reference.show(profile, settings.monitor))
    return 0
