"""Cross-judge disagreement: where two judges of different families disagree, the case is hard.

Judges disagree on a case when their verdicts differ (each at its own threshold) or their scores differ by more than a
margin. The invariant's verdict stays the primary judge's; the disagreement is reported in `Verdict.details`
(`judges_disagree: True` plus every judge's score), which the engine counts in
`guardrail_judge_disagreements_total{invariant}` and hands to the review sampler, where such cases go first: the
cheapest way to spend scarce labeling time.

Secondary judges run on a sampled fraction of the cases online (to bound their cost) and on every case offline
(`fraction=1.0`). The draw is a hash of the case, not a random number, so a replayed case gets the same treatment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class JudgeScore:
    """One judge's view of one case: its score (confidence the invariant holds) at its own threshold."""

    judge: str
    family: str
    score: float
    threshold: float
    latency_s: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def passed(self) -> bool:
        return self.ok and self.score >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"family": self.family, "latency_ms": round(self.latency_s * 1000, 2)}
        if self.error:
            out["error"] = self.error
        else:
            out.update(score=round(self.score, 4), threshold=self.threshold,
                       outcome="pass" if self.passed else "fail")
        return out


def disagreement(a: JudgeScore, b: JudgeScore, margin: float) -> str:
    """Why `a` and `b` disagree ("" when they agree, or when either failed to judge)."""
    if not (a.ok and b.ok):
        return ""
    if a.passed != b.passed:
        return f"verdicts differ: {a.judge} {'pass' if a.passed else 'fail'}, {b.judge} {'pass' if b.passed else 'fail'}"
    gap = abs(a.score - b.score)
    if gap > margin:
        return f"scores differ by {gap:.2f} > margin {margin:.2f}"
    return ""


def panel_details(primary: JudgeScore, secondaries: Sequence[JudgeScore], margin: float) -> dict[str, Any]:
    """The `Verdict.details` entries for a judged case. `judges_disagree` is present only when a secondary judged."""
    out: dict[str, Any] = {"judges": {s.judge: s.as_dict() for s in (primary, *secondaries)}}
    judged = [s for s in secondaries if s.ok]
    if judged and primary.ok:
        reasons = {s.judge: r for s in judged if (r := disagreement(primary, s, margin))}
        out["judges_disagree"] = bool(reasons)
        if reasons:
            out["disagreement"] = reasons
    return out


def in_sample(key: str, fraction: float) -> bool:
    """Deterministic Bernoulli(fraction) draw keyed on the case."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).digest(), "big")
    return h / 2.0**64 < fraction


def case_key(request_id: str, response: str) -> str:
    return request_id or hashlib.blake2b(response.encode("utf-8", "replace"), digest_size=16).hexdigest()
