"""The `Invariant` protocol: the one small interface every check implements (cf. Presidio's EntityRecognizer)."""

from __future__ import annotations

import time
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from guardrail_invariants.types import Case, Finding, Outcome, Verdict


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
) -> Verdict:
    """Builds the verdict for a computed score: the single place where score vs. threshold becomes an outcome."""
    score = min(1.0, max(0.0, float(score)))
    return Verdict(
        invariant=name,
        outcome=Outcome.PASS if score >= threshold else Outcome.FAIL,
        score=score,
        threshold=threshold,
        findings=tuple(findings),
        latency_s=time.perf_counter() - started,
        judge=judge,
        details=details or {},
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
