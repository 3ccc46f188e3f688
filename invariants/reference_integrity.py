"""`reference_integrity`: every citation in the response must point to a passage that exists in the context.

Score = the share of citations that resolve (1.0 when the response cites nothing: nothing dangles). With
`require_citations`, it is the lower of that share and the share of claim sentences that carry a citation (a
response with claims and no citation then scores 0.0; one with no claims, e.g. "Hello! How can I help?", 1.0).
The default threshold 1.0 fails a response on any dangling citation. Parsing and resolution live in
`guardrail_invariants.citations` (pure functions).

With `support_check`, each resolved citation must also be *supported*: the cited passage must entail the sentence
citing it (the entailment judge, through the shared model zoo); the score is then also capped by the share of
supported (sentence, passage) pairs, and each unsupported one is an `unsupported_citation` finding on the sentence.
A sentence citing several passages may need them together (``X is 330 m tall and opened in 1889 [1][2]``, one fact
in each): a citation its passage alone does not support still holds when the sentence's cited passages, read as one
context (premises from their sentences only), support it with a premise that joins sentences of this passage and
another, and the others without it do not — so a citation to a passage about something else is still unsupported next
to one that does the work (`_support_sentence`).
The pairs are checked front to back, a few per step, while the check's time budget lasts
(`guardrail_invariants.deadline`); from the first pair it did not reach to the end the response is unchecked, and a
verdict whose checked part holds is `partial`.

Without the support check it is pure CPU, no model: a 2,000-character response takes a few milliseconds (sentence segmentation dominates and only
runs when there is a citation or `require_citations` is on). Longer responses are checked in a worker thread so a
large input cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from guardrail_invariants import deadline as deadlines
from guardrail_invariants.base import verdict_from_score
from guardrail_invariants.citations import Analysis, Citation, CitationOptions, analyze, claim_text, strip_markers
from guardrail_invariants.types import Case, Coverage, Finding, Verdict

INLINE_MAX_CHARS = 4000
PAIRS_PER_STEP = 8  # support pairs scored per step; the budget is looked at between steps
# a sentence citing 2..this many passages may be supported by them together (the citations together, and for 3 or
# more each without one of them, are scored when a passage fails alone); one citing more is checked passage by
# passage only
MAX_JOINT_CITATIONS = 4


class ReferenceIntegrityInvariant:
    name: ClassVar[str] = "reference_integrity"
    default_threshold: ClassVar[float] = 1.0

    class Options(CitationOptions):
        """`guardrail_invariants.citations.CitationOptions`, plus the NLI support check of resolved citations."""

        support_check: bool = Field(
            False, description="also require each cited passage to support (entail) the sentence citing it; "
            "uses the shared NLI model, so it costs one model call per (sentence, cited passage)")
        support_threshold: float = Field(
            0.10, ge=0.0, le=1.0, description="support score below which a citation is unsupported (the "
            "entailment judge's scale). Deliberately low, not the entailment invariant's threshold: a citation is "
            "reported only when its passage clearly does not support the sentence")
        support_judge: Literal["hybrid", "model"] = Field("hybrid", description="see entailment.options.judge")

    def __init__(self, threshold: float, options: Options | CitationOptions | None = None, zoo: Any = None) -> None:
        self.threshold = threshold
        self.options = options if options is not None else self.Options()
        self.support: Any = None
        if getattr(self.options, "support_check", False):
            from guardrail_invariants.entailment import EntailmentOptions, SupportChecker

            self.support = SupportChecker(zoo, EntailmentOptions(judge=self.options.support_judge))

    @property
    def judge(self) -> str:
        return "citations+nli" if self.support is not None else "citations"

    async def load(self) -> None:
        """Warms pysbd (its first call compiles its rules: ~40 ms) so the first request does not pay for it."""
        evaluate(Case(response="It was made by Acme Inc. The firm is old [1]. See https://example.com."), self.options)
        if self.support is not None:
            await self.support.load()
            await self.support.support("The firm is old.", "The firm is old.")

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        if len(case.response) > INLINE_MAX_CHARS:
            score, findings, details, analysis = await asyncio.to_thread(_evaluate, case, self.options)
        else:
            score, findings, details, analysis = _evaluate(case, self.options)
        coverage = None
        if self.support is not None:
            support, coverage = await self._check_support(case, analysis, findings, details)
            score = min(score, support)
        return verdict_from_score(self.name, score, self.threshold, findings, started=started, details=details,
                                  judge=self.judge, coverage=coverage)

    async def _check_support(
        self, case: Case, analysis: Analysis, findings: list[Finding], details: dict[str, Any]
    ) -> tuple[float, Coverage | None]:
        """Share of (citing sentence, cited passage) pairs where the citation supports the sentence, over the pairs
        reached within the budget (and the coverage when that was not all of them); adds a finding spanning each
        unsupported sentence, naming the passage.

        A citation supports its sentence when its passage does alone, or — the sentence citing two to
        `MAX_JOINT_CITATIONS` passages — when the cited passages together support it and this one is needed for
        that (`_support_sentence`). The sentences are checked front to back, a few pairs per step."""
        pairs = sorted(analysis.support_pairs())
        if not pairs:
            return 1.0, None
        view = strip_markers(case.response, case.context, self.options)
        groups: list[tuple[int, int, list[int]]] = []  # (sentence start, end, cited passage indices)
        for start, end, p in pairs:
            if groups and groups[-1][:2] == (start, end):
                groups[-1][2].append(p)
            else:
                groups.append((start, end, [p]))
        budget = deadlines.current()
        results: list[list[Support]] = []
        last = 0.0
        at = 0
        while at < len(groups):
            if budget.expired(last):
                break
            step, size = [], 0
            while at < len(groups) and (not step or size + len(groups[at][2]) <= PAIRS_PER_STEP):
                step.append(groups[at])
                size += len(groups[at][2])
                at += 1
            began = time.perf_counter()
            results += await asyncio.gather(*(self._support_sentence(case, claim_text(view[start:end]), cited)
                                              for start, end, cited in step))
            last = time.perf_counter() - began
        coverage = (Coverage.prefix(len(case.response), groups[len(results)][0], "deadline")
                    if len(results) < len(groups) else None)
        threshold = self.options.support_threshold
        checked = unsupported = together = 0
        for (start, end, cited), supports in zip(groups, results):
            for p, result in zip(cited, supports, strict=True):
                checked += 1
                together += result.together
                if result.supported:
                    continue
                unsupported += 1
                passage_id = case.context[p].id or str(p + 1)
                evidence = {"entailment": round(result.alone.entailment, 4),
                            "contradiction": round(result.alone.contradiction, 4)}
                message = (f"cited passage {passage_id} does not support this sentence "
                           f"(support {result.alone.score:.2f} < {threshold:.2f})")
                if result.joint is not None:
                    evidence["cited_together"] = round(result.joint.score, 4)
                    message += f"; its {len(cited)} citations together: {result.joint.score:.2f}{result.why}"
                findings.append(Finding(kind="unsupported_citation", message=message, start=start, end=end,
                                        passage_id=passage_id, score=result.alone.score, evidence=evidence))
        details.update(support_pairs=checked, unsupported=unsupported, supported_together=together)
        return ((checked - unsupported) / checked if checked else 1.0), coverage

    async def _support_sentence(self, case: Case, sentence: str, cited: list[int]) -> list[Support]:
        """Whether each passage a sentence cites supports it: alone; else — the sentence citing 2 to
        `MAX_JOINT_CITATIONS` passages — as one of the citations that support it *together*: the cited passages read
        as one context (`check_support` on them: premises from their sentences only) support the sentence with a
        premise that joins sentences of two or more of them, this passage among them, and without it (the others
        together, leave one out) they do not.
        So ``X is 330 m tall and opened in 1889 [1][2]`` with one fact in each passage holds, while in ``X is 330 m
        tall [1][3]`` with [1] enough and [3] about something else, [3] is still an unsupported citation. (A second
        source for a fact another citation gives, in a sentence that needs a third, is not needed by this test and
        is reported unless it supports the sentence alone.)

        Cost: one score per cited passage (as before); when one of them fails, the citations together, and for 3-4
        citations one more per failed passage (the others without it)."""
        threshold = self.options.support_threshold
        passages = [case.context[p] for p in cited]
        alone = list(await asyncio.gather(*(self.support.support(p, sentence) for p in passages)))
        ok = [a.score >= threshold for a in alone]
        joint = None
        together = [False] * len(cited)
        why = [""] * len(cited)  # for a finding: why the citations together do not make this one hold
        if 1 < len(cited) <= MAX_JOINT_CITATIONS and not all(ok):
            joint = await self.support.support(passages, sentence)
            used = _premise_passages(joint)
            if joint.score >= threshold:
                joined = used is None or len(used) > 1
                open_ = [k for k in range(len(cited)) if not ok[k] and joined and (used is None or k in used)]
                if len(cited) == 2:  # without one of two citations is the other alone
                    withouts = [alone[1 - k] for k in open_]
                else:
                    withouts = await asyncio.gather(*(
                        self.support.support([q for j, q in enumerate(passages) if j != k], sentence) for k in open_))
                for k, without in zip(open_, withouts, strict=True):
                    together[k] = ok[k] = without.score < threshold
                for k in range(len(cited)):
                    why[k] = ("" if ok[k] else ", from a premise without this passage" if used is not None and k
                              not in used else ", from a premise of this passage's sentences only" if not joined
                              else ", and as much without this one")
        return [Support(a, joint, supported, both, reason)
                for a, supported, both, reason in zip(alone, ok, together, why, strict=True)]


def _premise_passages(score: Any) -> frozenset[int] | None:
    """The passages (indices into those scored) the best premise of a support score drew on; None when the judge
    does not say (then every cited passage counts as drawn on)."""
    premise = getattr(score, "premise", ())
    return frozenset(w.passage_index for w in premise) if premise else None


@dataclass(frozen=True, slots=True)
class Support:
    """One citation's support: its passage alone, the sentence's citations together (when that was scored), and the
    decision; `together`: supported only jointly."""

    alone: Any  # entailment.ClaimScore
    joint: Any
    supported: bool
    together: bool
    why: str = ""


def evaluate(case: Case, options: CitationOptions) -> tuple[float, list[Finding], dict[str, Any]]:
    """Score, findings and details of one case (synchronous, so benchmarks and evals can call it directly)."""
    score, findings, details, _ = _evaluate(case, options)
    return score, findings, details


def _evaluate(case: Case, options: CitationOptions) -> tuple[float, list[Finding], dict[str, Any], Analysis]:
    analysis = analyze(case.response, case.context, options)
    citations = analysis.citations
    resolved = sum(c.resolved for c in citations)
    findings = _dangling_findings(citations, len(case.context))
    score = resolved / len(citations) if citations else 1.0
    details: dict[str, Any] = {
        "citations": len(citations),
        "resolved": resolved,
        "dangling": len(citations) - resolved,
    }
    if options.require_citations:
        uncited = analysis.uncited_claims(options.citation_scope)
        claims = sum(s.claim for s in analysis.sentences)
        findings += [
            Finding(
                kind="uncited_claim",
                message="claim sentence has no citation",
                start=s.start,
                end=s.end,
            )
            for s in uncited
        ]
        details.update(claims=claims, uncited_claims=len(uncited))
        if claims:
            score = min(score, (claims - len(uncited)) / claims)
    details["links"] = _links(analysis)
    return score, findings, details, analysis


def _dangling_findings(citations: tuple[Citation, ...], n_passages: int) -> list[Finding]:
    """One finding per marker with a dangling reference (``[1-3]`` with 2 passages is one finding, about 3)."""
    by_marker: dict[tuple[int, int], list[Citation]] = {}
    for c in citations:
        if not c.resolved:
            by_marker.setdefault((c.start, c.end), []).append(c)
    findings = []
    for (start, end), dangling in by_marker.items():
        first = dangling[0]
        reasons = list(dict.fromkeys(c.problem for c in dangling))
        findings.append(
            Finding(
                kind="dangling_citation",
                message=f"{_short(first.marker)} does not resolve: {'; '.join(reasons)}",
                start=start,
                end=end,
                evidence={
                    "format": first.format,
                    "refs": [c.ref for c in dangling],
                    "passages": n_passages,
                },
            )
        )
    return findings


def _short(marker: str, limit: int = 80) -> str:
    return marker if len(marker) <= limit else marker[: limit - 1] + "\u2026"


def _links(analysis: Analysis) -> list[dict[str, Any]]:
    """Citation -> sentence -> passage, for reviewers and for the support check; spans only, never text."""
    return [
        {
            "start": c.start,
            "end": c.end,
            "sentence": [c.sentence_start, c.sentence_end],
            "passage_index": c.passage_index,
            "passage_id": c.passage_id,
            "via": c.via,
        }
        for c in analysis.citations
    ]
