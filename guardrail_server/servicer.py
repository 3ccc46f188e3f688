"""The gRPC servicer: maps proto <-> domain and status codes; all logic lives in CheckEngine.

Admission is the engine's: a unary call that cannot get a check worker in time is refused with RESOURCE_EXHAUSTED;
a CheckStream request that cannot is answered with `error_code` RESOURCE_EXHAUSTED and the stream goes on. A stream
keeps at most `workers.count + admission.max_queue` requests in flight and stops reading while that many replies are
unsent, so a client that never reads cannot make the server buffer without bound. Bytes that are not a valid
CheckRequest (e.g. invalid UTF-8 in a string field) are INVALID_ARGUMENT with one log line, never UNKNOWN with a
traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_server import metrics
from guardrail_server.admission import Shed
from guardrail_server.convert import case_from_request, generation_event_to_pb, result_to_pb
from guardrail_server.engine import CheckEngine
from guardrail_server.generation import BadChunk, Chunk, Close, Delta, GenerationService, StreamEnded
from guardrail_server.logs import get_logger
from guardrail_server.validation import InputError

log = get_logger("guardrail.servicer")

_CODES = {"INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT, "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What the deserializer hands the handler for bytes that are not a CheckRequest."""

    reason: str


def decode_check_request(data: bytes) -> pb.CheckRequest | Undecodable:
    try:
        return pb.CheckRequest.FromString(data)
    except (DecodeError, ValueError, UnicodeDecodeError) as exc:
        return Undecodable(type(exc).__name__)


def decode_generation_chunk(data: bytes) -> pb.GenerationChunk | Undecodable:
    try:
        return pb.GenerationChunk.FromString(data)
    except (DecodeError, ValueError, UnicodeDecodeError) as exc:
        return Undecodable(type(exc).__name__)


