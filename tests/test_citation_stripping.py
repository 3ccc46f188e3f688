"""Citation markers are provenance, not content: the NLI invariants score a claim exactly as if it had none.

One row per marker format of `guardrail_invariants.citations` (numeric, ranges and lists, HTML superscripts, passage ids,
footnotes with their definitions, OpenAI's 【n†source】, <cite> tags, markdown links, bare URLs, reference lists).
Each is checked through the invariants' public `check` on the real model: same score as the unmarked sentence, and
findings still point at the marked sentence in the original response.
"""

from __future__ import annotations

import pytest

from guardrail_invariants.citations import claim_sentences, strip_markers, without_markers
from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions
from guardrail_invariants.reference_integrity import ReferenceIntegrityInvariant
from guardrail_invariants.self_consistency import SelfConsistencyInvariant, SelfConsistencyOptions
from guardrail_invariants.types import Case, Outcome, Passage
from guardrail_models.zoo import ModelZoo

CLAIM = "The Pergamon Museum is located on Museum Island in Berlin."
URL = "https://en.wikipedia.org/wiki/Pergamon_Museum"
PASSAGES = (
    Passage("doc-1", "The Pergamon Museum is located on Museum Island in Berlin. It opened in 1930.",
            title="Pergamon Museum", url=URL),
    Passage("doc-2", "Museum Island is a UNESCO World Heritage Site on the Spree river.", title="Museum Island"),
)
BODY = CLAIM[:-1]  # the claim without its final period; markers go before or after it

MARKED = {
    "numeric": f"{BODY} [1].",
    "numeric after period": f"{CLAIM}[1]",
    "numeric list": f"{BODY} [1, 2].",
    "numeric range": f"{BODY} [1-2].",
    "numeric glued": f"{BODY}[1].",
    "superscript": f"{BODY}<sup>1</sup>.",
    "superscript bracketed": f"{BODY}<sup>[1]</sup>.",
    "passage id": f"{BODY} [doc-1].",
    "explicit source": f"{BODY} [source: doc-1].",
    "footnote": f"{BODY}[^1].\n\n[^1]: {URL}",
    "oai": f"{BODY} \u30101\u2020source\u3011.",
    "oai with line": f"{BODY} \u30101:0\u2020Pergamon Museum\u3011.",
    "cite tag": f'<cite index="1">{CLAIM}</cite>',
    "markdown link, source words": f"{BODY} [1]({URL}).",
    "markdown link, content words": f"The Pergamon Museum is located on [Museum Island]({URL}) in Berlin.",
    "bare url": f"{BODY} ({URL}).",
    "bare url after": f"{CLAIM} {URL}",
    "reference list": f"{CLAIM}\n\nSources:\n1. {URL}",
    "reference definition": f"{BODY} [1].\n\n[1]: {URL}",
}


@pytest.mark.parametrize("label", sorted(MARKED))
def test_markers_are_removed_from_the_claim_and_spans_stay_in_the_original(label: str) -> None:
    response = MARKED[label]
    claims = [s for s in claim_sentences(response, PASSAGES) if s.text.strip(" .:")
              and s.text not in ("Sources:",)]
    assert [s.text for s in claims] == [CLAIM]
    span = claims[0]
    original = response[span.start:span.end]
    assert "Pergamon" in original and "Berlin" in original  # the span covers the marked sentence itself
    assert len(strip_markers(response, PASSAGES)) == len(response)


def test_text_without_markers_is_left_alone() -> None:
    text = "A man , a dog .\nTwo lines [sic] stay; x = [1, 2] is data."
    assert without_markers(text) == text
    assert strip_markers(text) is text


@pytest.fixture(scope="module")
async def entailment(zoo: ModelZoo) -> EntailmentInvariant:
    inv = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), zoo)
    await inv.load()
    return inv


@pytest.fixture(scope="module")
def zoo() -> ModelZoo:
    return ModelZoo()


@pytest.mark.parametrize("label", sorted(MARKED))
async def test_entailment_scores_a_marked_claim_exactly_as_the_unmarked_one(
        entailment: EntailmentInvariant, label: str) -> None:
    plain = await entailment.check(Case(response=CLAIM, context=PASSAGES))
    marked = await entailment.check(Case(response=MARKED[label], context=PASSAGES))
    assert plain.outcome is Outcome.PASS
    assert marked.outcome is Outcome.PASS, (label, marked.score)
    assert marked.score == pytest.approx(plain.score, abs=1e-6)


async def test_unsupported_marked_claim_is_found_at_its_span_in_the_original(entailment: EntailmentInvariant) -> None:
    response = f"{CLAIM} [1] The museum was designed by Frank Gehry in 2004 [2]."
    verdict = await entailment.check(Case(response=response, context=PASSAGES))
    assert verdict.outcome is Outcome.FAIL
    (finding,) = verdict.findings
    assert response[finding.start:finding.end] == "The museum was designed by Frank Gehry in 2004 [2]."


async def test_self_consistency_ignores_markers_in_response_and_samples(zoo: ModelZoo) -> None:
    inv = SelfConsistencyInvariant(0.5, SelfConsistencyOptions(), zoo)
    await inv.load()
    samples = ("The Pergamon Museum is on Museum Island in Berlin.", "It is in Berlin, on Museum Island.")
    plain = await inv.check(Case(response=CLAIM, samples=samples))
    marked = await inv.check(Case(response=MARKED["numeric"], samples=tuple(s[:-1] + " [2]." for s in samples)))
    assert marked.score == pytest.approx(plain.score, abs=1e-6)


async def test_support_check_reads_the_claim_without_markers(zoo: ModelZoo) -> None:
    inv = ReferenceIntegrityInvariant(1.0, ReferenceIntegrityInvariant.Options(support_check=True), zoo)
    await inv.load()
    verdict = await inv.check(Case(response=MARKED["markdown link, content words"], context=PASSAGES))
    assert verdict.outcome is Outcome.PASS, verdict.findings
    assert verdict.details["support_pairs"] == 1 and verdict.details["unsupported"] == 0
