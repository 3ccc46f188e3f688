"""Review metrics. Label values are closed sets: reasons from `records.REASONS`, causes and targets below."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SAMPLES = Counter(
    "guardrail_review_samples_total", "Cases sampled for review, by highest-priority reason", ["reason"]
)
QUEUE_DEPTH = Gauge("guardrail_review_queue_depth", "Samples waiting in memory for the review writer")
SPOOL_DEPTH = Gauge("guardrail_review_spool_depth", "Samples waiting in the on-disk spool for the review store")
INTAKE_DEPTH = Gauge(
    "guardrail_review_intake_depth", "Acknowledged samples in the intake journal, not yet stored or spooled"
)
RECOVERED = Counter(
    "guardrail_review_recovered_total", "Samples read back from an intake journal left by a stopped or killed process"
)
DROPS = Counter(
    "guardrail_review_drops_total", "Samples lost before reaching store or spool", ["cause"]
)  # cause: queue_full (never acknowledged) | spool_error | shutdown | redaction_error
WRITE_ERRORS = Counter(
    "guardrail_review_write_errors_total", "Failed writes of review samples", ["target"]
)  # target: store (down, slow, deleted or replaced file) | spool | intake (journal write, fsync, unreadable line)
STORED = Counter("guardrail_review_stored_total", "Samples committed to the review store", ["path"])  # direct | replay

for _reason in ("disagreement", "failure", "random"):
    SAMPLES.labels(_reason)
for _cause in ("queue_full", "spool_error", "shutdown", "redaction_error"):
    DROPS.labels(_cause)
for _target in ("store", "spool", "intake"):
    WRITE_ERRORS.labels(_target)
