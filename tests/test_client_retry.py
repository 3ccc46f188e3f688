"""The thin client's retries and deadlines, against a scripted gRPC server on a real port (each call answers with the
next scripted status), so every branch is exercised deterministically: what is retried, what is not, pushback, and
that retries never run past the call's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client import AsyncGuardrailClient, Decision, GuardrailClient, RetryPolicy

UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, "connection refused", ())
SHED = (grpc.StatusCode.RESOURCE_EXHAUSTED, "server at its limit of 2 concurrent checks; retry", ())
TOO_LONG = (grpc.StatusCode.RESOURCE_EXHAUSTED, "response: 40000 characters exceeds the limit of 32000", ())
FAST = RetryPolicy(max_attempts=5, initial_backoff_s=0.01, max_backoff_s=0.02)


class Scripted:
    def __init__(self, script: list[tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]] | None]) -> None:
        self.script = list(script)
        self.calls = 0
        self.seen_metadata: list[dict[str, str]] = []

    async def check(self, request: pb.CheckRequest, context: grpc.aio.ServicerContext) -> pb.CheckResponse:
        self.calls += 1
        self.seen_metadata.append({k: v for k, v in context.invocation_metadata() or ()})
        step = self.script.pop(0) if self.script else None
        if step is None:
            return pb.CheckResponse(request_id=request.request_id, decision=pb.ALLOW)
        code, details, trailing = step
        if trailing:
            context.set_trailing_metadata(trailing)
        await context.abort(code, details)
        raise AssertionError("unreachable")


@asynccontextmanager
async def scripted_server(script: list) -> AsyncIterator[tuple[Scripted, str]]:
    state = Scripted(script)
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        state.check, request_deserializer=pb.CheckRequest.FromString,
        response_serializer=pb.CheckResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("guardrail.v1.GuardrailService",
                                                                          {"Check": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield state, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_retries_are_off_by_default() -> None:
    async with scripted_server([UNAVAILABLE]) as (state, target):
        async with AsyncGuardrailClient(target) as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.check("x")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and state.calls == 1


async def test_unavailable_and_shed_are_retried_then_succeed() -> None:
    async with scripted_server([UNAVAILABLE, SHED, UNAVAILABLE]) as (state, target):
        async with AsyncGuardrailClient(target, retry=FAST, token="t" * 20) as client:
            reply = await client.check("x", request_id="r1")
    assert reply.decision is Decision.ALLOW and reply.request_id == "r1" and state.calls == 4
    assert all(m.get("authorization") == "Bearer " + "t" * 20 for m in state.seen_metadata)  # on every attempt


async def test_input_limit_and_negative_pushback_are_not_retried() -> None:
    async with scripted_server([TOO_LONG]) as (state, target):
        async with AsyncGuardrailClient(target, retry=FAST) as client:
            with pytest.raises(grpc.aio.AioRpcError):
                await client.check("x")
    assert state.calls == 1
    no_retry = (grpc.StatusCode.RESOURCE_EXHAUSTED, "draining", (("grpc-retry-pushback-ms", "-1"),))
    async with scripted_server([no_retry]) as (state, target):
        async with AsyncGuardrailClient(target, retry=FAST) as client:
            with pytest.raises(grpc.aio.AioRpcError):
                await client.check("x")
    assert state.calls == 1


async def test_pushback_sets_the_wait() -> None:
    later = (grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", (("grpc-retry-pushback-ms", "300"),))
    async with scripted_server([later]) as (state, target):
        async with AsyncGuardrailClient(target, retry=FAST) as client:
            started = time.perf_counter()
            await client.check("x")
            waited = time.perf_counter() - started
    assert state.calls == 2 and waited >= 0.3


async def test_retries_stay_inside_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.1)
    async with scripted_server([UNAVAILABLE] * 1000) as (state, target):
        async with AsyncGuardrailClient(target, retry=policy, timeout=0.6) as client:
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError):
                await client.check("x")
            elapsed = time.perf_counter() - started
    assert elapsed < 0.8 and 2 < state.calls < 1000


def test_sync_client_retries_too() -> None:
    async def main() -> tuple[int, Decision, int]:
        async with scripted_server([SHED, SHED, None, TOO_LONG]) as (state, target):
            def call() -> tuple[Decision, int]:
                with GuardrailClient(target, retry=FAST, timeout=5) as client:
                    first = client.check("x").decision
                    try:
                        client.check("y")
                    except grpc.RpcError as err:
                        return first, err.code().value[0]
                return first, 0
            first, code = await asyncio.to_thread(call)
            return state.calls, first, code

    calls, first, code = asyncio.run(main())
    assert first is Decision.ALLOW and code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and calls == 4


def test_retry_policy_and_tls_arguments_are_validated() -> None:
    from guardrail_client import TLS

    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        TLS(cert_file="client.pem")  # a certificate without its key
    with pytest.raises(ValueError):
        GuardrailClient("127.0.0.1:1", token="has space")
