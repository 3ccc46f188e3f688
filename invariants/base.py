"""The `Invariant` protocol: the one small interface every check implements (cf. Presidio's EntityRecognizer)."""

from __future__ import annotations

import time
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from guardrail_invariants.types import Case, Coverage, Finding, Outcome, Verdict


class InvariantOptions(BaseModel):
    """Base of each invariant's own options; unknown keys are refused so typos in config fail at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Invariant(Protocol):
    """A behavioral check of a Case.

    `load()` brings in assets (models, NLP engines) and warms them up; it is awaited once before the server
    reports SERVING. `check()` must be safe to call concurrently.
    """

    name: ClassVar[str]
    threshold: float

    async def load(self) -> None: ...

    async def check(self, case: Case) -> Verdict: ...


def verdict_from_score(
    name: str,
    score: float,
    threshold: float,
    findings: list[Finding] | tuple[Finding, ...] = (),
    *,
    started: float,
    judge: str = "",
    details: dict | None = None,
    coverage: Coverage | None = None,
) -> Verdict:
    """Builds the verdict for a computed score: the single place where score vs. threshold becomes an outcome.

    With an incomplete `coverage` a passing score is PARTIAL (the checked part holds, the rest is unknown); a
    failing one stays FAIL — a violation found in the checked part is a violation — and keeps the coverage."""
    score = min(1.0, max(0.0, float(score)))
    if coverage is not None and coverage.complete:
        coverage = None
    passed = score >= threshold
    return Verdict(
        invariant=name,
        outcome=Outcome.FAIL if not passed else Outcome.PARTIAL if coverage is not None else Outcome.PASS,
        score=score,
        threshold=threshold,
        findings=tuple(findings),
        latency_s=time.perf_counter() - started,
        judge=judge,
        details=details or {},
        coverage=coverage,
    )


def skipped(name: str, threshold: float, reason: str, *, started: float) -> Verdict:
    return Verdict(
        invariant=name,
        outcome=Outcome.SKIPPED,
        score=1.0,
        threshold=threshold,
        findings=(Finding(kind="skipped", message=reason),),
        latency_s=time.perf_counter() - started,
    )
