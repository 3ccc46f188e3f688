"""Thin Python client for guardrail-sidecar: grpcio + protobuf and the generated `guardrail.v1` stubs, nothing else.

    from guardrail_client import GuardrailClient

    with GuardrailClient("localhost:50051") as guard:
        reply = guard.check("It opened in 1887 [1].", context=["The tower opened in 1889."])
    print(reply.decision)          # ALLOW / FLAG / BLOCK

Distribution: `guardrail-sidecar-client` (clients/python/). The server's `guardrail_server.client` re-exports it.
"""

from guardrail_client.client import (
    AsyncGuardrailClient,
    GuardrailClient,
    PassageLike,
    build_request,
    wait_until_serving,
)
from guardrail_client.results import CheckResult, Decision, Finding, InvariantResult, JudgeResult, Outcome
from guardrail_client.transport import TLS, RetryPolicy

__all__ = [
    "TLS",
    "AsyncGuardrailClient",
    "CheckResult",
    "Decision",
    "Finding",
    "GuardrailClient",
    "InvariantResult",
    "JudgeResult",
    "Outcome",
    "PassageLike",
    "RetryPolicy",
    "build_request",
    "wait_until_serving",
]
