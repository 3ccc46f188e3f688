"""`guardrail serve`: run the gRPC sidecar until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio

from guardrail_server.cli.common import add_config_flags, config_from_args
from guardrail_server.logs import configure_logging
from guardrail_server.server import GuardrailServer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the gRPC server")
    add_config_flags(p)
    p.add_argument("--host", help="bind address (server.host)")
    p.add_argument("--port", type=int, help="gRPC port (server.port; 0 = any free port)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (server.metrics_port)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    extra = [(k, v) for k, v in (("server.host", args.host), ("server.port", args.port),
                                 ("server.metrics_port", args.metrics_port)) if v is not None]
    config = config_from_args(args, extra)
    configure_logging(config.logging.level, config.logging.format)
    server = GuardrailServer(config)
    asyncio.run(server.serve_forever())
    return 0
