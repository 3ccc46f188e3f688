"""Maps between the wire contract (guardrail.v1) and domain types. The only place that knows both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.duration_pb2 import Duration

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server import generation
from guardrail_server.engine import CheckResult
from guardrail_server.policy import Decision
from guardrail_invariants.types import (
    Case,
    Coverage,
    Finding,
    Outcome,
    Passage,
    Sensitivity,
    Verdict,
    parse_sensitivity,
)

_OUTCOME_TO_PB = {
    Outcome.PASS: pb.PASS,
    Outcome.FAIL: pb.FAIL,
    Outcome.ERROR: pb.ERROR,
    Outcome.SKIPPED: pb.SKIPPED,
    Outcome.PARTIAL: pb.PARTIAL,
}
_OUTCOME_FROM_PB = {v: k for k, v in _OUTCOME_TO_PB.items()}
_DECISION_TO_PB = {Decision.ALLOW: pb.ALLOW, Decision.FLAG: pb.FLAG, Decision.BLOCK: pb.BLOCK}
_DECISION_FROM_PB = {v: k for k, v in _DECISION_TO_PB.items()}


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


# An enum value this server does not know (a newer client) reads as unmarked: the server's policy decides.
_SENSITIVITY_FROM_PB: dict[int, Sensitivity] = {
    pb.SENSITIVITY_UNSPECIFIED: "", pb.SENSITIVITY_PUBLIC: "public", pb.SENSITIVITY_PRIVATE: "private"}
_SENSITIVITY_TO_PB: dict[str, int] = {v: k for k, v in _SENSITIVITY_FROM_PB.items()}


def case_from_request(req: pb.CheckRequest) -> Case:
    return Case(
        response=req.response,
        question=req.question,
        context=tuple(Passage(id=p.id, text=p.text, title=p.title, url=p.url,
                              sensitivity=_SENSITIVITY_FROM_PB.get(p.sensitivity, "")) for p in req.context),
        samples=tuple(req.samples),
        request_id=req.request_id,
        app=req.app,
        metadata=dict(req.metadata),
    )


def request_from_case(case: Case, invariants: Iterable[str] = ()) -> pb.CheckRequest:
    return pb.CheckRequest(
        request_id=case.request_id,
        app=case.app,
        question=case.question,
        context=[pb.Passage(id=p.id, text=p.text, title=p.title, url=p.url,
                            sensitivity=_SENSITIVITY_TO_PB[p.sensitivity]) for p in case.context],
        response=case.response,
        samples=list(case.samples),
        invariants=list(invariants),
        metadata=dict(case.metadata),
    )


def finding_to_pb(f: Finding) -> pb.Finding:
    return pb.Finding(
        start=f.start,
        end=f.end,
        kind=f.kind,
        message=f.message,
        passage_id=f.passage_id,
        score=f.score if f.score is not None else 0.0,
        has_score=f.score is not None,
    )


def judges_to_pb(details: Mapping[str, Any]) -> list[pb.JudgeResult]:
    """`Verdict.details["judges"]` (see guardrail_invariants.disagreement.panel_details) on the wire, primary first."""
    reasons = details.get("disagreement") or {}
    return [
        pb.JudgeResult(judge=name, family=j.get("family", ""), score=j.get("score", 0.0),
                       threshold=j.get("threshold", 0.0), passed=j.get("outcome") == "pass", error=j.get("error", ""),
                       disagreement=reasons.get(name, ""), duration=_duration(j.get("latency_ms", 0.0) / 1000))
        for name, j in (details.get("judges") or {}).items()
    ]


def judges_from_pb(r: pb.InvariantResult) -> dict[str, Any]:
    """The inverse of `judges_to_pb`: the same `details` layout the invariant produced."""
    if not r.judges:
        return {}
    judges: dict[str, Any] = {}
    for j in r.judges:
        entry: dict[str, Any] = {"family": j.family, "latency_ms": round(j.duration.ToNanoseconds() / 1e6, 2)}
        if j.error:
            entry["error"] = j.error
        else:
            entry.update(score=round(j.score, 4), threshold=j.threshold, outcome="pass" if j.passed else "fail")
        judges[j.judge] = entry
    out: dict[str, Any] = {"judges": judges}
    if any(not j.error for j in r.judges[1:]) and not r.judges[0].error:
        out["judges_disagree"] = r.judges_disagree
    reasons = {j.judge: j.disagreement for j in r.judges if j.disagreement}
    if reasons:
        out["disagreement"] = reasons
    return out


def _spans(spans: Iterable[tuple[int, int]]) -> list[pb.Span]:
    return [pb.Span(start=start, end=end) for start, end in spans]


def coverage_from_pb(r: pb.InvariantResult) -> Coverage | None:
    if not (r.checked or r.unchecked):
        return None
    spans = [(s.start, s.end) for s in (*r.checked, *r.unchecked)]
    reason = r.unchecked_reason if r.unchecked_reason in ("deadline", "limit") else "deadline"
    return Coverage.of(max(e for _, e in spans), [(s.start, s.end) for s in r.checked], reason)  # type: ignore[arg-type]


def verdict_to_pb(v: Verdict) -> pb.InvariantResult:
    c = v.coverage
    return pb.InvariantResult(
        checked=_spans(c.checked) if c else [],
        unchecked=_spans(c.unchecked) if c else [],
        unchecked_reason=c.reason if c else "",
        judges=judges_to_pb(v.details),
        judges_disagree=bool(v.details.get("judges_disagree")),
        findings_omitted=int(v.details.get("findings_omitted", 0)),
        invariant=v.invariant,
        outcome=_OUTCOME_TO_PB[v.outcome],
        score=v.score,
        threshold=v.threshold,
        findings=[finding_to_pb(f) for f in v.findings],
        duration=_duration(v.latency_s),
        judge=v.judge,
        error=v.error,
    )


def result_to_pb(result: CheckResult) -> pb.CheckResponse:
    return pb.CheckResponse(
        request_id=result.request_id,
        decision=_DECISION_TO_PB[result.decision],
        results=[verdict_to_pb(v) for v in result.verdicts],
        duration=_duration(result.duration_s),
        review_sample_id=result.review_sample_id or "",
    )


def generation_event_to_pb(event: generation.Event) -> pb.GenerationVerdict:
    """A CheckGeneration event (`guardrail_server.generation`) on the wire."""
    reply = pb.GenerationVerdict(request_id=event.request_id, decision=_DECISION_TO_PB[event.running])
    if isinstance(event, generation.Started):
        reply.started.CopyFrom(pb.GenerationStarted(sentence_invariants=list(event.sentence_invariants),
                                                    live_pii=event.live_pii,
                                                    final_invariants=list(event.final_invariants)))
    elif isinstance(event, generation.SentenceChecked):
        reply.sentence.CopyFrom(pb.SentenceVerdict(
            index=event.index, start=event.start, end=event.end,
            results=[verdict_to_pb(v) for v in event.verdicts], decision=_DECISION_TO_PB[event.decision],
            latency=_duration(event.latency_s)))
    elif isinstance(event, generation.LeakFound):
        reply.leak.CopyFrom(pb.LeakVerdict(findings=[finding_to_pb(f) for f in event.findings],
                                           checked_until=event.checked_until,
                                           decision=_DECISION_TO_PB[event.decision]))
    else:
        reply.final.CopyFrom(pb.FinalVerdict(response=result_to_pb(event.result), cut=event.cut,
                                             sentences=event.sentences))
    return reply


def verdict_from_pb(r: pb.InvariantResult) -> Verdict:
    return Verdict(
        invariant=r.invariant,
        outcome=_OUTCOME_FROM_PB[r.outcome],
        score=r.score,
        threshold=r.threshold,
        findings=tuple(
            Finding(
                kind=f.kind,
                message=f.message,
                start=f.start,
                end=f.end,
                passage_id=f.passage_id,
                score=f.score if f.has_score else None,
            )
            for f in r.findings
        ),
        latency_s=r.duration.ToNanoseconds() / 1e9,
        judge=r.judge,
        error=r.error,
        details={**judges_from_pb(r), **({"findings_omitted": r.findings_omitted} if r.findings_omitted else {})},
        coverage=coverage_from_pb(r),
    )


def decision_from_pb(value: int) -> Decision:
    return _DECISION_FROM_PB[value]


def response_to_dict(resp: pb.CheckResponse) -> dict[str, Any]:
    """A stable JSON shape for CLIs and files (enum names lower-cased)."""
    return {
        "request_id": resp.request_id,
        "decision": pb.Decision.Name(resp.decision).lower(),
        "duration_ms": round(resp.duration.ToNanoseconds() / 1e6, 3),
        "review_sample_id": resp.review_sample_id or None,
        "results": [
            {
                "invariant": r.invariant,
                "outcome": pb.Outcome.Name(r.outcome).lower(),
                "score": round(r.score, 6),
                "threshold": r.threshold,
                "judge": r.judge,
                "error": r.error or None,
                **({"checked": [[s.start, s.end] for s in r.checked],
                    "unchecked": [[s.start, s.end] for s in r.unchecked],
                    "unchecked_reason": r.unchecked_reason} if r.checked or r.unchecked else {}),
                **({"judges_disagree": r.judges_disagree,
                    "judges": [{"judge": j.judge, "family": j.family, "score": round(j.score, 6),
                                "passed": j.passed, "error": j.error or None,
                                "disagreement": j.disagreement or None} for j in r.judges]} if r.judges else {}),
                "findings": [
                    {
                        "kind": f.kind,
                        "start": f.start,
                        "end": f.end,
                        "message": f.message,
                        "passage_id": f.passage_id or None,
                        "score": round(f.score, 6) if f.has_score else None,
                    }
                    for f in r.findings
                ],
            }
            for r in resp.results
        ],
    }


def case_from_dict(data: Mapping[str, Any]) -> Case:
    """A Case from its JSON shape: context is a list of passages (dicts, or plain strings numbered from 1)."""
    raw_context = data.get("context") or []
    if isinstance(raw_context, str):
        raw_context = [raw_context]
    passages = []
    for i, p in enumerate(raw_context, start=1):
        if isinstance(p, str):
            passages.append(Passage(id=str(i), text=p))
        else:
            passages.append(
                Passage(id=str(p.get("id", "") or ""), text=p.get("text", ""), title=p.get("title", "") or "",
                        url=p.get("url", "") or "", sensitivity=parse_sensitivity(p.get("sensitivity")))
            )
    return Case(
        response=data.get("response", "") or "",
        question=data.get("question", "") or "",
        context=tuple(passages),
        samples=tuple(data.get("samples") or ()),
        request_id=str(data.get("request_id", "") or data.get("id", "") or ""),
        app=data.get("app", "") or "",
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )
