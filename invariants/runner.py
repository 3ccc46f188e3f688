"""Runs invariants on a case: concurrently, each under its own deadline, never letting one failure escape."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from guardrail_invariants.base import Invariant
from guardrail_invariants.types import Case, Finding, Outcome, Verdict


@dataclass(frozen=True, slots=True)
class ScheduledInvariant:
    invariant: Invariant
    timeout_s: float


def error_verdict(name: str, threshold: float, kind: str, message: str, started: float) -> Verdict:
    return Verdict(
        invariant=name,
        outcome=Outcome.ERROR,
        score=0.0,
        threshold=threshold,
        findings=(Finding(kind=kind, message=message),),
        latency_s=time.perf_counter() - started,
        error=message,
    )


async def run_one(item: ScheduledInvariant, case: Case, deadline_s: float | None = None) -> Verdict:
    inv = item.invariant
    timeout = item.timeout_s if deadline_s is None else min(item.timeout_s, deadline_s)
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(inv.check(case), timeout=max(timeout, 0.0))
    except TimeoutError:
        return error_verdict(inv.name, inv.threshold, "timeout", f"check exceeded {timeout:.3f}s", started)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken check must become an ERROR verdict, never a crashed call
        return error_verdict(inv.name, inv.threshold, "exception", f"{type(exc).__name__}: {exc}"[:500], started)


async def run_checks(
    items: Sequence[ScheduledInvariant], case: Case, deadline_s: float | None = None
) -> list[Verdict]:
    """Verdicts in the order of `items`; `deadline_s` (seconds left on the caller's deadline) caps every timeout."""
    return list(await asyncio.gather(*(run_one(item, case, deadline_s) for item in items)))
