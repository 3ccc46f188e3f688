"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import sys

from guardrail_server.config import Config, ConfigError, load_config, parse_set_flags


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=os.environ.get("GUARDRAIL_CONFIG"), help="YAML config file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set invariants.entailment.threshold=0.4 (repeatable)",
    )


def config_from_args(args: argparse.Namespace, extra: list[tuple[str, object]] | None = None) -> Config:
    """Loads file + env + --set (+ command-specific flags); exits 2 with the offending key on error."""
    try:
        return load_config(args.config, overrides=[*parse_set_flags(args.overrides), *(extra or [])])
    except ConfigError as exc:
        print(f"guardrail: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
