"""CheckGeneration with the real models on a real gRPC server: streamed sentences are the unary splitter's, the final
verdict is unary Check's (tricky texts cut in awkward places, ~30 dev cases), a BLOCK arrives while the model is
still generating, and a PII leak is reported before the sentence that holds it is complete."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from guardrail_client import AsyncGuardrailClient, Decision
from guardrail_client.generation import GenerationResult, LeakResult, SentenceResult
from guardrail_client.results import CheckResult
from guardrail_invariants.citations import claim_sentences
from guardrail_invariants.types import Passage
from tests.conftest import make_config, running_server
from tests.test_pii_boundary import SENTENCES, VALUES, leak_case

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
CONTEXT = [
    {"id": "doc-1", "text": "The Eiffel Tower is 330 metres tall. It opened on 31 March 1889 for the World's Fair. "
                            "Gustave Eiffel's company built it; the iron frame weighs 7,300 tonnes."},
    {"id": "doc-2", "text": "The tower was the tallest man-made structure in the world until 1930. Its top floor "
                            "is 276 m above the ground, and 3.5 million people visited it in 2021."},
]
TRICKY = ("The Eiffel Tower is 330 m tall [doc-1]. It opened in 1889 [1]. Dr. Eiffel's firm built it, and 3.5 "
          "million people visited it in 2021 [2]. See https://example.com/eiffel.tower for more. It is in "
          "Berlin [3].")


def tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


def comparable(result: CheckResult) -> dict[str, Any]:
    """Everything of a verdict but the request id and the timings."""
    return {"decision": result.decision, "results": [
        {"invariant": r.invariant, "outcome": r.outcome, "score": r.score, "threshold": r.threshold,
         "judge": r.judge, "error": r.error, "findings": r.findings, "findings_omitted": r.findings_omitted,
         "judges_disagree": r.judges_disagree, "coverage": (getattr(r, "checked", ()), getattr(r, "unchecked", ())),
         "judges": [(j.judge, j.family, j.score, j.threshold, j.passed, j.error, j.disagreement) for j in r.judges]}
        for r in result.results]}


async def stream(client: AsyncGuardrailClient, pieces: list[str], **kwargs: Any) -> list[Any]:
    return [e async for e in client.check_generation(pieces, **kwargs)]


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[str]:
    async with running_server(make_config(overrides={"streaming.idle_timeout_s": 20.0})) as (_, address):
        yield address


@pytest.fixture(scope="module")
async def blocking_target() -> AsyncIterator[str]:
    invariants = {"entailment": {"on_fail": "block"}, "reference_integrity": {}, "pii_boundary": {"on_fail": "block"}}
    async with running_server(make_config(invariants)) as (_, address):
        yield address


async def assert_same_as_unary(client: AsyncGuardrailClient, text: str, pieces: list[str], context: list[Any],
                               question: str = "") -> None:
    events = await stream(client, pieces, context=context, question=question)
    unary = await client.check(text, context=context, question=question, timeout=60)
    passages = [Passage(p["id"], p["text"]) if isinstance(p, dict) else Passage(str(i), p)
                for i, p in enumerate(context, start=1)]
    want = [(s.start, s.end) for s in claim_sentences(text, passages)]
    got = [(e.start, e.end) for e in events if isinstance(e, SentenceResult)]
    assert got == want, (text[:80], got, want)
    final = events[-1]
    assert isinstance(final, GenerationResult) and not final.cut
    assert comparable(final.result) == comparable(unary), text[:80]


async def test_a_tricky_text_cut_anywhere_gives_the_unary_sentences_and_verdict(target: str) -> None:
    marks = [TRICKY.index(s) + k for s, k in (("[doc-1]", 3), ("1889", 2), ("3.5", 2), ("Dr.", 2),
                                               ("example.com", 7), ("Berlin", 3), ("[3]", 2))]
    schedules = [tokens(TRICKY), list(TRICKY)] + [[TRICKY[:m], TRICKY[m:]] for m in marks]
    async with AsyncGuardrailClient(target, timeout=60) as client:
        for pieces in schedules:
            await assert_same_as_unary(client, TRICKY, pieces, CONTEXT, "Tell me about the Eiffel Tower.")


async def test_dev_cases_streamed_give_the_unary_verdict(target: str) -> None:
    """15 HaluEval QA and 15 WiCE cases, each response streamed token by token; wice responses get their claim
    repeated with a second sentence so more than one sentence is checked live."""
    rng = random.Random(22)
    halueval = [json.loads(line) for line in (DEV / "halueval_qa.jsonl").open()]
    wice = [json.loads(line) for line in (DEV / "wice_claims.jsonl").open()]
    cases = []
    for row in rng.sample(halueval, 15):
        cases.append((row["response"], [row["context"]], row["question"]))
    for row in rng.sample(wice, 15):
        context = row["context"] if isinstance(row["context"], list) else [row["context"]]
        cases.append((row["response"] + " This was reported in 2019 [1].", context[:20], ""))
    async with AsyncGuardrailClient(target, timeout=60) as client:
        gate = asyncio.Semaphore(3)

        async def one(case: tuple[str, list[Any], str]) -> None:
            text, context, question = case
            async with gate:
                await assert_same_as_unary(client, text, tokens(text), context, question)

        await asyncio.gather(*(one(c) for c in cases))


async def test_an_unsupported_sentence_blocks_while_the_model_is_still_generating(blocking_target: str) -> None:
    text = ("The Eiffel Tower is made of chocolate and was built in 1650. It is painted bright green every spring. "
            "Visitors can ride a water slide from the top. The slide ends in the Seine.")
    sent: list[str] = []

    async def model() -> AsyncIterator[str]:
        for tok in tokens(text):
            sent.append(tok)
            yield tok
            await asyncio.sleep(0.05)  # 20 tokens per second

    async with AsyncGuardrailClient(blocking_target, timeout=60) as client:
        events = await stream(client, model(), context=CONTEXT)  # type: ignore[arg-type]
    block = next(e for e in events if isinstance(e, SentenceResult) and e.decision is Decision.BLOCK)
    assert block.index == 0 and block.result("entailment").outcome.name == "FAIL"
    final = events[-1]
    assert isinstance(final, GenerationResult) and final.cut and final.blocked
    assert len(sent) < len(tokens(text))  # cut before the model finished


async def test_a_leak_is_reported_before_its_sentence_is_complete(target: str) -> None:
    """Mid-sentence: the client sends up to the word after the entity, then waits — the leak verdict comes before
    the rest of the sentence is even sent, with the span to hold back."""
    for entity in ("EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "CREDIT_CARD"):
        case, value = leak_case(entity)
        lead = "Thanks for waiting. " + SENTENCES[entity].format(value).rstrip(".") + " and"
        rest = " we will call back about it tomorrow."
        leaked = asyncio.Event()
        async with AsyncGuardrailClient(target, timeout=60) as client:
            context = [{"id": p.id, "text": p.text, "sensitivity": p.sensitivity or "unspecified"}
                       for p in case.context]

            async def model() -> AsyncIterator[str]:
                for tok in tokens(lead):
                    yield tok
                yield " "
                await asyncio.wait_for(leaked.wait(), 20)  # nothing more is sent until the leak is reported
                for tok in tokens(rest):
                    yield tok

            events = []
            async for event in client.check_generation(model(), context=context, question=case.question):
                events.append(event)
                if isinstance(event, LeakResult) and event.findings:
                    leaked.set()
        leak = next(e for e in events if isinstance(e, LeakResult) and e.findings)
        text = lead + " " + rest
        (finding,) = leak.findings
        assert finding.kind == "pii_leak" and value.lower() in text[finding.start:finding.end].lower(), entity
        sentence = next(e for e in events if isinstance(e, SentenceResult) and e.start <= finding.start < e.end)
        assert events.index(leak) < events.index(sentence)
        assert leak.checked_until <= finding.start or leak.checked_until >= finding.end


async def test_every_pii_boundary_leak_case_is_reported_before_its_sentence_verdict(target: str) -> None:
    """The leak cases of tests/test_pii_boundary.py (one per default entity type, the value at the end of its
    sentence), streamed token by token with another sentence after: each leak comes before its sentence's verdict."""
    async with AsyncGuardrailClient(target, timeout=60) as client:
        for entity in VALUES:
            case, value = leak_case(entity)
            text = case.response + " Is there anything else I can do for you today?"
            context = [{"id": p.id, "text": p.text, "sensitivity": p.sensitivity or "unspecified"}
                       for p in case.context]
            events = await stream(client, tokens(text), context=context, question=case.question)
            leaks = [(events.index(e), f) for e in events if isinstance(e, LeakResult) for f in e.findings]
            assert leaks, entity
            for at, finding in leaks:
                sentence = next(i for i, e in enumerate(events)
                                if isinstance(e, SentenceResult) and e.start <= finding.start < e.end)
                assert at < sentence, entity
            final = events[-1]
            assert final.result.result("pii_boundary").outcome.name == "FAIL", entity


async def test_a_blocking_leak_cuts_the_stream_before_its_sentence_ends(blocking_target: str) -> None:
    case, value = leak_case("EMAIL_ADDRESS")
    text = "Thanks for waiting. You can write to " + value + " and she will answer within a day or two."
    context = [{"id": p.id, "text": p.text, "sensitivity": p.sensitivity or "unspecified"} for p in case.context]
    sent: list[str] = []

    async def model() -> AsyncIterator[str]:
        for tok in tokens(text):
            sent.append(tok)
            yield tok
            await asyncio.sleep(0.05)

    async with AsyncGuardrailClient(blocking_target, timeout=60) as client:
        events = await stream(client, model(), context=context)  # type: ignore[arg-type]
    leak = next(e for e in events if isinstance(e, LeakResult) and e.findings)
    assert leak.decision is Decision.BLOCK
    final = events[-1]
    assert final.cut and final.result.results[0].invariant == "pii_boundary"
    assert "day or two." not in "".join(sent)  # the sentence with the address never got to its end
