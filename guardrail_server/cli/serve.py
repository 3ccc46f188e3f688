"""`guardrail serve`: run the gRPC sidecar until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys

from guardrail_server.cli.common import (
    EXIT_USAGE,
    add_config_flags,
    check_ports_free,
    config_from_args,
    describe_startup_error,
    describe_store,
)
from guardrail_server.config import Config
from guardrail_server.logs import configure_logging, get_logger
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.review.store import ReviewStore
from guardrail_server.review.web import ReviewWebServer
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
    if config.review.enabled:  # which store (and spool) this server writes: what `review`, `anchors`... must read
        get_logger("guardrail.review").info("review_store", url=describe_store(config.review.url),
                                            spool_dir=config.review.spool_dir)
    web = None
    try:
        from guardrail_models.runtime import resolve_device

        resolve_device(config.models.device)  # models.device: cuda without the CUDA provider fails here, at once
        check_ports_free(config)
        sampler = ReviewSampler(config.review) if config.review.enabled else None
        web = _start_review_web(config)
        asyncio.run(GuardrailServer(config, sampler=sampler).serve_forever())
    except Exception as exc:  # a start-up failure (port, model, store, judge family) is one line, never a traceback
        message = describe_startup_error(exc, config, config.review.url)
        if message is not None:
            print(f"guardrail serve: {message}", file=sys.stderr)
            return EXIT_USAGE
        print(f"guardrail serve: could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if web is not None:
            web.stop()
    return 0


def _start_review_web(config: Config) -> ReviewWebServer | None:
    """The review page beside the sidecar when `review.web_port` is set (0 = off)."""
    if not (config.review.enabled and config.review.web_port):
        return None
    web = ReviewWebServer.from_config(ReviewStore(config.review.url).open(), config.review, config.server.host)
    web.start()
    return web
