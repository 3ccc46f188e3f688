"""Citation markers are provenance, not content: the NLI invariants score a claim exactly as if it had none.

One row per marker format of `guardrail_invariants.citations` (numeric, ranges and lists, HTML superscripts, passage ids,
footnotes with their definitions, OpenAI's 【n†source】, <cite> tags, markdown links, bare URLs, reference lists).
Each is checked through the invariants' public `check` on the real model: same score as the unmarked sentence, and
findings still point at the marked sentence in the original response.
"""

from __future__ import annotations

import pytest

from guardrail_invariants.citations import claim_sentences, link_reads_as_source, strip_markers, without_markers
from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions
from guardrail_invariants.reference_integrity import ReferenceIntegrityInvariant
from guardrail_invariants.self_consistency import SelfConsistencyInvariant, SelfConsistencyOptions
from guardrail_invariants.types import Case, Outcome, Passage
from guardrail_models.zoo import ModelZoo

CLAIM = "The Pergamon Museum is located on Museum Island in Berlin."
URL = "https://en.wikipedia.org/wiki/Pergamon_Museum"
URL2 = "https://en.wikipedia.org/wiki/Museum_Island"
PASSAGES = (
    Passage("doc-1", "The Pergamon Museum is located on Museum Island in Berlin. It opened in 1930.",
            title="Pergamon Museum", url=URL),
    Passage("doc-2", "Museum Island is a UNESCO World Heritage Site on the Spree river.", title="Museum Island",
            url=URL2),
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
    # a title as link text (`guardrail synth`'s markdown format): the citation is the parenthesis, title and all
    "markdown link, title in parentheses": f"{BODY} ([Pergamon Museum]({URL})).",
    "markdown links, two titles in parentheses": f"{BODY} ([Pergamon Museum]({URL}), [Museum Island]({URL2})).",
    "markdown link, lead in parentheses": f"{BODY} (source: [Pergamon Museum]({URL})).",
    "markdown link, passage id": f"{BODY} [doc-1]({URL}).",
    "markdown link after the sentence": f"{CLAIM} [Pergamon Museum]({URL})",
    "anchor link, source word": f"{BODY} [source](#doc-1).",
    "non-web link, number": f"{BODY} [1](doc://doc-1).",
    "numeric, lead in parentheses": f"{BODY} (see [1]).",
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


@pytest.mark.parametrize(("response", "claim"), [
    # link words that are content stay, whether or not the URL is a passage's
    ("[The Louvre](https://www.louvre.fr) is the most-visited museum.", "The Louvre is the most-visited museum."),
    (f"The museum stands on [Museum Island]({URL2}) in Berlin.", "The museum stands on Museum Island in Berlin."),
    # at a sentence's end without brackets a title and an object look alike: kept (a wrong name must reach the judge)
    (f"The museum was designed by [Alfred Messel]({URL}).", "The museum was designed by Alfred Messel."),
    # a parenthesis with words besides the link is prose, not a citation
    (f"The museum (the [Pergamon]({URL}) of Berlin) opened in 1930.",
     "The museum (the Pergamon of Berlin) opened in 1930."),
    # link syntax that is not a citation: the target never reaches the judge, content words do
    ("See the [visitor guide](/guide) for the [opening hours](#hours).",
     "See the visitor guide for the opening hours."),
    # the same words as the passage's title are dropped only where they cite
    (f"The [Pergamon Museum]({URL}) opened in 1930 ([Pergamon Museum]({URL})).", "The Pergamon Museum opened in 1930."),
])
def test_link_words_that_are_content_stay(response: str, claim: str) -> None:
    (span,) = claim_sentences(response, PASSAGES)
    assert span.text == claim
    assert response[span.start:span.end] == response.strip()  # the span is the sentence as written, links and all
    assert len(strip_markers(response, PASSAGES)) == len(response)


@pytest.mark.parametrize(("words", "source"), [
    ("1", True), ("[2]", True), ("†", True), ("source", True), ("Sources", True), ("doc-1", True),
    ("Source 2", True), ("source: Pergamon Museum", True), ("ref 3", True),
    ("Pergamon Museum", False), ("the Louvre", False), ("COVID-19", False), ("page 3", False),
])
def test_link_text_that_only_names_a_source(words: str, source: bool) -> None:
    assert link_reads_as_source(words, PASSAGES) is source


def test_spans_of_a_title_cited_sentence_point_into_the_original() -> None:
    response = (f"The Pergamon Museum is located on Museum Island in Berlin ([Pergamon Museum]({URL})). "
                f"It opened in 1930 ([Pergamon Museum]({URL}), [Museum Island]({URL2})).")
    claims = claim_sentences(response, PASSAGES)
    assert [c.text for c in claims] == [CLAIM, "It opened in 1930."]
    assert [response[c.start:c.end] for c in claims] == [
        f"The Pergamon Museum is located on Museum Island in Berlin ([Pergamon Museum]({URL})).",
        f"It opened in 1930 ([Pergamon Museum]({URL}), [Museum Island]({URL2})).",
    ]


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
