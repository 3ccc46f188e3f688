"""self_consistency with real judges: the shipped NLI model and the alignment judge."""

from __future__ import annotations

import pytest

from guardrail_server.client import AsyncGuardrailClient
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_invariants.judges.config import shipped_manifest
from guardrail_invariants.self_consistency import SelfConsistencyInvariant
from guardrail_invariants.types import Case, Outcome
from guardrail_models.zoo import ModelZoo
from tests.conftest import make_config, running_server

RESPONSE = ("The Eiffel Tower stands on the Champ de Mars in Paris. "
            "The Eiffel Tower was completed in 1889. "
            "The tower was designed by the engineering company of Gustave Eiffel.")
SECOND = RESPONSE.index("The Eiffel Tower was completed")
THIRD = RESPONSE.index("The tower was designed")

CONSISTENT = (
    "The Eiffel Tower was completed in 1889 and stands on the Champ de Mars in Paris.",
    "Gustave Eiffel's engineering company designed the tower, which was completed in 1889.",
    "Completed in 1889, the Eiffel Tower in Paris was designed by the company of Gustave Eiffel.",
)
CONTRADICTING = (
    "The Eiffel Tower stands on the Champ de Mars in Paris. The Eiffel Tower was completed in 1925.",
    "The Eiffel Tower was completed in 1931, long after the World's Fair. It stands in Paris.",
    "Completed in 1925, the Eiffel Tower stands on the Champ de Mars in Paris.",
)
MIXED = (CONSISTENT[1], CONTRADICTING[1], CONTRADICTING[2])  # sample 0 agrees, 1 and 2 contradict sentence 2


@pytest.fixture(scope="module")
def zoo() -> ModelZoo:
    if shipped_manifest(None) is None:
        pytest.skip("no NLI model shipped under models/zoo yet")
    return ModelZoo()


def invariant(zoo: ModelZoo | None, judge: str, **options: object) -> SelfConsistencyInvariant:
    return SelfConsistencyInvariant(0.5, SelfConsistencyInvariant.Options(judges=[judge], **options), zoo=zoo)


@pytest.mark.parametrize("judge", ["nli", "alignment"])
async def test_consistent_samples_pass(zoo: ModelZoo, judge: str) -> None:
    verdict = await invariant(zoo, judge).check(Case(response=RESPONSE, samples=CONSISTENT))
    assert verdict.outcome is Outcome.PASS, verdict.details
    assert not verdict.findings
    assert verdict.details["samples"] == 3 and len(verdict.details["sentences"]) == 3


@pytest.mark.parametrize("judge", ["nli", "alignment"])
async def test_contradicting_samples_flag_the_right_sentence(zoo: ModelZoo, judge: str) -> None:
    verdict = await invariant(zoo, judge).check(Case(response=RESPONSE, samples=CONTRADICTING))
    assert verdict.outcome is Outcome.FAIL, verdict.details
    flagged = [(f.start, f.end) for f in verdict.findings]
    assert (SECOND, THIRD - 1) in flagged, (flagged, verdict.details)
    assert all(start != 0 for start, _ in flagged)  # the sentence every sample agrees with is not flagged
    finding = next(f for f in verdict.findings if f.start == SECOND)
    assert RESPONSE[finding.start:finding.end] == "The Eiffel Tower was completed in 1889."
    assert finding.score == pytest.approx(1 - finding.evidence["mean_contradiction"], abs=1e-3)
    assert verdict.score == pytest.approx(min(s["score"] for s in verdict.details["sentences"]), abs=1e-3)


@pytest.mark.parametrize("judge", ["nli", "alignment"])
async def test_evidence_names_the_contradicting_samples_only(zoo: ModelZoo, judge: str) -> None:
    mixed = await invariant(zoo, judge, evidence_min=0.4).check(Case(response=RESPONSE, samples=MIXED))
    agreed = await invariant(zoo, judge).check(Case(response=RESPONSE, samples=CONSISTENT))
    second = {d["start"]: d["score"] for d in mixed.details["sentences"]}[SECOND]
    assert second < {d["start"]: d["score"] for d in agreed.details["sentences"]}[SECOND] - 0.1
    invariant_at = invariant(zoo, judge, evidence_min=0.4)
    invariant_at.threshold = second + 0.01  # whatever the calibration, the weakest sentence is reported
    verdict = await invariant_at.check(Case(response=RESPONSE, samples=MIXED))
    finding = next(f for f in verdict.findings if f.start == SECOND)
    named = [e["sample"] for e in finding.evidence["contradicting_samples"]]
    assert named and set(named) <= {1, 2}, finding.evidence


async def test_mean_aggregation_is_milder_than_max(zoo: ModelZoo) -> None:
    case = Case(response=RESPONSE, samples=CONTRADICTING)
    worst = await invariant(zoo, "nli").check(case)
    mean = await invariant(zoo, "nli", aggregation="mean").check(case)
    assert mean.score > worst.score


async def test_a_long_sample_is_windowed_and_the_relevant_part_found(zoo: ModelZoo) -> None:
    filler = " ".join(f"Paris has many museums, and visitor number {i} admired the paintings in the galleries."
                      for i in range(40))
    long_contra = filler + " The Eiffel Tower was completed in 1925."
    inv = invariant(zoo, "nli")
    verdict = await inv.check(Case(response=RESPONSE, samples=(long_contra, long_contra)))
    scores = {d["start"]: d["score"] for d in verdict.details["sentences"]}
    assert scores[SECOND] < scores[0], verdict.details


@pytest.mark.parametrize("samples", [(), ("",), ("   ", "\n")])
async def test_no_samples_is_skipped_not_an_error(samples: tuple[str, ...]) -> None:
    verdict = await invariant(None, "alignment").check(Case(response=RESPONSE, samples=samples))
    assert verdict.outcome is Outcome.SKIPPED and verdict.score == 1.0
    assert "no samples" in verdict.findings[0].message


async def test_response_without_claims_is_skipped() -> None:
    verdict = await invariant(None, "alignment").check(Case(response="Is it tall? Thanks!", samples=("It is.",)))
    assert verdict.outcome is Outcome.SKIPPED


async def test_through_the_server_skipped_without_samples_and_checked_with_them(zoo: ModelZoo) -> None:
    config = make_config({"self_consistency": {"options": {"judges": ["nli"]}}})
    async with running_server(config) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            without = await client.check(RESPONSE)
            with_samples = await client.check(RESPONSE, samples=list(CONTRADICTING))
    (r1,) = without.results
    (r2,) = with_samples.results
    assert r1.outcome == pb.SKIPPED and without.decision == pb.ALLOW
    assert r2.outcome == pb.FAIL and r2.judge.startswith("nli:")
