"""Prometheus metrics of the service. Label values come from closed sets: invariant names from the registry,
outcomes and decisions from enums, status codes from grpc.StatusCode, `app` from the configured allow-list
(`metrics.apps`; anything else is `other`, no app at all is `unset`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from guardrail_server.config import Config

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CHECKS = Counter("guardrail_checks_total", "Invariant checks by outcome", ["invariant", "outcome", "app"])
CHECK_DURATION = Histogram(
    "guardrail_check_duration_seconds", "Time of one invariant check", ["invariant"], buckets=LATENCY_BUCKETS
)
REQUEST_DURATION = Histogram(
    "guardrail_request_duration_seconds", "Time of one Check request, all invariants", buckets=LATENCY_BUCKETS
)
DECISIONS = Counter("guardrail_decisions_total", "Decisions returned to callers", ["decision", "app"])
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
)  # kind: unary | stream | generation; reason: queue_full | queue_timeout | deadline | shutting_down |
# streams_full | behind (generation: streaming.max_streams open, or their checks waiting past max_check_wait_s)
FAIL_OPEN = Counter(
    "guardrail_fail_open_total", "Invariants whose unchecked response was let through (ALLOW): an error under "
    "on_error: fail_open (a timeout also under on_partial: allow), or a partial check under on_partial: allow",
    ["invariant", "reason"],
)  # reason: timeout | exception | worker_lost | partial
PARTIAL_CHECKS = Counter(
    "guardrail_partial_checks_total", "Invariant checks that left part of the response unchecked (outcome partial, a "
    "fail found in the checked part, or a timeout), by why: its time budget ran out (deadline) or a configured cap "
    "(limit, e.g. max_sentences)", ["invariant", "reason"],
)
UNCHECKED_CHARS = Counter(
    "guardrail_unchecked_chars_total", "Response characters an invariant did not check (see "
    "guardrail_partial_checks_total)", ["invariant"],
)
ADMISSION_QUEUE_DEPTH = Gauge("guardrail_admission_queue_depth", "Calls waiting for a check worker", ["kind"])
GENERATION_STREAMS_OPEN = Gauge("guardrail_generation_streams_open", "CheckGeneration streams open now")
GENERATION_STREAMS = Counter(
    "guardrail_generation_streams_total", "CheckGeneration streams that ended, by how: closed (final verdict sent), "
    "cut (by a BLOCK), idle_timeout, deadline, cancelled (by the client), invalid (bad input or over a limit), shed "
    "(refused at the start), shutdown (the server stopping), error", ["end"],
)
GENERATION_CUT = Counter(
    "guardrail_generation_streams_cut_total", "CheckGeneration streams cut by a BLOCK before their close, by the "
    "invariant whose verdict blocked", ["invariant"],
)
SENTENCE_VERDICT_LATENCY = Histogram(
    "guardrail_generation_sentence_verdict_seconds", "CheckGeneration: time from the arrival of a sentence's last "
    "character to its verdict being sent (waiting for the text that proves its end, for a worker, and the checks)",
    buckets=LATENCY_BUCKETS,
)
LEAK_VERDICT_LATENCY = Histogram(
    "guardrail_generation_leak_verdict_seconds", "CheckGeneration: time from the arrival of a leaked entity's last "
    "character to the leak verdict being sent", buckets=LATENCY_BUCKETS,
)
ADMISSION_WAIT = Histogram(
    "guardrail_admission_wait_seconds", "Time an admitted call waited for a check worker", buckets=LATENCY_BUCKETS
)
BUILD_INFO = Gauge(
    "guardrail_build_info", "Always 1: the package version and the NLI model (name, ONNX sha256) this process serves",
    ["version", "model", "model_sha256"],
)
THRESHOLD = Gauge(
    "guardrail_invariant_threshold", "Pass threshold of each enabled invariant (score >= threshold passes); "
    "a calibration change shows here", ["invariant"],
)

OUTCOMES = ("pass", "fail", "error", "skipped", "partial")  # guardrail_invariants.types.Outcome
PARTIAL_REASONS = ("deadline", "limit")  # guardrail_invariants.types.COVERAGE_REASONS
DECISION_VALUES = ("allow", "flag", "block")  # guardrail_server.policy.Decision
SHED_KINDS = ("unary", "stream", "generation")
SHED_REASONS = ("queue_full", "queue_timeout", "deadline", "shutting_down", "streams_full", "behind")
GENERATION_ENDS = ("closed", "cut", "idle_timeout", "deadline", "cancelled", "invalid", "shed", "shutdown", "error")
FAIL_OPEN_REASONS = ("timeout", "exception", "worker_lost", "partial")
REJECTED_CODES = ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED")
APP_OTHER = "other"  # an app not on the allow-list
APP_UNSET = "unset"  # the caller sent no app


def app_label(app: str, allowed: Collection[str]) -> str:
    """The bounded `app` label value: the caller's app if allowed, else `other` (`unset` when empty). Callers are
    not trusted to keep label cardinality small, so only the configured names become series."""
    if not app:
        return APP_UNSET
    return app if app in allowed else APP_OTHER


def app_label_values(allowed: Collection[str]) -> list[str]:
    return [*allowed, APP_OTHER, APP_UNSET]


def publish_config(config: Config) -> None:
    """Exports what the process serves (build info, thresholds) and creates every closed-set series at 0, so rate
    and ratio panels show 0 rather than "No data" before the first failure. Called once at start-up by `serve`."""
    enabled = list(config.enabled_invariants())
    apps = app_label_values(config.metrics.apps)
    version, model, sha = build_identity(config)
    BUILD_INFO.labels(version, model, sha).set(1)
    for name in enabled:
        THRESHOLD.labels(name).set(config.threshold(name))
        CHECK_DURATION.labels(name)
        JUDGE_DISAGREEMENTS.labels(name)
        for outcome in OUTCOMES:
            for app in apps:
                CHECKS.labels(name, outcome, app)
        for reason in FAIL_OPEN_REASONS:
            FAIL_OPEN.labels(name, reason)
        for reason in PARTIAL_REASONS:
            PARTIAL_CHECKS.labels(name, reason)
        UNCHECKED_CHARS.labels(name)
    for decision in DECISION_VALUES:
        for app in apps:
            DECISIONS.labels(decision, app)
    for kind in SHED_KINDS:
        ADMISSION_QUEUE_DEPTH.labels(kind)
        for reason in SHED_REASONS:
            SHED.labels(kind, reason)
    for code in REJECTED_CODES:
        REJECTED.labels(code)
    for end in GENERATION_ENDS:
        GENERATION_STREAMS.labels(end)
    for name in enabled:
        GENERATION_CUT.labels(name)


def build_identity(config: Config) -> tuple[str, str, str]:
    """(package version, NLI model name, its ONNX sha256 from the manifest) without loading the model."""
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    from guardrail_models.manifest import load_manifest
    from guardrail_models.zoo import DEFAULT_NLI, ModelZoo, ZooSettings

    try:
        pkg = version("guardrail-sidecar")
    except PackageNotFoundError:
        pkg = "unknown"
    name = DEFAULT_NLI
    policy = config.invariants.get("entailment")
    if policy is not None and policy.enabled:
        name = getattr(config.options("entailment"), "model", None) or DEFAULT_NLI
    try:
        zoo = ModelZoo(ZooSettings(models_dir=Path(config.models.dir) if config.models.dir else None))
        sha = load_manifest(zoo.model_dir(name), verify=False).onnx_sha256
    except Exception:  # noqa: BLE001 - an unknown model fails at load with a clear error; the label just says so
        sha = "unknown"
    return pkg, name, sha


GC_PAUSE = Histogram(
    "guardrail_gc_pause_seconds", "Python garbage-collection pauses in the server process by generation: a collection "
    "holds the GIL, so a long one stalls the event loop (compare guardrail_event_loop_lag_seconds)", ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
LOOP_LAG = Histogram(
    "guardrail_event_loop_lag_seconds", "How late the server's event loop ran a 50 ms ticker: anything blocking the loop "
    "(health, every call, SIGTERM wait behind it) shows here", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                                                        2.5, 5.0, 10.0))
