"""`guardrail config`: print the effective, validated configuration (file + env + flags) as YAML."""

from __future__ import annotations

import argparse

import yaml

from guardrail_server.cli.common import add_config_flags, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the effective configuration (validates it)")
    add_config_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    data = config.model_dump(mode="json")
    for name in data["invariants"]:
        data["invariants"][name]["threshold"] = config.threshold(name)
        data["invariants"][name]["options"] = config.options(name).model_dump(mode="json")
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0
