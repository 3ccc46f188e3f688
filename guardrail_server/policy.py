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


DEFAULT_ON_PARTIAL = "flag"  # an unchecked span is never an ALLOW unless the operator says so


class PolicyLike:
    on_fail: str
    on_error: str
    on_partial: str


def decision_for(verdict: Verdict, policy: PolicyLike) -> Decision:
    """FAIL -> the invariant's on_fail action; ERROR -> block if fail-closed, else allow; PARTIAL -> on_partial.

    A verdict that left part of the response unchecked — PARTIAL, a FAIL found in the checked part, or a timeout
    (ERROR with nothing checked) — is at least its `on_partial`: a fail-open `on_error` alone never lets an unchecked
    span through, and a leak found in the checked part still blocks when `on_fail` says block."""
    if verdict.outcome is Outcome.FAIL:
        decision = Decision(policy.on_fail)
    elif verdict.outcome is Outcome.ERROR:
        decision = Decision.BLOCK if policy.on_error == "fail_closed" else Decision.ALLOW
    elif verdict.outcome is Outcome.PARTIAL:
        decision = _on_partial(policy)
    else:
        decision = Decision.ALLOW
    if verdict.unchecked:
        decision = max(decision, _on_partial(policy), key=_SEVERITY.__getitem__)
    return decision


def let_through_unchecked(verdict: Verdict, policy: PolicyLike) -> bool:
    """Whether this verdict lets part or all of the response through unchecked: an ERROR or an unchecked span that
    its policy turns into ALLOW. Such a fail-open is counted and logged, never silent."""
    unchecked = verdict.outcome is Outcome.ERROR or bool(verdict.unchecked)
    return unchecked and decision_for(verdict, policy) is Decision.ALLOW


def _on_partial(policy: PolicyLike) -> Decision:
    return Decision(getattr(policy, "on_partial", DEFAULT_ON_PARTIAL))


def decide(verdicts: Sequence[Verdict], policies: Mapping[str, PolicyLike]) -> Decision:
    decision = Decision.ALLOW
    for verdict in verdicts:
        candidate = decision_for(verdict, policies[verdict.invariant])
        if _SEVERITY[candidate] > _SEVERITY[decision]:
            decision = candidate
    return decision
