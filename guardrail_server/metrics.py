"""Prometheus metrics of the service. Label values come from closed sets: invariant names from the registry,
outcomes and decisions from enums, status codes from grpc.StatusCode."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CHECKS = Counter("guardrail_checks_total", "Invariant checks by outcome", ["invariant", "outcome"])
CHECK_DURATION = Histogram(
    "guardrail_check_duration_seconds", "Time of one invariant check", ["invariant"], buckets=LATENCY_BUCKETS
)
REQUEST_DURATION = Histogram(
    "guardrail_request_duration_seconds", "Time of one Check request, all invariants", buckets=LATENCY_BUCKETS
)
DECISIONS = Counter("guardrail_decisions_total", "Decisions returned to callers", ["decision"])
REJECTED = Counter("guardrail_requests_rejected_total", "Requests refused before checking", ["code"])
IN_FLIGHT = Gauge("guardrail_checks_in_flight", "Check requests being processed")
JUDGE_DISAGREEMENTS = Counter(
    "guardrail_judge_disagreements_total", "Cases where two judges of an invariant disagree", ["invariant"]
)
JUDGE_AGREEMENT = Gauge(
    "guardrail_judge_agreement_ratio", "Latest calibrated agreement of the judge with human labels", ["invariant"]
)
SHED = Counter(
    "guardrail_shed_total", "Calls refused by admission control before any check ran (RESOURCE_EXHAUSTED)",
    ["kind", "reason"],
)  # kind: unary | stream; reason: queue_full | queue_timeout | deadline | shutting_down
FAIL_OPEN = Counter(
    "guardrail_fail_open_total", "Invariants that errored and were let through by an on_error: fail_open policy",
    ["invariant", "reason"],
)  # reason: timeout | exception | worker_lost
ADMISSION_QUEUE_DEPTH = Gauge("guardrail_admission_queue_depth", "Calls waiting for a check worker", ["kind"])
ADMISSION_WAIT = Histogram(
    "guardrail_admission_wait_seconds", "Time an admitted call waited for a check worker", buckets=LATENCY_BUCKETS
)
