"""The gRPC servicer: maps proto <-> domain and status codes; all logic lives in CheckEngine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from guardrail.v1 import guardrail_pb2 as pb
from guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_server import metrics
from guardrail_server.convert import case_from_request, result_to_pb
from guardrail_server.engine import CheckEngine
from guardrail_server.logs import get_logger
from guardrail_server.validation import InputError

log = get_logger("guardrail.servicer")

_CODES = {"INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT, "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED}


class GuardrailServicer(pb_grpc.GuardrailServiceServicer):
    def __init__(self, engine: CheckEngine) -> None:
        self.engine = engine
        self._slots = asyncio.Semaphore(engine.config.server.max_concurrent_checks)

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        """Seconds the checks may take: the caller's deadline less a margin so the reply still gets back in time."""
        remaining = context.time_remaining()
        if remaining is None:
            return self.engine.config.server.default_deadline_s
        return max(0.0, remaining - min(0.05, remaining * 0.1))

    async def _check(self, request: pb.CheckRequest, deadline_s: float) -> pb.CheckResponse:
        metrics.IN_FLIGHT.inc()
        try:
            result = await self.engine.check(case_from_request(request), list(request.invariants), deadline_s=deadline_s)
        finally:
            metrics.IN_FLIGHT.dec()
        return result_to_pb(result)

    async def Check(self, request: pb.CheckRequest, context: grpc.aio.ServicerContext) -> pb.CheckResponse:
        if self._slots.locked():
            metrics.REJECTED.labels("RESOURCE_EXHAUSTED").inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server at its limit of {self.engine.config.server.max_concurrent_checks} concurrent checks; retry",
            )
        async with self._slots:
            try:
                return await self._check(request, self._deadline(context))
            except InputError as err:
                metrics.REJECTED.labels(err.code).inc()
                await context.abort(_CODES[err.code], str(err))
        raise AssertionError("unreachable")

    async def CheckStream(
        self, request_iterator: AsyncIterator[pb.CheckRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CheckResponse]:
        """Requests are checked concurrently (bounded by the server's slots: the stream waits, it is not refused);
        replies are sent as they complete, matched by request_id. Bad input becomes a per-reply error_code."""
        replies: asyncio.Queue[pb.CheckResponse | None] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def one(request: pb.CheckRequest) -> None:
            try:
                reply = await self._check(request, self._deadline(context))
            except InputError as err:
                metrics.REJECTED.labels(err.code).inc()
                reply = pb.CheckResponse(
                    request_id=request.request_id, error_code=_CODES[err.code].value[0], error_message=str(err)
                )
            await replies.put(reply)

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            self._slots.release()

        async def pump() -> None:
            try:
                async for request in request_iterator:
                    await self._slots.acquire()
                    task = asyncio.create_task(one(request))
                    tasks.add(task)
                    task.add_done_callback(done)
                if tasks:
                    await asyncio.gather(*list(tasks), return_exceptions=True)
            finally:
                await replies.put(None)

        pump_task = asyncio.create_task(pump())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            pump_task.cancel()
            for task in list(tasks):
                task.cancel()

    async def ListInvariants(
        self, request: pb.ListInvariantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvariantsResponse:
        return pb.ListInvariantsResponse(
            invariants=[
                pb.InvariantInfo(
                    name=d["name"],
                    enabled=d["enabled"],
                    threshold=d["threshold"],
                    on_fail=d["on_fail"],
                    on_error=d["on_error"],
                    timeout_seconds=d["timeout_s"],
                    judge=d["judge"],
                )
                for d in self.engine.describe()
            ]
        )
