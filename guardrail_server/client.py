"""Clients for applications: `GuardrailClient` (sync) and `AsyncGuardrailClient` (asyncio), same surface."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from guardrail.v1 import guardrail_pb2 as pb
from guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_server.convert import request_from_case
from invariants.types import Case, Passage

PassageLike = Passage | Mapping[str, str] | str


def _passages(context: Sequence[PassageLike]) -> tuple[Passage, ...]:
    out = []
    for i, p in enumerate(context, start=1):
        if isinstance(p, Passage):
            out.append(p)
        elif isinstance(p, str):
            out.append(Passage(id=str(i), text=p))
        else:
            out.append(Passage(id=p.get("id", ""), text=p.get("text", ""), title=p.get("title", ""), url=p.get("url", "")))
    return tuple(out)


def build_request(
    response: str,
    *,
    question: str = "",
    context: Sequence[PassageLike] = (),
    samples: Sequence[str] = (),
    invariants: Iterable[str] = (),
    request_id: str = "",
    app: str = "",
    metadata: Mapping[str, str] | None = None,
) -> pb.CheckRequest:
    case = Case(
        response=response,
        question=question,
        context=_passages(context),
        samples=tuple(samples),
        request_id=request_id,
        app=app,
        metadata=dict(metadata or {}),
    )
    return request_from_case(case, invariants)


class GuardrailClient:
    """Blocking client. `timeout` is the per-call gRPC deadline in seconds."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float = 10.0, channel: grpc.Channel | None = None):
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = pb_grpc.GuardrailServiceStub(self._channel)
        self.timeout = timeout

    def check(self, response: str, **kwargs: Any) -> pb.CheckResponse:
        return self._stub.Check(build_request(response, **kwargs), timeout=self.timeout)

    def check_request(self, request: pb.CheckRequest) -> pb.CheckResponse:
        return self._stub.Check(request, timeout=self.timeout)

    def check_stream(self, requests: Iterable[pb.CheckRequest]) -> Iterable[pb.CheckResponse]:
        return self._stub.CheckStream(iter(requests))

    def list_invariants(self) -> pb.ListInvariantsResponse:
        return self._stub.ListInvariants(pb.ListInvariantsRequest(), timeout=self.timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GuardrailClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGuardrailClient:
    """asyncio client; `check_stream` multiplexes many requests over one stream (replies by request_id)."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float = 10.0) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = pb_grpc.GuardrailServiceStub(self._channel)
        self.timeout = timeout

    async def check(self, response: str, **kwargs: Any) -> pb.CheckResponse:
        return await self._stub.Check(build_request(response, **kwargs), timeout=self.timeout)

    async def check_request(self, request: pb.CheckRequest) -> pb.CheckResponse:
        return await self._stub.Check(request, timeout=self.timeout)

    async def check_stream(
        self, requests: AsyncIterable[pb.CheckRequest] | Iterable[pb.CheckRequest]
    ) -> AsyncIterator[pb.CheckResponse]:
        call = self._stub.CheckStream(requests)
        async for reply in call:
            yield reply

    async def list_invariants(self) -> pb.ListInvariantsResponse:
        return await self._stub.ListInvariants(pb.ListInvariantsRequest(), timeout=self.timeout)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._channel.channel_ready(), timeout)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncGuardrailClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def wait_until_serving(target: str, timeout_s: float = 60.0, service: str = "") -> None:
    """Polls gRPC health until the server reports SERVING (it does so only once its invariants are warm)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{target} did not report SERVING within {timeout_s:.0f}s")
