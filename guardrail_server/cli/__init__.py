"""`guardrail` command line: serve, check, eval, review, anchors, calibrate, models."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from guardrail_server.logs import configure_logging

COMMAND_MODULES = ("serve", "check", "show_config", "models", "eval", "metamorph", "review")  # each registers its own subcommand(s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardrail", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"guardrail_server.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("warning")  # stdout stays clean for command output; `serve` reconfigures from its config
    return int(args.handler(args) or 0)

