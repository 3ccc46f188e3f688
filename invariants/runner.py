"""Runs invariants on a case: concurrently, each under its own deadline, never letting one failure escape.

Each check runs inside `deadline.within(...)`, so an invariant that works in steps stops at the soft point and says
`partial`; the timeout itself stays the backstop for one that does not (an `error` with nothing checked)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from guardrail_invariants import deadline
from guardrail_invariants.base import Invariant
from guardrail_invariants.types import Case, Coverage, Finding, Outcome, Verdict


@dataclass(frozen=True, slots=True)
class ScheduledInvariant:
    invariant: Invariant
    timeout_s: float


def error_verdict(name: str, threshold: float, kind: str, message: str, started: float,
                  coverage: Coverage | None = None) -> Verdict:
    return Verdict(
        invariant=name,
        outcome=Outcome.ERROR,
        score=0.0,
        threshold=threshold,
        findings=(Finding(kind=kind, message=message),),
        latency_s=time.perf_counter() - started,
        error=message,
        coverage=coverage,
    )


def timeout_verdict(name: str, threshold: float, message: str, started: float, response_chars: int) -> Verdict:
    """A check cut off at its timeout checked nothing it can vouch for: the whole response is unchecked, so the
    decision follows the invariant's `on_partial` as well as its `on_error`."""
    return error_verdict(name, threshold, "timeout", message, started,
                         Coverage.of(response_chars, (), "deadline") if response_chars else None)


async def run_one(item: ScheduledInvariant, case: Case, deadline_s: float | None = None) -> Verdict:
    inv = item.invariant
    timeout = item.timeout_s if deadline_s is None else min(item.timeout_s, deadline_s)
    started = time.perf_counter()
    try:
        with deadline.within(deadline.Deadline.after(timeout, now=started)):
            # the task wait_for starts copies the context here, so the check sees its deadline
            return await asyncio.wait_for(inv.check(case), timeout=max(timeout, 0.0))
    except TimeoutError:
        return timeout_verdict(inv.name, inv.threshold, f"check exceeded {timeout:.3f}s", started, len(case.response))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken check must become an ERROR verdict, never a crashed call
        return error_verdict(inv.name, inv.threshold, "exception", f"{type(exc).__name__}: {exc}"[:500], started)


async def run_checks(
    items: Sequence[ScheduledInvariant], case: Case, deadline_s: float | None = None
) -> list[Verdict]:
    """Verdicts in the order of `items`; `deadline_s` (seconds left on the caller's deadline) caps every timeout."""
    return list(await asyncio.gather(*(run_one(item, case, deadline_s) for item in items)))
