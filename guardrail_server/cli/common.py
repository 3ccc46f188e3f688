"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import sys

from guardrail_server.config import Config, ConfigError, load_config, parse_set_flags


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", action="append", default=None, metavar="FILE",
        help="YAML config file; repeat to layer files (later wins), e.g. base.yaml then thresholds.yaml "
        "(default: $GUARDRAIL_CONFIG)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set invariants.entailment.threshold=0.4 (repeatable)",
    )


def config_from_args(args: argparse.Namespace, extra: list[tuple[str, object]] | None = None) -> Config:
    """Loads file + env + --set (+ command-specific flags); exits 2 with the offending key on error."""
    try:
        files = args.config if args.config is not None else [os.environ.get("GUARDRAIL_CONFIG") or None]
        return load_config([f for f in files if f], overrides=[*parse_set_flags(args.overrides), *(extra or [])])
    except ConfigError as exc:
        print(f"guardrail: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
