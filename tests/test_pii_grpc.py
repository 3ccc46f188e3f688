"""pii_boundary through a real gRPC server: findings come back with spans and types, never the value."""

from __future__ import annotations

import pytest

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.client import AsyncGuardrailClient
from guardrail_server.logs import configure_logging
from tests.conftest import make_config, running_server

PHONE_IN_CONTEXT = "+1 (212) 555-0187"
PHONE_IN_RESPONSE = "212.555.0187"
EMAIL = "marta.kowalczyk@example.org"
RAW = [PHONE_IN_CONTEXT, PHONE_IN_RESPONSE, "2125550187", "+12125550187", EMAIL, "Kowalczyk"]
POLICY = {"pii_boundary": {"on_fail": "block", "timeout_s": 30}}


async def test_grpc_check_reports_leaks_without_the_values(capfd: pytest.CaptureFixture[str]) -> None:
    response = f"Marta Kowalczyk can be reached at {PHONE_IN_RESPONSE} or {EMAIL.upper()}."
    context = [
        {"id": "doc-1", "text": "Returns are accepted within thirty days."},
        {"id": "doc-3", "text": f"Customer Marta Kowalczyk, phone {PHONE_IN_CONTEXT}, e-mail {EMAIL}."},
    ]
    configure_logging("debug", "json")  # bind the log stream to the captured stderr
    async with running_server(make_config(POLICY)) as (_, target):
        async with AsyncGuardrailClient(target, timeout=60) as client:
            leak = await client.check(response, question="How can I reach the customer?", context=context)
            own = await client.check(
                response, question=f"I am Marta Kowalczyk, {EMAIL}, phone {PHONE_IN_CONTEXT}", context=context
            )
    (result,) = leak.results
    assert leak.decision == pb.BLOCK
    assert result.invariant == "pii_boundary" and result.outcome == pb.FAIL
    spans = {response[f.start : f.end]: f for f in result.findings}
    assert set(spans) == {"Marta Kowalczyk", PHONE_IN_RESPONSE, EMAIL.upper()}
    assert spans[PHONE_IN_RESPONSE].message == "<PHONE_NUMBER> from passage doc-3 leaked"
    assert all(f.kind == "pii_leak" and f.passage_id == "doc-3" for f in result.findings)
    assert own.decision == pb.ALLOW and own.results[0].outcome == pb.PASS

    wire = str(leak.raw) + str(own.raw) + leak.raw.SerializeToString().decode("utf-8", "replace")
    logs = "".join(capfd.readouterr())
    assert "pii_boundary" in logs, "the request log line should be captured"
    for raw in RAW:
        assert raw not in wire and raw.lower() not in wire.lower()
        assert raw not in logs
