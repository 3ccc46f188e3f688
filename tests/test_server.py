"""The service contract through a real gRPC server on an ephemeral port."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.client import AsyncGuardrailClient, CheckResult, GuardrailClient, build_request
from guardrail_server.server import GuardrailServer
from tests.conftest import make_config, running_server

KEYWORD = {"test_keyword": {"options": {"word": "forbidden"}, "on_fail": "block"}}


async def test_check_round_trip_with_findings_and_spans() -> None:
    async with running_server(make_config(KEYWORD)) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            text = "This is forbidden and so is this: forbidden."
            reply = await client.check(text, request_id="r-1", app="demo")
    assert reply.request_id == "r-1"
    assert reply.decision == pb.BLOCK
    (result,) = reply.results
    assert result.invariant == "test_keyword" and result.outcome == pb.FAIL
    assert [text[f.start : f.end] for f in result.findings] == ["forbidden", "forbidden"]
    assert reply.duration_s > 0


async def test_pass_is_allow_and_request_id_generated() -> None:
    async with running_server(make_config(KEYWORD)) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            reply = await client.check("All fine here.")
    assert reply.decision == pb.ALLOW
    assert reply.results[0].outcome == pb.PASS
    assert len(reply.request_id) == 32


def test_sync_client_and_list_invariants() -> None:
    async def main() -> None:
        cfg = make_config({**KEYWORD, "test_sleepy": {"threshold": 0.7, "on_error": "fail_closed", "timeout_s": 3}})
        async with running_server(cfg) as (_, target):

            def call() -> tuple[pb.ListInvariantsResponse, pb.CheckResponse]:
                with GuardrailClient(target) as client:
                    return client.list_invariants(), client.check("ok", invariants=["test_keyword"])

            listed, reply = await asyncio.to_thread(call)
            infos = {i.name: i for i in listed.invariants}
            assert infos["test_sleepy"].threshold == pytest.approx(0.7)
            assert infos["test_sleepy"].on_error == "fail_closed"
            assert infos["test_sleepy"].timeout_seconds == 3
            assert infos["test_keyword"].on_fail == "block"
            assert [r.invariant for r in reply.results] == ["test_keyword"]

    asyncio.run(main())


async def test_health_serving_only_when_warm() -> None:
    cfg = make_config({"test_sleepy": {"options": {"load_seconds": 1.0}}})
    server = GuardrailServer(cfg)
    ports = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            warming = asyncio.create_task(server.warm())
            await asyncio.sleep(0.2)
            status = await stub.Check(health_pb2.HealthCheckRequest(service="guardrail.v1.GuardrailService"))
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            await warming
            status = await stub.Check(health_pb2.HealthCheckRequest(service="guardrail.v1.GuardrailService"))
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            overall = await stub.Check(health_pb2.HealthCheckRequest(service=""))
            assert overall.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


async def test_reflection_lists_the_service() -> None:
    async with running_server(make_config(KEYWORD)) as (_, target):

        def services() -> list[str]:
            with grpc.insecure_channel(target) as channel:
                return list(ProtoReflectionDescriptorDatabase(channel).get_services())

        names = await asyncio.to_thread(services)
    assert "guardrail.v1.GuardrailService" in names
    assert "grpc.health.v1.Health" in names


BAD_INPUTS = [
    ({"response": ""}, grpc.StatusCode.INVALID_ARGUMENT, "response"),
    ({"response": "   "}, grpc.StatusCode.INVALID_ARGUMENT, "response"),
    ({"response": "x" * 101}, grpc.StatusCode.RESOURCE_EXHAUSTED, "response"),
    ({"response": "ok", "question": "q" * 51}, grpc.StatusCode.RESOURCE_EXHAUSTED, "question"),
    ({"response": "ok", "context": ["p"] * 4}, grpc.StatusCode.RESOURCE_EXHAUSTED, "context"),
    ({"response": "ok", "context": ["p", "y" * 61]}, grpc.StatusCode.RESOURCE_EXHAUSTED, "context[1].text"),
    ({"response": "ok", "context": ["a" * 60, "b" * 60]}, grpc.StatusCode.RESOURCE_EXHAUSTED, "context"),
    (
        {"response": "ok", "context": [{"id": "d", "text": "a"}, {"id": "d", "text": "b"}]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "context[1].id",
    ),
    ({"response": "ok", "samples": ["s"] * 3}, grpc.StatusCode.RESOURCE_EXHAUSTED, "samples"),
    ({"response": "ok", "samples": ["s", "t" * 101]}, grpc.StatusCode.RESOURCE_EXHAUSTED, "samples[1]"),
    ({"response": "ok", "invariants": ["nope"]}, grpc.StatusCode.INVALID_ARGUMENT, "invariants[0]"),
    ({"response": "ok", "invariants": ["test_keyword", "test_sleepy"]}, grpc.StatusCode.INVALID_ARGUMENT, "invariants[1]"),
]


async def test_bad_inputs_get_status_naming_the_field_and_nothing_breaks() -> None:
    limits = {
        "limits.max_response_chars": 100,
        "limits.max_question_chars": 50,
        "limits.max_passages": 3,
        "limits.max_passage_chars": 60,
        "limits.max_context_chars": 100,
        "limits.max_samples": 2,
        "limits.max_sample_chars": 100,
    }
    async with running_server(make_config(KEYWORD, limits)) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            for kwargs, code, field in BAD_INPUTS:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await client.check(**kwargs)
                assert info.value.code() == code, kwargs
                assert info.value.details().startswith(f"{field}:"), (field, info.value.details())
            reply = await client.check("still forbidden", context=["p"])
            assert reply.decision == pb.BLOCK


async def test_oversize_message_is_refused_by_transport() -> None:
    async with running_server(make_config(KEYWORD, {"server.max_message_bytes": 2048})) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.check("x" * 5000)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(("on_error", "decision"), [("fail_open", pb.ALLOW), ("fail_closed", pb.BLOCK)])
async def test_broken_invariant_is_error_with_configured_decision(on_error: str, decision: int) -> None:
    cfg = make_config({**KEYWORD, "test_broken": {"on_error": on_error}})
    async with running_server(cfg) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            reply = await client.check("harmless text")
    by_name = {r.invariant: r for r in reply.results}
    assert by_name["test_broken"].outcome == pb.ERROR
    assert "model exploded" in by_name["test_broken"].error
    assert by_name["test_keyword"].outcome == pb.PASS
    assert reply.decision == decision


async def test_invariant_timeout_is_error_and_deadline_honoured() -> None:
    cfg = make_config({"test_sleepy": {"timeout_s": 30, "on_error": "fail_closed"}})
    async with running_server(cfg) as (_, target):
        async with AsyncGuardrailClient(target, timeout=1.0) as client:
            started = time.perf_counter()
            reply = await client.check("x", metadata={"sleep": "20"})
            elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert reply.results[0].outcome == pb.ERROR
    assert reply.results[0].findings[0].kind == "timeout"
    assert reply.decision == pb.BLOCK


async def test_excess_concurrency_is_shed_with_resource_exhausted() -> None:
    """2 workers, 1 waiting place: 2 run, 1 waits its turn, 3 are refused at once (nothing times out)."""
    cfg = make_config({"test_sleepy": {"options": {"seconds": 0.5}}},
                      {"workers.count": 2, "admission.max_queue": 1, "admission.max_queue_wait_s": 2.0})
    async with running_server(cfg) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            results = await asyncio.gather(*(client.check("x") for _ in range(6)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    served = [r for r in results if isinstance(r, CheckResult)]
    assert len(served) == 3 and all(r.results[0].outcome == pb.PASS for r in served)
    assert len(refused) == 3
    assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)


async def test_stream_replies_matched_by_request_id_with_per_request_errors() -> None:
    cfg = make_config(KEYWORD, {"workers.count": 4})
    texts = {f"id-{i}": ("forbidden" if i % 3 == 0 else "fine") + f" {i}" for i in range(25)}
    requests = [build_request(t, request_id=k) for k, t in texts.items()]
    requests.append(build_request("", request_id="bad"))
    async with running_server(cfg) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            replies = {r.request_id: r async for r in client.check_stream(requests)}
    assert set(replies) == set(texts) | {"bad"}
    assert replies["bad"].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies["bad"].error_message.startswith("response:")
    for key, text in texts.items():
        assert replies[key].error_code == 0
        assert (replies[key].decision == pb.BLOCK) == text.startswith("forbidden")


def _metric(body: str, name: str, **labels: str) -> float:
    """Sum over the series that carry these labels (others, e.g. `app`, may split a count across series)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


