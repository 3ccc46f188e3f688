"""`guardrail models`: list the model zoo and import Hugging Face NLI checkpoints."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list or import NLI models")
    msub = p.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="models this installation can load")
    ls.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace) -> int:
    print("(no models yet)")
    return 0
