"""What a check returns, as plain Python: enums that print their names, frozen dataclasses, seconds as floats.

Why not the protobuf messages: `print(reply.decision)` on a `CheckResponse` prints `2`. `Decision` and `Outcome` are
`IntEnum`s with the wire values, so `reply.decision == guardrail_pb2.FLAG` still holds for code written against the
stubs, while `print(reply.decision)` and f-strings give `FLAG`. The message itself stays available as `reply.raw`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import grpc

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb


class _NamedIntEnum(enum.IntEnum):
    """An IntEnum whose str() and format() are the member name (Python 3.11 made IntEnum print its number)."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)

    @classmethod
    def _missing_(cls, value: object) -> "_NamedIntEnum":
        return cls(0)  # a value from a newer server: UNSPECIFIED here, the number is still in `.raw`


class Decision(_NamedIntEnum):
    """What the caller should do with the response: ALLOW it, FLAG it (let it through, mark it), BLOCK it."""

    UNSPECIFIED = pb.DECISION_UNSPECIFIED
    ALLOW = pb.ALLOW
    FLAG = pb.FLAG
    BLOCK = pb.BLOCK


class Outcome(_NamedIntEnum):
    """One invariant's result: PASS / FAIL, ERROR (it could not decide; its on_error policy applied), SKIPPED, or
    PARTIAL (what it checked holds, but it did not check all of the response: see `InvariantResult.unchecked`)."""

    UNSPECIFIED = pb.OUTCOME_UNSPECIFIED
    PASS = pb.PASS
    FAIL = pb.FAIL
    ERROR = pb.ERROR
    SKIPPED = pb.SKIPPED
    PARTIAL = pb.PARTIAL


@dataclass(frozen=True)
class Finding:
    """A span of the response (`start` inclusive, `end` exclusive; -1/-1 = the whole response) and why it is there."""

    start: int
    end: int
    kind: str
    message: str
    passage_id: str = ""
    score: float | None = None


@dataclass(frozen=True)
class JudgeResult:
    judge: str
    family: str
    score: float
    threshold: float
    passed: bool
    error: str = ""
    disagreement: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class InvariantResult:
    """`score` is the confidence in [0, 1] that the invariant holds; it passes iff `score >= threshold`."""

    invariant: str
    outcome: Outcome
    score: float
    threshold: float
    findings: tuple[Finding, ...] = ()
    duration_s: float = 0.0
    judge: str = ""
    error: str = ""
    judges: tuple[JudgeResult, ...] = ()
    judges_disagree: bool = False
    findings_omitted: int = 0  # findings past the server's limits.max_findings: counted, not listed
    # Only when the invariant did not check all of the response: (start, end) spans it checked and did not, which
    # together cover the response, and why (`deadline` | `limit`). Both empty: it checked all of it.
    checked: tuple[tuple[int, int], ...] = ()
    unchecked: tuple[tuple[int, int], ...] = ()
    unchecked_reason: str = ""


@dataclass(frozen=True)
class CheckResult:
    """The answer to one request. On `check_stream`, a request the server refused (bad input, overload) comes back as
    a result with `error_code` set (a grpc.StatusCode value) instead of an exception; see `error_status`."""

    request_id: str
    decision: Decision
    results: tuple[InvariantResult, ...] = ()
    duration_s: float = 0.0
    review_sample_id: str = ""
    error_code: int = 0
    error_message: str = ""
    raw: pb.CheckResponse | None = field(default=None, repr=False, compare=False)

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW

    @property
    def flagged(self) -> bool:
        return self.decision is Decision.FLAG

    @property
    def blocked(self) -> bool:
        return self.decision is Decision.BLOCK

    @property
    def error_status(self) -> grpc.StatusCode | None:
        return _STATUS_BY_VALUE.get(self.error_code) if self.error_code else None

    def result(self, invariant: str) -> InvariantResult | None:
        return next((r for r in self.results if r.invariant == invariant), None)

    @classmethod
    def from_pb(cls, reply: pb.CheckResponse) -> "CheckResult":
        return cls(
            request_id=reply.request_id,
            decision=Decision(reply.decision),
            results=tuple(_result(r) for r in reply.results),
            duration_s=reply.duration.ToNanoseconds() / 1e9,
            review_sample_id=reply.review_sample_id,
            error_code=reply.error_code,
            error_message=reply.error_message,
            raw=reply,
        )


_STATUS_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _result(r: pb.InvariantResult) -> InvariantResult:
    return InvariantResult(
        invariant=r.invariant,
        outcome=Outcome(r.outcome),
        score=r.score,
        threshold=r.threshold,
        findings=tuple(
            Finding(f.start, f.end, f.kind, f.message, f.passage_id, f.score if f.has_score else None)
            for f in r.findings
        ),
        duration_s=r.duration.ToNanoseconds() / 1e9,
        judge=r.judge,
        error=r.error,
        judges=tuple(
            JudgeResult(j.judge, j.family, j.score, j.threshold, j.passed, j.error, j.disagreement,
                        j.duration.ToNanoseconds() / 1e9)
            for j in r.judges
        ),
        judges_disagree=r.judges_disagree,
        findings_omitted=r.findings_omitted,
        checked=tuple((s.start, s.end) for s in r.checked),
        unchecked=tuple((s.start, s.end) for s in r.unchecked),
        unchecked_reason=r.unchecked_reason,
    )
