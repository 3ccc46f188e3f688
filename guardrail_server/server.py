"""Wires the gRPC server: servicer, health, reflection, metrics endpoint, review sampler, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from guardrail.v1 import guardrail_pb2 as pb
from guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_server.config import Config
from guardrail_server.engine import CheckEngine
from guardrail_server.logs import get_logger
from guardrail_server.review.calibration import set_agreement_gauge
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.servicer import GuardrailServicer

log = get_logger("guardrail.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GuardrailService"].full_name


@dataclass
class Ports:
    grpc: int
    metrics: int | None


def start_metrics_endpoint(port: int | None) -> tuple[object | None, int | None]:
    if port is None:
        return None, None
    from prometheus_client import start_http_server

    httpd, _thread = start_http_server(port, addr="0.0.0.0")
    return httpd, httpd.server_port


class GuardrailServer:
    """One process's server. `start()` returns once the port is bound; health turns SERVING only after every
    configured invariant is loaded and warm."""

    def __init__(
        self, config: Config, *, engine: CheckEngine | None = None, sampler: ReviewSampler | None = None
    ) -> None:
        self.config = config
        self.sampler = sampler
        self.engine = engine or CheckEngine(config, sampler=sampler)
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._metrics_httpd: object | None = None
        self.ports = Ports(grpc=0, metrics=None)
        self._stopped = asyncio.Event()

    async def start(self) -> Ports:
        s = self.config.server
        opts = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(options=opts)
        pb_grpc.add_GuardrailServiceServicer_to_server(GuardrailServicer(self.engine), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if s.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
                server,
            )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        port = server.add_insecure_port(f"{s.host}:{s.port}")
        if port == 0:
            raise OSError(f"could not bind {s.host}:{s.port}")
        await server.start()
        self._server = server
        self._metrics_httpd, metrics_port = start_metrics_endpoint(s.metrics_port)
        self.ports = Ports(grpc=port, metrics=metrics_port)
        log.info("server_started", grpc_port=port, metrics_port=metrics_port)
        return self.ports

    async def warm(self) -> None:
        """Loads invariants (and starts the sampler), then reports SERVING."""
        if self.sampler is not None:
            await self.sampler.start()
            await asyncio.to_thread(set_agreement_gauge, self.sampler.store)
        await self.engine.load()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving")

    async def stop(self, grace: float | None = None) -> None:
        """Stops taking calls, drains in-flight ones within the grace period, then flushes the sampler."""
        if self._server is None:
            return
        grace = self.config.server.grace_period_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        log.info("draining", grace_s=grace)
        await self._server.stop(grace)
        if self.sampler is not None:
            await self.sampler.stop()
        await self.engine.close()
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()  # type: ignore[attr-defined]
            self._metrics_httpd.server_close()  # type: ignore[attr-defined]
        self._server = None
        self._stopped.set()
        log.info("stopped")

    async def serve_forever(self) -> None:
        """start + warm, then wait for SIGTERM/SIGINT and shut down gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        warm_task = asyncio.create_task(self.warm())
        stop_task = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({warm_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if warm_task.done() and warm_task.exception() is not None:
            stop_task.cancel()
            await self.stop(0)
            raise warm_task.exception()  # type: ignore[misc]
        await stop_task
        log.info("signal_received")
        if not warm_task.done():
            warm_task.cancel()
        await self.stop()
