"""`guardrail` command line: serve, check, config, models, eval, metamorph, review, anchors, calibrate, recalibrate,
synth, adapt (`guardrail COMMAND --help` for each).

exit codes (every command): 0 done, 2 usage, input or start-up problem (one line on stderr naming the config key,
file, port or URL), 130 interrupted, 1 a crash. `guardrail check` adds 1 = FLAG and 3 = BLOCK; `guardrail eval` and
`guardrail metamorph` add 1 = a --fail-if gate tripped; `guardrail calibrate --strict` adds 1 = an invariant below
--target; `guardrail adapt` adds 1 = the adapted judge is worse on the anchors (no overlay written).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from guardrail_server.logs import configure_logging

COMMAND_MODULES = ("serve", "check", "show_config", "models", "eval", "metamorph", "review", "synth", "adapt")  # each registers its own subcommand(s)
DISTRIBUTION = "guardrail-sidecar"


def package_version() -> str:
    """The installed distribution's version (what `pip show guardrail-sidecar` says)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardrail", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"guardrail_server.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from guardrail_server.cli.common import describe_startup_error

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # `eval --resume` tells flags given on this command line from defaults
    configure_logging("warning")  # stdout stays clean for command output; `serve` reconfigures from its config
    logging.captureWarnings(True)  # library warnings (spaCy, onnxruntime bindings) become log lines in the format
    try:
        return int(args.handler(args) or 0)
    except Exception as exc:
        message = describe_startup_error(exc, None, _store_url(args))
        if message is None:
            raise
        print(f"guardrail: {message}", file=sys.stderr)
        return 2


def _store_url(args: argparse.Namespace) -> str | None:
    """The review store URL a command used, for naming it (masked) when it cannot be opened."""
    explicit = getattr(args, "review_url", None) or getattr(args, "url", None)
    if explicit:
        return str(explicit)
    try:
        from guardrail_server.cli.common import config_from_args

        return config_from_args(args).review.url
    except (SystemExit, AttributeError):
        return None