async def test_metrics_counters_move() -> None:
    cfg = make_config(KEYWORD, {"server.metrics_port": 0})
    async with running_server(cfg) as (server, target):
        url = f"http://127.0.0.1:{server.ports.metrics}/metrics"
        async with httpx.AsyncClient() as http:
            before = (await http.get(url)).text
            async with AsyncGuardrailClient(target) as client:
                await client.check("forbidden")
                await client.check("fine")
                with pytest.raises(grpc.aio.AioRpcError):
                    await client.check("")
            after = (await http.get(url)).text
    fail = dict(invariant="test_keyword", outcome="fail")
    ok = dict(invariant="test_keyword", outcome="pass")
    assert _metric(after, "guardrail_checks_total", **fail) == _metric(before, "guardrail_checks_total", **fail) + 1
    assert _metric(after, "guardrail_checks_total", **ok) == _metric(before, "guardrail_checks_total", **ok) + 1
    assert _metric(after, "guardrail_request_duration_seconds_count") >= _metric(
        before, "guardrail_request_duration_seconds_count") + 2
    assert _metric(after, "guardrail_requests_rejected_total", code="INVALID_ARGUMENT") == _metric(
        before, "guardrail_requests_rejected_total", code="INVALID_ARGUMENT") + 1
    assert "guardrail_check_duration_seconds_bucket" in after