class GuardrailServicer(pb_grpc.GuardrailServiceServicer):
    def __init__(self, engine: CheckEngine) -> None:
        self.engine = engine
        self.generation = GenerationService(engine)

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        """Seconds the checks may take: the caller's deadline less a margin so the reply still gets back in time."""
        remaining = context.time_remaining()
        if remaining is None:
            return self.engine.config.server.default_deadline_s
        return max(0.0, remaining - min(0.25, remaining * 0.1))

    async def _check(self, request: pb.CheckRequest, deadline_s: float, kind: str) -> pb.CheckResponse:
        metrics.IN_FLIGHT.inc()
        try:
            result = await self.engine.check(case_from_request(request), list(request.invariants),
                                             deadline_s=deadline_s, kind=kind)  # type: ignore[arg-type]
        finally:
            metrics.IN_FLIGHT.dec()
        return result_to_pb(result)

    async def Check(self, request: pb.CheckRequest | Undecodable, context: grpc.aio.ServicerContext
                    ) -> pb.CheckResponse:
        if isinstance(request, Undecodable):
            metrics.REJECTED.labels("INVALID_ARGUMENT").inc()
            log.info("undecodable_request", reason=request.reason)
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"request: not a valid guardrail.v1.CheckRequest ({request.reason}; strings must be UTF-8)")
        try:
            return await self._check(request, self._deadline(context), "unary")
        except InputError as err:
            metrics.REJECTED.labels(err.code).inc()
            code, details = _CODES[err.code], str(err)
        except Shed as shed:
            metrics.REJECTED.labels("RESOURCE_EXHAUSTED").inc()
            code, details = grpc.StatusCode.RESOURCE_EXHAUSTED, str(shed)
        await _abort(context, code, details)  # outside the `except`: see _abort

    async def CheckStream(
        self, request_iterator: AsyncIterator[pb.CheckRequest | Undecodable], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CheckResponse]:
        """Requests are checked concurrently, up to the stream's window; replies are sent as they complete,
        matched by request_id. Bad input and shed requests become per-reply error codes."""
        window = self.engine.config.workers.count + self.engine.config.admission.max_queue
        slots = asyncio.Semaphore(window)  # requests in flight or replied-but-unsent
        replies: asyncio.Queue[pb.CheckResponse | None] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def one(request: pb.CheckRequest | Undecodable) -> None:
            if isinstance(request, Undecodable):
                metrics.REJECTED.labels("INVALID_ARGUMENT").inc()
                await replies.put(_error_reply("", grpc.StatusCode.INVALID_ARGUMENT,
                                               f"request: not a valid guardrail.v1.CheckRequest ({request.reason})"))
                return
            try:
                reply = await self._check(request, self._deadline(context), "stream")
            except InputError as err:
                metrics.REJECTED.labels(err.code).inc()
                reply = _error_reply(request.request_id, _CODES[err.code], str(err))
            except Shed as shed:
                metrics.REJECTED.labels("RESOURCE_EXHAUSTED").inc()
                reply = _error_reply(request.request_id, grpc.StatusCode.RESOURCE_EXHAUSTED, str(shed))
            except Exception as exc:  # noqa: BLE001 - a bug must cost this request's reply, not the stream's window
                log.error("stream_request_failed", error=type(exc).__name__)
                reply = _error_reply(request.request_id, grpc.StatusCode.INTERNAL,
                                     f"internal error ({type(exc).__name__})")
            await replies.put(reply)

        async def pump() -> None:
            try:
                async for request in request_iterator:
                    await slots.acquire()  # released when its reply has been written to the transport
                    task = asyncio.create_task(one(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.gather(*list(tasks), return_exceptions=True)
            except Exception as exc:  # noqa: BLE001 - the call ended under us (deadline, cancel, server stop)
                # gRPC's reader raises once the call is over; the stream ends here rather than leave an exception
                # nobody retrieves (asyncio would log it with a traceback when the task is collected)
                log.debug("stream_read_ended", error=type(exc).__name__)
            finally:
                await replies.put(None)

        pump_task = asyncio.create_task(pump())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
                slots.release()
        finally:
            pump_task.cancel()
            for task in list(tasks):
                task.cancel()

    async def CheckGeneration(
        self, request_iterator: AsyncIterator[pb.GenerationChunk | Undecodable], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerationVerdict]:
        """Maps chunks to `guardrail_server.generation` events and its events to replies; the stream is its logic."""
        chunks = aiter(request_iterator)
        try:
            first = await asyncio.wait_for(anext(chunks, None), self.engine.config.streaming.idle_timeout_s)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                "start: no first GenerationChunk within streaming.idle_timeout_s")
        if isinstance(first, Undecodable) or first is None or first.WhichOneof("chunk") != "start":
            metrics.REJECTED.labels("INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "start: the first GenerationChunk must carry `start` (a valid CheckRequest)")
        remaining = context.time_remaining()
        try:
            stream = self.generation.start(case_from_request(first.start), list(first.start.invariants),
                                           deadline_s=None if remaining is None else max(0.0, remaining - 0.05))
        except InputError as err:
            metrics.REJECTED.labels(err.code).inc()
            await context.abort(_CODES[err.code], str(err))
        except Shed as shed:
            metrics.REJECTED.labels("RESOURCE_EXHAUSTED").inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(shed))

        async def domain() -> AsyncIterator[Chunk]:
            async for chunk in chunks:
                kind = None if isinstance(chunk, Undecodable) else chunk.WhichOneof("chunk")
                if kind == "delta":
                    yield Delta(chunk.delta)
                elif kind == "close":
                    yield Close(tuple(chunk.close.samples))
                elif kind == "start":
                    raise BadChunk("start: only the first GenerationChunk may carry start")
                elif isinstance(chunk, Undecodable):
                    raise BadChunk(f"chunk: not a valid guardrail.v1.GenerationChunk ({chunk.reason}; strings must "
                                   "be UTF-8)")

        try:
            async for event in stream.events(domain()):
                yield generation_event_to_pb(event)
        except InputError as err:
            metrics.REJECTED.labels(err.code).inc()
            await context.abort(_CODES[err.code], str(err))
        except BadChunk as err:
            metrics.REJECTED.labels("INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except Shed as err:  # a live check found no worker: shutting down, or not before the stream's deadline
            code = grpc.StatusCode.UNAVAILABLE if err.reason == "shutting_down" else grpc.StatusCode.DEADLINE_EXCEEDED
            await context.abort(code, str(err))
        except StreamEnded as err:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(err))

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
                    on_partial=d["on_partial"],
                    timeout_seconds=d["timeout_s"],
                    judge=d["judge"],
                )
                for d in self.engine.describe()
            ]
        )


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    """Ends the call with `code`. Never from inside an `except` block: the error gRPC raises when the status cannot be
    sent would chain the caller's input error (its message quoting a passage id) into gRPC's logged traceback. And not
    after the caller's deadline: the call is over there, sending a status fails and gRPC logs an ExecuteBatchError
    traceback; the handler ends as a cancelled one (gRPC logs that at debug)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise asyncio.CancelledError
    await context.abort(code, details)
    raise AssertionError("unreachable: abort raises")


def _error_reply(request_id: str, code: grpc.StatusCode, message: str) -> pb.CheckResponse:
    return pb.CheckResponse(request_id=request_id, error_code=code.value[0], error_message=message)


def add_to_server(servicer: GuardrailServicer, server: Any) -> None:
    """The generated registration, with a deserializer that turns undecodable bytes into `Undecodable` instead of an
    exception (which grpc would report as UNKNOWN, logging a traceback per request)."""
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            servicer.Check, request_deserializer=decode_check_request,
            response_serializer=pb.CheckResponse.SerializeToString),
        "CheckStream": grpc.stream_stream_rpc_method_handler(
            servicer.CheckStream, request_deserializer=decode_check_request,
            response_serializer=pb.CheckResponse.SerializeToString),
        "CheckGeneration": grpc.stream_stream_rpc_method_handler(
            servicer.CheckGeneration, request_deserializer=decode_generation_chunk,
            response_serializer=pb.GenerationVerdict.SerializeToString),
        "ListInvariants": grpc.unary_unary_rpc_method_handler(
            servicer.ListInvariants, request_deserializer=pb.ListInvariantsRequest.FromString,
            response_serializer=pb.ListInvariantsResponse.SerializeToString),
    }
    name = pb.DESCRIPTOR.services_by_name["GuardrailService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
