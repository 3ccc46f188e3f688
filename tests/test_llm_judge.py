"""The LLM judge and the offline sampler against a local OpenAI-compatible endpoint (the suite's only fake)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_server.config import ConfigError
from guardrail_server.llm_sampler import sample_responses
from guardrail_invariants.judges.base import JudgeError
from guardrail_invariants.judges.llm import LlmJudge, load_anchors, parse_output
from guardrail_invariants.runner import ScheduledInvariant, run_checks
from guardrail_invariants.self_consistency import SelfConsistencyInvariant
from guardrail_invariants.types import Case, Outcome, Passage
from tests.conftest import make_config
from tests.fake_openai import FakeOpenAI, items_in, judgement

CRITIQUE_FAIL = "Sample 2 gives 1871 for the birth year while the response says 1867: a direct contradiction."
CRITIQUE_PASS = "Wording differs between the samples but every fact is the same; rephrasing is not inconsistency."
CRITIQUE_OTHER = "Entailment-only critique that must not appear in the self-consistency prompt."

CASE = Case(response="Marie Curie was born in 1867 in Warsaw. She won two Nobel Prizes.",
            question="Tell me about Marie Curie.",
            samples=("Marie Curie was born in 1867 in Warsaw.", "Marie Curie, born 1867, won two Nobel Prizes."),
            request_id="req-llm-1")


def anchor_line(pos: int, sid: str, labels: dict[str, str], critique: str, response: str) -> str:
    return json.dumps({
        "format": "guardrail-anchor/v1",
        "anchor_set": {"name": "default", "version": 1, "description": ""},
        "position": pos,
        "sample": {"id": sid, "case": {"question": "Who was Marie Curie?", "response": response, "context": [],
                                       "samples": ["She was born in 1871 in Paris."], "metadata": {}},
                   "verdicts": [], "disagreements": []},
        "annotations": [{"reviewer": "ana", "critique": critique, "labels": labels}],
    })


@pytest.fixture
def anchors(tmp_path: Path) -> Path:
    path = tmp_path / "anchors.jsonl"
    path.write_text("\n".join([
        anchor_line(0, "s1", {"self_consistency": "fail"}, CRITIQUE_FAIL, "She was born in 1867 in Warsaw."),
        anchor_line(1, "s2", {"self_consistency": "pass"}, CRITIQUE_PASS, "She was a physicist and chemist."),
        anchor_line(2, "s3", {"entailment": "fail"}, CRITIQUE_OTHER, "The tower is 500 m tall."),
    ]) + "\n")
    return path


def llm_invariant(url: str, anchors: Path | None = None, **spec: object) -> SelfConsistencyInvariant:
    judge = {"kind": "llm", "endpoint": url, "model": "judge-7b", "family": "llama-3", "timeout_s": 2.0,
             "retries": 1, **({"anchors": str(anchors)} if anchors else {}), **spec}
    return SelfConsistencyInvariant(0.5, SelfConsistencyInvariant.Options(judges=[judge]), zoo=None)


async def test_prompt_carries_the_anchor_critiques_and_the_schema(anchors: Path) -> None:
    with FakeOpenAI(lambda body: judgement(items_in(body), 0.9, 0.08, 0.02)) as fake:
        inv = llm_invariant(fake.url, anchors)
        await inv.load()
        verdict = await inv.check(CASE)
    assert verdict.outcome is Outcome.PASS and verdict.judge == "llm:judge-7b"
    assert fake.paths[0] == "/v1/chat/completions"
    body = fake.requests[0]
    prompt = "\n".join(m["content"] for m in body["messages"])
    assert CRITIQUE_FAIL in prompt and CRITIQUE_PASS in prompt
    assert CRITIQUE_OTHER not in prompt  # anchors are per invariant
    assert "human verdict: FAIL" in prompt and "human verdict: PASS" in prompt
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["results"]
    assert body["temperature"] == 0.0
    # the response's sentences against both samples, in one call
    assert items_in(body) == 2 * 2


async def test_contradiction_from_the_llm_fails_the_case_with_findings() -> None:
    with FakeOpenAI(lambda body: judgement(items_in(body), 0.05, 0.05, 0.9)) as fake:
        verdict = await llm_invariant(fake.url).check(CASE)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.score == pytest.approx(0.1, abs=1e-3)
    assert [f.kind for f in verdict.findings] == ["inconsistent_sentence"] * 2
    assert verdict.findings[0].evidence["contradicting_samples"][0]["sample"] in (0, 1)


@pytest.mark.parametrize("content", [
    "I think these are consistent.",                                                   # not JSON
    json.dumps({"results": [{"id": 1, "entailment": 1.0}]}),                           # missing fields
    json.dumps({"results": [], "verdict": "pass"}),                                    # unknown key
    json.dumps({"results": [{"id": 9, "critique": "x", "entailment": 1, "neutral": 0, "contradiction": 0}]}),
    json.dumps({"results": [{"id": i, "critique": "x", "entailment": 0.9, "neutral": 0.9, "contradiction": 0.9}
                            for i in range(1, 5)]}),                                   # does not sum to 1
    json.dumps({"results": [{"id": i, "critique": "x", "entailment": "high", "neutral": 0, "contradiction": 0}
                            for i in range(1, 5)]}),                                   # strings are not numbers
])
async def test_malformed_output_is_an_error_verdict_not_a_crash(content: str) -> None:
    with FakeOpenAI(lambda body: content) as fake:
        inv = llm_invariant(fake.url)
        verdict = await inv.check(CASE)
        calls = len(fake.requests)
        (through_runner,) = await run_checks([ScheduledInvariant(inv, 5.0)], CASE)
    assert verdict.outcome is Outcome.ERROR and through_runner.outcome is Outcome.ERROR
    assert verdict.findings[0].kind == "judge_error"
    assert "llm judge" in verdict.error
    assert content[:20] not in verdict.error  # the defect is described, the output is not echoed
    assert calls == 2  # one retry of the malformed answer, then ERROR


async def test_retries_transient_http_errors_then_succeeds() -> None:
    calls = {"n": 0}

    def reply(body: dict) -> object:
        calls["n"] += 1
        return (503, None) if calls["n"] == 1 else judgement(items_in(body), 0.9, 0.05, 0.05)

    with FakeOpenAI(reply) as fake:
        verdict = await llm_invariant(fake.url).check(CASE)
    assert verdict.outcome is Outcome.PASS and len(fake.requests) == 2


async def test_timeout_is_an_error_verdict() -> None:
    with FakeOpenAI(lambda body: judgement(items_in(body), 1, 0, 0), delay_s=1.0) as fake:
        verdict = await llm_invariant(fake.url, timeout_s=0.2, retries=0).check(CASE)
    assert verdict.outcome is Outcome.ERROR and "timed out" in verdict.error


async def test_failing_secondary_llm_leaves_the_primary_verdict_and_records_the_error() -> None:
    with FakeOpenAI(lambda body: "not json") as fake:
        judges = ["alignment", {"kind": "llm", "endpoint": fake.url, "model": "judge-7b", "family": "llama-3",
                                "retries": 0}]
        inv = SelfConsistencyInvariant(0.5, SelfConsistencyInvariant.Options(judges=judges, secondary_fraction=1.0),
                                       zoo=None)
        verdict = await inv.check(CASE)
    assert verdict.outcome in (Outcome.PASS, Outcome.FAIL) and verdict.judge == "alignment"
    assert "error" in verdict.details["judges"]["llm:judge-7b"]
    assert "judges_disagree" not in verdict.details


def test_parse_output_accepts_a_fenced_json_answer_and_normalizes() -> None:
    text = "```json\n" + judgement(2, 0.5, 0.3, 0.25) + "\n```"
    probs = parse_output(text, 2)
    assert probs.shape == (2, 3) and probs.sum(axis=1) == pytest.approx([1.0, 1.0])
    with pytest.raises(JudgeError):
        parse_output(judgement(3, 0.5, 0.3, 0.2), 2)


def test_anchor_file_errors_are_clear(tmp_path: Path, anchors: Path) -> None:
    assert [a.label for a in load_anchors(anchors, "self_consistency")] == ["fail", "pass"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"format": "something-else"}) + "\n")
    with pytest.raises(JudgeError, match="guardrail-anchor/v1"):
        load_anchors(bad, "self_consistency")
    with pytest.raises(JudgeError, match="cannot read anchor file"):
        load_anchors(tmp_path / "missing.jsonl", "self_consistency")


def test_llm_judge_needs_endpoint_model_and_family() -> None:
    with pytest.raises(ConfigError, match=r"invariants\.self_consistency\.options\.judges.*family"):
        make_config({"self_consistency": {"options": {"judges": [
            {"kind": "llm", "endpoint": "http://127.0.0.1:1/v1", "model": "m"}]}}})


async def test_llm_judge_is_disabled_unless_configured() -> None:
    opts = SelfConsistencyInvariant.Options()
    assert all(j.kind != "llm" for j in opts.judges)
    assert LlmJudge  # constructed only from an explicit `kind: llm` judge


async def test_sampler_calls_the_system_under_test_n_times_at_temperature() -> None:
    def reply(body: dict) -> str:
        return f"Answer number {body['seed']} at t={body['temperature']}."

    case = Case(response="", question="Who built the tower?", context=(Passage("doc-1", "Eiffel's firm built it."),))
    with FakeOpenAI(reply) as fake:
        samples = await sample_responses(case, fake.url, "sut-model", n=4, temperature=0.8)
    assert len(samples) == 4 and len(set(samples)) == 4
    assert {r["temperature"] for r in fake.requests} == {0.8}
    assert {r["model"] for r in fake.requests} == {"sut-model"}
    user = fake.requests[0]["messages"][-1]["content"]
    assert "Who built the tower?" in user and "Eiffel's firm built it." in user
    with pytest.raises(ValueError, match="temperature"):
        await sample_responses(case, fake.url, "sut-model", n=2, temperature=0.0)


async def test_api_key_comes_from_the_named_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test-123")
    seen: list[str] = []

    def reply(body: dict) -> str:
        return judgement(items_in(body), 1.0, 0.0, 0.0)

    with FakeOpenAI(reply) as fake:
        inv = llm_invariant(fake.url, api_key_env="TEST_JUDGE_KEY")
        original = fake.server.RequestHandlerClass.do_POST

        def capture(handler) -> None:  # type: ignore[no-untyped-def]
            seen.append(handler.headers.get("Authorization", ""))
            original(handler)

        fake.server.RequestHandlerClass.do_POST = capture
        await inv.check(CASE)
    assert seen == ["Bearer sk-test-123"]


async def test_sampler_endpoint_down_is_a_clear_error() -> None:
    from guardrail_invariants.judges.openai_client import ChatError
    from tests.conftest import free_port

    case = Case(response="", question="Anything?")
    with pytest.raises(ChatError, match="failed after 2 attempts"):
        await sample_responses(case, f"http://127.0.0.1:{free_port()}/v1", "m", n=2, retries=1, timeout_s=1.0)


async def test_fill_samples_only_touches_cases_without_samples() -> None:
    from guardrail_server.llm_sampler import fill_samples

    cases = [Case(response="r", question="Q one?"), Case(response="r", question="Q two?", samples=("kept",)),
             Case(response="r")]
    with FakeOpenAI(lambda body: f"sampled {body['seed']}") as fake:
        filled, failures = await fill_samples(cases, fake.url, "sut", n=3, temperature=0.7)
    assert failures == ["", "", ""]
    assert filled[0].samples == ("sampled 0", "sampled 1", "sampled 2")
    assert filled[1].samples == ("kept",) and filled[2].samples == ()
    assert len(fake.requests) == 3
