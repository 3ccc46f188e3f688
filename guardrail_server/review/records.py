"""A sampled case as a plain JSON-able record: what the spool writes and the store holds.

Redaction happens here, off the hot path (in the writer thread), before anything touches disk. Finding spans
are offsets into the *raw* response, so each finding also gets the redacted text of its span (`quote`): the
reviewer sees what the judge pointed at even though redaction shifts offsets.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from invariants.types import Case, Finding, Verdict

log = logging.getLogger(__name__)

Redactor = Callable[[str], str]

REASONS = ("disagreement", "failure", "random")
PRIORITY = {reason: i for i, reason in enumerate(REASONS)}
REDACTION_UNAVAILABLE = "[redaction unavailable: text withheld]"
MAX_PASSAGE_CHARS = 8000  # reviewers read passages, they do not need 32k of each; also bounds redaction cost


@dataclass(slots=True)
class Pending:
    """What `offer()` enqueues: references only, so the hot path copies nothing."""

    id: str
    created_at: float
    case: Case
    verdicts: Sequence[Verdict]
    decision: str
    reasons: tuple[str, ...]
    disagreements: tuple[str, ...] = field(default_factory=tuple)


def new_id() -> str:
    return str(uuid.uuid4())


def default_redactor() -> Redactor:
    """The PII redactor from `invariants.pii`, imported lazily (Presidio is heavy). If it cannot be loaded the
    store withholds text rather than storing it raw: raw text is opt-in only."""
    try:
        from invariants.pii import redact
    except Exception as exc:  # noqa: BLE001 - any import failure means "no redactor"
        log.error("review: PII redactor unavailable (%s); stored text is withheld", type(exc).__name__)
        return lambda text: REDACTION_UNAVAILABLE if text else text
    return redact


def _safe(redact: Redactor | None, text: str) -> str:
    if redact is None or not text:
        return text
    try:
        return redact(text)
    except Exception as exc:  # noqa: BLE001 - a redactor bug must never leak raw text
        log.error("review: redaction failed (%s); text withheld", type(exc).__name__)
        return REDACTION_UNAVAILABLE


def _redact_value(redact: Redactor | None, value: Any) -> Any:
    if isinstance(value, str):
        return _safe(redact, value)
    if isinstance(value, dict):
        return {k: _redact_value(redact, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(redact, v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _safe(redact, str(value))


def _finding(f: Finding, response: str, redact: Redactor | None) -> dict[str, Any]:
    quote = response[f.start:f.end] if 0 <= f.start < f.end <= len(response) else ""
    return {
        "kind": f.kind,
        "message": _safe(redact, f.message),
        "start": f.start,
        "end": f.end,
        "quote": _safe(redact, quote),
        "passage_id": f.passage_id,
        "score": f.score,
        "evidence": _redact_value(redact, dict(f.evidence)),
    }


def verdict_record(v: Verdict, response: str, redact: Redactor | None) -> dict[str, Any]:
    return {
        "invariant": v.invariant,
        "outcome": v.outcome.value,
        "score": float(v.score),
        "threshold": float(v.threshold),
        "judge": v.judge,
        "latency_s": float(v.latency_s),
        "error": _safe(redact, v.error),
        "findings": [_finding(f, response, redact) for f in v.findings],
        "details": _redact_value(redact, dict(v.details)),
    }


def _clip(text: str) -> str:
    if len(text) <= MAX_PASSAGE_CHARS:
        return text
    return text[:MAX_PASSAGE_CHARS] + f" [… {len(text) - MAX_PASSAGE_CHARS} more characters not stored]"


def case_record(case: Case, redact: Redactor | None) -> dict[str, Any]:
    return {
        "question": _safe(redact, case.question),
        "response": _safe(redact, case.response),
        "context": [
            {"id": p.id, "title": _safe(redact, p.title), "url": p.url, "text": _safe(redact, _clip(p.text))}
            for p in case.context
        ],
        "samples": [_safe(redact, s) for s in case.samples],
        "metadata": {k: _safe(redact, v) for k, v in case.metadata.items()},
    }


def to_record(p: Pending, redact: Redactor | None) -> dict[str, Any]:
    """The storable record of a pending sample; `redact=None` stores text raw."""
    reasons = tuple(sorted(set(p.reasons), key=PRIORITY.__getitem__))
    return {
        "id": p.id,
        "created_at": datetime.fromtimestamp(p.created_at, UTC).isoformat(),
        "request_id": p.case.request_id[:128],
        "app": p.case.app[:128],
        "decision": p.decision[:16],
        "reason": reasons[0],
        "reasons": ",".join(reasons),
        "priority": PRIORITY[reasons[0]],
        "in_random_slice": "random" in reasons,
        "redacted": redact is not None,
        "case": case_record(p.case, redact),
        "verdicts": [verdict_record(v, p.case.response, redact) for v in p.verdicts],
        "disagreements": list(p.disagreements),
    }
