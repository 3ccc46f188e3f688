"""The entailment invariant with a secondary judge: same windows, both scores in the details, the family rule."""

from __future__ import annotations

import pytest

from guardrail_server.config import ConfigError
from guardrail_invariants.entailment import EntailmentInvariant
from guardrail_invariants.judges.config import shipped_manifest
from guardrail_invariants.types import Case, Passage
from guardrail_models.zoo import ModelZoo
from tests.conftest import make_config

CONTEXT = (Passage("doc-1", "The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It was designed "
                            "by the engineering company of Gustave Eiffel and is 330 metres tall."),)


@pytest.fixture(scope="module")
def zoo() -> ModelZoo:
    if shipped_manifest(None) is None:
        pytest.skip("no NLI model shipped under models/zoo yet")
    return ModelZoo()


def entailment(zoo: ModelZoo, **options: object) -> EntailmentInvariant:
    return EntailmentInvariant(0.5, EntailmentInvariant.Options(**options), zoo)


async def test_secondary_judge_scores_the_same_claims_and_reports_both(zoo: ModelZoo) -> None:
    inv = entailment(zoo, judges=["nli", "alignment"], secondary_fraction=1.0)
    await inv.load()
    verdict = await inv.check(Case(response="The Eiffel Tower was completed in 1889.", context=CONTEXT))
    judges = verdict.details["judges"]
    assert len(judges) == 2 and "alignment" in judges
    assert judges["alignment"]["family"] == "lexical-alignment" and "score" in judges["alignment"]
    assert isinstance(verdict.details["judges_disagree"], bool)


async def test_disagreement_when_the_judges_split(zoo: ModelZoo) -> None:
    # A per-judge threshold no score can reach makes the secondary fail every case: a guaranteed split on a case
    # the primary passes.
    inv = entailment(zoo, judges=["nli", {"kind": "alignment", "threshold": 1.0}], secondary_fraction=1.0)
    await inv.load()
    verdict = await inv.check(Case(response="The Eiffel Tower was completed in 1889.", context=CONTEXT))
    assert verdict.outcome.value == "pass", verdict.details
    assert verdict.details["judges_disagree"] is True
    assert "verdicts differ" in verdict.details["disagreement"]["alignment"]


async def test_without_secondary_nothing_changes(zoo: ModelZoo) -> None:
    inv = entailment(zoo, judges=["nli", "alignment"], secondary_fraction=0.0)
    await inv.load()
    verdict = await inv.check(Case(response="The Eiffel Tower was completed in 1889.", context=CONTEXT))
    assert "judges_disagree" not in verdict.details


def test_entailment_refuses_a_secondary_of_the_models_family() -> None:
    family = (shipped_manifest(None) or pytest.skip("no shipped model"))["family"]
    llm = {"kind": "llm", "endpoint": "http://127.0.0.1:1/v1", "model": "x", "family": family}
    with pytest.raises(ConfigError, match=r"invariants\.entailment\.options\.judges.*both of model family"):
        make_config({"entailment": {"options": {"judges": ["nli", llm]}}})
