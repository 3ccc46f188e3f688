"""reference_integrity's support check with the real shipped NLI model: a cited passage must entail the sentence."""

from __future__ import annotations

import pytest

from guardrail_invariants.registry import build_invariant
from guardrail_invariants.types import Case, Outcome, Passage
from guardrail_models.zoo import ModelZoo

PASSAGES = (
    Passage(id="p1", text="The Eiffel Tower, completed in 1889, is 330 metres tall and stands in Paris."),
    Passage(id="p2", text="The Louvre is the world's most-visited museum, with 8.7 million visitors in 2023."),
)


@pytest.fixture(scope="module")
async def invariant():
    inv = build_invariant("reference_integrity", 1.0, {"support_check": True}, ModelZoo())
    await inv.load()
    return inv


async def test_supported_citations_pass(invariant) -> None:
    case = Case(response="The Eiffel Tower is 330 metres tall [1]. The Louvre had 8.7 million visitors in 2023 [2].",
                context=PASSAGES)
    verdict = await invariant.check(case)
    assert verdict.outcome is Outcome.PASS, verdict.findings
    assert verdict.details["support_pairs"] == 2 and verdict.details["unsupported"] == 0


async def test_citation_to_the_wrong_passage_is_unsupported_on_its_sentence(invariant) -> None:
    response = "The Eiffel Tower is 330 metres tall [2]. The Louvre had 8.7 million visitors in 2023 [2]."
    verdict = await invariant.check(Case(response=response, context=PASSAGES))
    assert verdict.outcome is Outcome.FAIL
    (finding,) = [f for f in verdict.findings if f.kind == "unsupported_citation"]
    assert response[finding.start:finding.end].startswith("The Eiffel Tower is 330 metres tall")
    assert finding.passage_id == "p2"
    assert verdict.score == pytest.approx(0.5)


async def test_dangling_and_support_findings_together(invariant) -> None:
    response = "The Eiffel Tower is 330 metres tall [1]. It was painted gold in 1850 [1]. See also [7]."
    verdict = await invariant.check(Case(response=response, context=PASSAGES))
    kinds = sorted(f.kind for f in verdict.findings)
    assert kinds == ["dangling_citation", "unsupported_citation"]
    unsupported = next(f for f in verdict.findings if f.kind == "unsupported_citation")
    assert "painted gold" in response[unsupported.start:unsupported.end]


# one sentence, one fact from each passage: only the two citations together support it
BOTH = "The Eiffel Tower is 330 metres tall and the Louvre had 8.7 million visitors in 2023"


@pytest.mark.parametrize("marker", ["[1][2]", "[1, 2]"])
async def test_a_sentence_supported_by_its_two_citations_together_passes(invariant, marker: str) -> None:
    verdict = await invariant.check(Case(response=f"{BOTH} {marker}.", context=PASSAGES))
    assert verdict.outcome is Outcome.PASS, verdict.findings
    assert verdict.details["support_pairs"] == 2 and verdict.details["unsupported"] == 0
    assert verdict.details["supported_together"] == 2


async def test_a_wrong_citation_beside_the_right_one_is_still_unsupported(invariant) -> None:
    response = "The Eiffel Tower is 330 metres tall [1][2]. The Louvre had 8.7 million visitors in 2023 [2]."
    verdict = await invariant.check(Case(response=response, context=PASSAGES))
    assert verdict.outcome is Outcome.FAIL
    (finding,) = verdict.findings
    assert finding.kind == "unsupported_citation" and finding.passage_id == "p2"
    assert response[finding.start:finding.end] == "The Eiffel Tower is 330 metres tall [1][2]."
    assert finding.evidence["cited_together"] >= 0.5  # [1] does the work; [2] adds nothing to it
    assert verdict.score == pytest.approx(2 / 3)


async def test_two_citations_that_together_miss_a_fact_are_both_unsupported(invariant) -> None:
    response = f"{BOTH.replace('8.7', '9.9')} [1][2]."
    verdict = await invariant.check(Case(response=response, context=PASSAGES))
    assert verdict.outcome is Outcome.FAIL
    assert sorted(f.passage_id for f in verdict.findings) == ["p1", "p2"]
    assert all(f.evidence["cited_together"] < 0.1 for f in verdict.findings)
    one = await invariant.check(Case(response=f"{BOTH} [1].", context=PASSAGES))  # half the fact's sources cited
    assert one.outcome is Outcome.FAIL and [f.passage_id for f in one.findings] == ["p1"]
