"""Turns verdicts into the caller's decision, per the configured per-invariant policy."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from guardrail_invariants.types import Outcome, Verdict


class Decision(str, enum.Enum):
    ALLOW = "allow"
    FLAG = "flag"
    BLOCK = "block"


_SEVERITY = {Decision.ALLOW: 0, Decision.FLAG: 1, Decision.BLOCK: 2}


class PolicyLike:
    on_fail: str
    on_error: str


def decision_for(verdict: Verdict, policy: PolicyLike) -> Decision:
    """FAIL -> the invariant's on_fail action; ERROR (incl. timeout) -> block if fail-closed, else allow."""
    if verdict.outcome is Outcome.FAIL:
        return Decision(policy.on_fail)
    if verdict.outcome is Outcome.ERROR:
        return Decision.BLOCK if policy.on_error == "fail_closed" else Decision.ALLOW
    return Decision.ALLOW


def decide(verdicts: Sequence[Verdict], policies: Mapping[str, PolicyLike]) -> Decision:
    decision = Decision.ALLOW
    for verdict in verdicts:
        candidate = decision_for(verdict, policies[verdict.invariant])
        if _SEVERITY[candidate] > _SEVERITY[decision]:
            decision = candidate
    return decision
