"""Wires the gRPC server: servicer, health, reflection, TLS/mTLS, authentication, metrics endpoint, the optional
plaintext health-only port, review sampler, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server import metrics
from guardrail_server.auth import AuthInterceptor
from guardrail_server.config import Config, ServerConfig
from guardrail_server.engine import CheckEngine
from guardrail_server.logs import get_logger
from guardrail_server.loop_watch import LoopWatch
from guardrail_server.review.calibration import set_agreement_gauge
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.servicer import GuardrailServicer, add_to_server
from guardrail_server.tls import server_credentials

log = get_logger("guardrail.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GuardrailService"].full_name


_LOOPBACK = ("127.", "::1", "localhost", "[::1]")
STOP_RESERVE_S = 1.5  # of the grace, kept after the review writer: check workers, the metrics endpoint (its
# shutdown polls every 0.5 s) and the process exit


@dataclass
class Ports:
    grpc: int
    metrics: int | None
    health: int | None = None


def start_metrics_endpoint(port: int | None, host: str = "127.0.0.1") -> tuple[object | None, int | None]:
    """Prometheus endpoint on `host` (the gRPC bind address unless `server.metrics_host` says otherwise: metrics
    expose traffic volumes and app names, so they are not published wider than the service itself by default)."""
    if port is None:
        return None, None
    from prometheus_client import start_http_server

    httpd, _thread = start_http_server(port, addr=host)
    return httpd, httpd.server_port


def _is_loopback(host: str) -> bool:
    return host.startswith(_LOOPBACK)


def freeze_startup_heap() -> None:
    """Moves what start-up allocated (modules, config, stubs, metrics: ~100k objects) out of the collector's sight.
    Those objects live as long as the process, yet every full collection walked them — on the event-loop thread, where
    most allocations happen — for 80-125 ms on 2 busy cores: the `event_loop_stall`s bench.fuzz found. Frozen, a
    collection walks only what requests allocated. Only for the serving process (`serve_forever`), not libraries."""
    gc.collect()
    gc.freeze()


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
        self._health_server: grpc.aio.Server | None = None
        self._metrics_httpd: object | None = None
        self.ports = Ports(grpc=0, metrics=None)
        self._stopped = asyncio.Event()
        self._loop_watch: LoopWatch | None = None

    async def start(self) -> Ports:
        s = self.config.server
        opts = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        interceptors = [AuthInterceptor(s.auth)] if s.auth.enabled else []
        server = grpc.aio.server(options=opts, interceptors=interceptors)
        self.servicer = GuardrailServicer(self.engine)
        add_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if s.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
                server,
            )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{s.host}:{s.port}"
        port = server.add_secure_port(address, server_credentials(s.tls)) if s.tls else server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"could not bind {address}")
        health_port = None
        if s.health_port is not None:
            self._health_server, health_port = self._health_only_server(s)
        await server.start()
        self._server = server
        metrics.publish_config(self.config)  # build info, thresholds, every closed-set series at 0
        self._loop_watch = LoopWatch()
        self._loop_watch.start()
        if self._health_server is not None:
            await self._health_server.start()
        self._metrics_httpd, metrics_port = start_metrics_endpoint(s.metrics_port, s.metrics_host or s.host)
        self.ports = Ports(grpc=port, metrics=metrics_port, health=health_port)
        if s.auth.enabled and s.tls is None and not _is_loopback(s.host):
            log.warning("auth_without_tls", host=s.host,
                        hint="credentials cross the network in clear text; configure server.tls")
        for name, policy in self.config.enabled_invariants().items():
            if policy.calibration is not None and not policy.calibration.validated:
                log.warning("unvalidated_threshold", invariant=name, threshold=self.config.threshold(name),
                            run=policy.calibration.run, note=policy.calibration.note,
                            hint="written by `guardrail calibrate --allow-unvalidated-threshold`; label more cases "
                                 "and calibrate again")
        log.info("server_started", grpc_port=port, metrics_port=metrics_port, health_port=health_port,
                 tls=s.tls is not None, mtls=bool(s.tls and s.tls.mutual), auth=s.auth.mode())
        return self.ports

    def _health_only_server(self, s: ServerConfig) -> tuple[grpc.aio.Server, int]:
        """A second, plaintext server with nothing but gRPC health (the same HealthServicer, so the same statuses):
        Kubernetes' built-in gRPC probes can neither do TLS nor send a token, and health reveals only SERVING."""
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, health_server)
        address = f"{s.health_host or s.host}:{s.health_port}"
        port = health_server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"could not bind {address} (server.health_port)")
        return health_server, port

    async def warm(self) -> None:
        """Loads invariants (and starts the sampler), then reports SERVING."""
        if self.sampler is not None:
            await self.sampler.start()
            await asyncio.to_thread(set_agreement_gauge, self.sampler.store)
        await self.engine.load()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving")

    async def stop(self, grace: float | None = None, *, flush_s: float | None = None) -> None:
        """Stops taking calls, drains in-flight ones within the grace period, then flushes the sampler for `flush_s`
        seconds — by default what is left of the grace less STOP_RESERVE_S, so the whole stop fits in the grace."""
        if self._server is None:
            return
        grace = self.config.server.grace_period_s if grace is None else grace
        deadline = time.monotonic() + grace
        await self.health.enter_graceful_shutdown()
        self.engine.admission.close()  # queued calls are shed now: they could not finish inside the grace anyway
        log.info("draining", grace_s=grace)
        # in-flight calls get the grace less a reserve for stopping the workers and flushing, so the whole stop
        # (and the process exit Kubernetes waits for) fits in the grace period
        await self._server.stop(max(0.0, grace - min(2.0, grace * 0.2)))
        if self._health_server is not None:
            await self._health_server.stop(0)
            self._health_server = None
        if self.sampler is not None:
            # what the review writer cannot redact and store in time stays in the intake journal for the next start;
            # its own 30 s default would let a slow redaction (hostile text) overrun the grace period
            await self.sampler.stop(flush_s if flush_s is not None else
                                    max(0.1, deadline - time.monotonic() - STOP_RESERVE_S))
        await self.engine.close(max(0.1, deadline - time.monotonic()))
        if self._metrics_httpd is not None:
            # shutdown() waits for serve_forever's 0.5 s poll: off the loop, or health stalls while we stop
            await asyncio.to_thread(self._metrics_httpd.shutdown)  # type: ignore[attr-defined]
            self._metrics_httpd.server_close()  # type: ignore[attr-defined]
        self._server = None
        if self._loop_watch is not None:
            self._loop_watch.stop()
        self._stopped.set()
        log.info("stopped")

    async def _warm_and_freeze(self) -> None:
        await self.warm()
        freeze_startup_heap()

    async def serve_forever(self) -> None:
        """start + warm, then wait for SIGTERM/SIGINT and shut down gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        warm_task = asyncio.create_task(self._warm_and_freeze())
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
