"""Judges: the family rule at start-up, the alignment judge's behaviour, disagreement detected and routed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from guardrail_server.client import AsyncGuardrailClient
from guardrail_server.config import ConfigError, ReviewConfig
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.review.store import ReviewStore
from guardrail_server.server import GuardrailServer
from guardrail_invariants.disagreement import JudgeScore, in_sample, panel_details
from guardrail_invariants.judges import JudgeConfigError
from guardrail_invariants.judges.alignment import AlignmentJudge
from guardrail_invariants.judges.config import shipped_manifest
from guardrail_models.zoo import SHIPPED_DIR
from guardrail_invariants.self_consistency import SelfConsistencyInvariant
from guardrail_invariants.types import Case
from tests.conftest import make_config, running_server
from tests.fake_openai import FakeOpenAI, items_in, judgement

KEY = "invariants.self_consistency.options.judges"


def shipped() -> dict:
    manifest = shipped_manifest(None)
    if manifest is None:
        pytest.skip("no NLI model shipped under models/zoo yet")
    return manifest


def sc(judges: list, **options: object) -> dict:
    return {"self_consistency": {"options": {"judges": judges, **options}}}


# -- the family rule -------------------------------------------------------------------------------------------

def test_two_alignment_judges_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=rf"{KEY}.*judges\[0\] \(alignment\) and judges\[1\] \(alignment\).*"
                                          r"family 'lexical-alignment'"):
        make_config(sc(["alignment", "alignment"]))


def test_two_llm_judges_of_one_declared_family_are_refused() -> None:
    llm = {"kind": "llm", "endpoint": "http://127.0.0.1:1/v1", "family": "Llama-3"}
    with pytest.raises(ConfigError, match=rf"{KEY}.*same|{KEY}.*both of model family"):
        make_config(sc([{**llm, "model": "a"}, {**llm, "model": "b", "family": "llama-3"}]))


def test_model_and_llm_of_the_models_family_are_refused() -> None:
    family = shipped()["family"]
    llm = {"kind": "llm", "endpoint": "http://127.0.0.1:1/v1", "model": "x", "family": family}
    with pytest.raises(ConfigError, match=rf"{KEY}.*both of model family"):
        make_config(sc(["nli", llm]))


def test_judges_of_different_families_are_accepted() -> None:
    config = make_config(sc(["alignment", {"kind": "llm", "endpoint": "http://127.0.0.1:1/v1", "model": "m",
                                           "family": "llama-3"}]))
    assert [j.kind for j in config.options("self_consistency").judges] == ["alignment", "llm"]


async def test_same_family_through_an_imported_copy_is_refused_at_start_up(tmp_path: Path) -> None:
    """A model in `models.dir` is unknown until loaded: the rule is enforced again when the server warms up."""
    manifest = shipped()
    copy = tmp_path / "models" / "renamed-copy"
    copy.mkdir(parents=True)
    for f in (SHIPPED_DIR / manifest["name"]).iterdir():
        os.symlink(f, copy / f.name)
    config = make_config(sc(["nli", "nli:renamed-copy"]), {"models.dir": str(tmp_path / "models")})
    server = GuardrailServer(config)
    await server.start()
    try:
        with pytest.raises(JudgeConfigError, match=rf"{KEY}.*both of model family '{manifest['family']}'"):
            await server.warm()
    finally:
        await server.stop(0)


# -- the alignment judge ---------------------------------------------------------------------------------------

async def test_alignment_judge_tells_support_contradiction_and_absence_apart() -> None:
    passage = ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It was designed by the "
               "engineering firm of Gustave Eiffel and is 330 metres tall.")
    judge = AlignmentJudge()
    probs = await judge.score([
        (passage, "The Eiffel Tower was completed in 1889."),
        (passage, "The Eiffel Tower was completed in 1925."),
        (passage, "The Eiffel Tower was designed by the firm of Frank Lloyd Wright."),
        (passage, "Bananas are rich in potassium and grow in tropical climates."),
    ])
    assert probs.shape == (4, 3) and probs.sum(axis=1) == pytest.approx([1.0] * 4, abs=1e-5)
    assert probs[0].argmax() == 0
    assert probs[1, 2] > probs[1, 0] and probs[1, 2] > probs[0, 2] + 0.3
    assert probs[2, 2] > probs[0, 2]
    assert probs[3].argmax() == 1
    assert judge.family == "lexical-alignment"


# -- disagreement ----------------------------------------------------------------------------------------------

def test_disagreement_by_verdict_and_by_margin() -> None:
    a = JudgeScore("nli:m", "minilm", 0.8, 0.5)
    assert panel_details(a, [JudgeScore("alignment", "lexical-alignment", 0.3, 0.5)], 0.3)["judges_disagree"]
    close = panel_details(a, [JudgeScore("alignment", "lexical-alignment", 0.7, 0.5)], 0.3)
    assert close["judges_disagree"] is False and set(close["judges"]) == {"nli:m", "alignment"}
    far = panel_details(a, [JudgeScore("alignment", "lexical-alignment", 0.51, 0.5)], 0.2)
    assert far["judges_disagree"] and "margin" in far["disagreement"]["alignment"]
    failed = panel_details(a, [JudgeScore("llm:x", "llama", 0.0, 0.5, error="timed out")], 0.3)
    assert "judges_disagree" not in failed and failed["judges"]["llm:x"]["error"] == "timed out"


def test_secondary_sampling_is_deterministic_and_near_the_fraction() -> None:
    keys = [f"req-{i}" for i in range(4000)]
    share = sum(in_sample(k, 0.1) for k in keys) / len(keys)
    assert 0.08 < share < 0.12
    assert [in_sample(k, 0.1) for k in keys[:50]] == [in_sample(k, 0.1) for k in keys[:50]]
    assert all(in_sample(k, 1.0) for k in keys[:50]) and not any(in_sample(k, 0.0) for k in keys[:50])


CASE = Case(response="Marie Curie was born in 1867 in Warsaw. She won two Nobel Prizes.",
            samples=("Marie Curie was born in 1867 in Warsaw, Poland.", "Curie won two Nobel Prizes."),
            request_id="req-disagree")


def always_contradiction(body: dict) -> str:
    return judgement(items_in(body), 0.02, 0.03, 0.95)


async def test_disagreement_is_reported_in_the_verdict_details() -> None:
    with FakeOpenAI(always_contradiction) as fake:
        judges = ["alignment", {"kind": "llm", "endpoint": fake.url, "model": "m", "family": "llama-3"}]
        inv = SelfConsistencyInvariant(0.5, SelfConsistencyInvariant.Options(judges=judges, secondary_fraction=1.0),
                                       zoo=None)
        verdict = await inv.check(CASE)
        never = SelfConsistencyInvariant(0.5, SelfConsistencyInvariant.Options(judges=judges, secondary_fraction=0.0),
                                         zoo=None)
        calls = len(fake.requests)
        unsampled = await never.check(CASE)
    assert verdict.details["judges_disagree"] is True
    assert verdict.details["judges"]["alignment"]["outcome"] == "pass"
    assert verdict.details["judges"]["llm:m"]["outcome"] == "fail"
    assert verdict.outcome.value == "pass"  # the primary decides; the disagreement goes to people
    assert "judges_disagree" not in unsampled.details and len(fake.requests) == calls


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_disagreement_through_the_server_counts_and_goes_to_review_first(tmp_path: Path) -> None:
    review = ReviewConfig(url=f"sqlite:///{tmp_path / 'review.db'}", spool_dir=str(tmp_path / "spool"),
                          random_rate=0.0, store_raw_text=True)
    sampler = ReviewSampler(review)
    before = metric("guardrail_judge_disagreements_total", invariant="self_consistency")
    with FakeOpenAI(always_contradiction) as fake:
        judges = ["alignment", {"kind": "llm", "endpoint": fake.url, "model": "m", "family": "llama-3"}]
        config = make_config(sc(judges, secondary_fraction=1.0))
        async with running_server(config, sampler=sampler) as (_, target):
            async with AsyncGuardrailClient(target) as client:
                resp = await client.check(CASE.response, samples=list(CASE.samples), request_id="req-route")
    assert metric("guardrail_judge_disagreements_total", invariant="self_consistency") == before + 1
    assert resp.review_sample_id
    with ReviewStore(review.url) as store:
        queue = store.queue()
    assert queue[0]["id"] == resp.review_sample_id
    assert queue[0]["reason"] == "disagreement" and queue[0]["disagreements"] == ["self_consistency"]
