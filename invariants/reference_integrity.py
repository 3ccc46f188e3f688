"""`reference_integrity`: every citation in the response must point to a passage that exists in the context.

Score = the share of citations that resolve (1.0 when the response cites nothing: nothing dangles). With
`require_citations`, it is the lower of that share and the share of claim sentences that carry a citation (a
response with claims and no citation then scores 0.0; one with no claims, e.g. "Hello! How can I help?", 1.0).
The default threshold 1.0 fails a response on any dangling citation. Parsing and resolution live in
`guardrail_invariants.citations` (pure functions).

With `support_check`, each resolved citation must also be *supported*: the cited passage must entail the sentence
citing it (the entailment judge, through the shared model zoo); the score is then also capped by the share of
supported (sentence, passage) pairs, and each unsupported one is an `unsupported_citation` finding on the sentence.
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
from typing import Any, ClassVar, Literal

from pydantic import Field

from guardrail_invariants import deadline as deadlines
from guardrail_invariants.base import verdict_from_score
from guardrail_invariants.citations import Analysis, Citation, CitationOptions, analyze, claim_text, strip_markers
from guardrail_invariants.types import Case, Coverage, Finding, Verdict

INLINE_MAX_CHARS = 4000
PAIRS_PER_STEP = 8  # support pairs scored per step; the budget is looked at between steps


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
            "entailment judge's scale; default = the entailment invariant's dev-chosen threshold)")
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
        """Share of (citing sentence, cited passage) pairs where the passage supports the sentence, over the pairs
        reached within the budget (and the coverage when that was not all of them); adds a finding spanning each
        unsupported sentence."""
        pairs = sorted(analysis.support_pairs())
        if not pairs:
            return 1.0, None
        view = strip_markers(case.response, case.context, self.options)
        sentences = [claim_text(view[start:end]) for start, end, _ in pairs]
        budget = deadlines.current()
        scores: list[Any] = []
        last = 0.0
        for at in range(0, len(pairs), PAIRS_PER_STEP):
            if budget.expired(last):
                break
            began = time.perf_counter()
            scores += await asyncio.gather(*(self.support.support(case.context[p], sentence) for (_, _, p), sentence
                                             in zip(pairs[at : at + PAIRS_PER_STEP], sentences[at : at + PAIRS_PER_STEP])))
            last = time.perf_counter() - began
        coverage = (Coverage.prefix(len(case.response), pairs[len(scores)][0], "deadline")
                    if len(scores) < len(pairs) else None)
        pairs = pairs[: len(scores)]
        threshold = self.options.support_threshold
        unsupported = 0
        for (start, end, p), result in zip(pairs, scores):
            if result.score >= threshold:
                continue
            unsupported += 1
            passage_id = case.context[p].id or str(p + 1)
            findings.append(
                Finding(
                    kind="unsupported_citation",
                    message=f"cited passage {passage_id} does not support this sentence "
                    f"(support {result.score:.2f} < {threshold:.2f})",
                    start=start,
                    end=end,
                    passage_id=passage_id,
                    score=result.score,
                    evidence={"entailment": round(result.entailment, 4),
                              "contradiction": round(result.contradiction, 4)},
                )
            )
        details.update(support_pairs=len(pairs), unsupported=unsupported)
        return ((len(pairs) - unsupported) / len(pairs) if pairs else 1.0), coverage


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
