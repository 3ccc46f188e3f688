"""Compatibility: the clients moved to the thin `guardrail_client` package (distribution `guardrail-sidecar-client`,
grpcio + protobuf only), so applications need not install the server. Existing imports keep working."""

from __future__ import annotations

from guardrail_client import (
    TLS,
    AsyncGuardrailClient,
    CheckResult,
    Decision,
    Finding,
    GuardrailClient,
    InvariantResult,
    JudgeResult,
    Outcome,
    PassageLike,
    RetryPolicy,
    build_request,
    wait_until_serving,
)

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
