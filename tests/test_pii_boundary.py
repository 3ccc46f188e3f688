"""pii_boundary on the real Presidio analyzer with the real spaCy model (loaded once per test session)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time

import pytest
import structlog

from guardrail_invariants.base import InvariantOptions
from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions
from guardrail_invariants.registry import build_invariant, default_threshold
from guardrail_invariants.types import Case, Outcome, Passage, Verdict

FILLER = Passage("doc-1", "Our refund policy allows returns within thirty days of delivery for unused items.")

# entity type -> (as written in the context, as written in the response)
VALUES: dict[str, tuple[str, str]] = {
    "EMAIL_ADDRESS": ("marta.kowalczyk@example.org", "MARTA.KOWALCZYK@EXAMPLE.ORG"),
    "PHONE_NUMBER": ("+1 (212) 555-0187", "212.555.0187"),
    "CREDIT_CARD": ("4111 1111 1111 1111", "4111-1111-1111-1111"),
    "IBAN_CODE": ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
    "US_SSN": ("536-22-8417", "536-22-8417"),  # not a Presidio-rejected sample SSN such as 078-05-1120
    "IP_ADDRESS": ("192.168.10.4", "192.168.10.4"),
    "PERSON": ("Marta Kowalczyk", "Marta Kowalczyk"),
    "LOCATION": ("Rotterdam", "Rotterdam"),
    "STREET_ADDRESS": ("221B Baker Street", "221b Baker St."),
}
SENTENCES: dict[str, str] = {
    "EMAIL_ADDRESS": "Her e-mail address is {}.",
    "PHONE_NUMBER": "Her phone number is {}.",
    "CREDIT_CARD": "The order was paid with credit card {}.",
    "IBAN_CODE": "Refunds go to IBAN {}.",
    "US_SSN": "Her social security number is {}.",
    "IP_ADDRESS": "The login came from IP address {}.",
    "PERSON": "The complaint was filed by {} last week.",
    "LOCATION": "She lives in {}.",
    "STREET_ADDRESS": "The parcel goes to {} tomorrow.",
}


def leak_case(entity: str, question: str = "Where is my refund?") -> tuple[Case, str]:
    in_context, in_response = VALUES[entity]
    # A support ticket: private data, so its names and places count like its phone numbers (marked, as a CRM
    # integration would mark it; unmarked passages need a contact identifier next to a name, see test_pii_defaults).
    context = (FILLER, Passage("doc-3", "Ticket 7. " + SENTENCES[entity].format(in_context), sensitivity="private"))
    response = "Thanks for waiting. " + SENTENCES[entity].format(in_response)
    return Case(response=response, question=question, context=context), in_response


@pytest.fixture(scope="session")
async def spacy_inv() -> PiiBoundaryInvariant:
    inv = build_invariant("pii_boundary", default_threshold("pii_boundary"), {}, zoo=None)
    await inv.load()
    return inv


@pytest.fixture(scope="session")
async def pattern_inv() -> PiiBoundaryInvariant:
    inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(pattern_only=True), zoo=None)
    await inv.load()
    return inv


async def make(**options: object) -> PiiBoundaryInvariant:
    inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(**options), zoo=None)
    await inv.load()
    return inv


def leaks(verdict: Verdict) -> list:
    return [f for f in verdict.findings if f.kind == "pii_leak"]


def verdict_text(verdict: Verdict) -> str:
    return json.dumps(dataclasses.asdict(verdict), default=str)


def raw_forms(value: str) -> set[str]:
    """The value and the forms a careless implementation might echo (digits only, case-folded, E.164)."""
    digits = re.sub(r"\D", "", value)
    forms = {value, value.lower(), value.upper(), value.replace(" ", "")}
    if len(digits) >= 6:
        forms |= {digits, "+" + digits, "+1" + digits}
    return forms


@pytest.mark.parametrize("entity", list(VALUES))
async def test_leak_is_caught_for_each_default_type(spacy_inv: PiiBoundaryInvariant, entity: str) -> None:
    case, value = leak_case(entity)
    verdict = await spacy_inv.check(case)
    assert verdict.outcome is Outcome.FAIL
    found = leaks(verdict)
    assert [f.evidence["entity_type"] for f in found] == [entity]
    leak = found[0]
    assert case.response[leak.start : leak.end] == value
    assert leak.passage_id == "doc-3"
    assert leak.message == f"<{entity}> from passage doc-3 leaked"
    assert 0.0 < leak.evidence["detector_score"] <= 1.0
    assert verdict.score < verdict.threshold


@pytest.mark.parametrize("entity", list(VALUES))
async def test_own_data_echoed_back_is_no_leak(spacy_inv: PiiBoundaryInvariant, entity: str) -> None:
    in_context, _ = VALUES[entity]
    case, _ = leak_case(entity, question=f"Hello, about {in_context}: where is my refund?")
    verdict = await spacy_inv.check(case)
    assert verdict.outcome is Outcome.PASS, verdict.details
    assert verdict.score == 1.0
    assert verdict.details["own_data"] >= 1


@pytest.mark.parametrize(
    ("entity", "in_context", "in_response"),
    [
        ("PHONE_NUMBER", "(212) 555-0187", "+1 212 555 0187"),
        ("PHONE_NUMBER", "+44 20 7946 0958", "020 7946 0958"),
        ("EMAIL_ADDRESS", "Marta.Kowalczyk@Example.org", "marta.kowalczyk@example.org"),
        ("CREDIT_CARD", "4111111111111111", "4111 1111 1111 1111"),
        ("IBAN_CODE", "de89370400440532013000", "DE89 3704 0044 0532 0130 00"),
        ("PERSON", "MARTA   KOWALCZYK", "Marta Kowalczyk"),
    ],
)
async def test_same_value_written_differently_still_matches(
    spacy_inv: PiiBoundaryInvariant, entity: str, in_context: str, in_response: str
) -> None:
    context = (Passage("crm-9", "Ticket 7. " + SENTENCES[entity].format(in_context), sensitivity="private"),)
    case = Case(response=SENTENCES[entity].format(in_response), question="Any news?", context=context)
    verdict = await spacy_inv.check(case)
    assert [f.evidence["entity_type"] for f in leaks(verdict)] == [entity]


@pytest.mark.parametrize("entity", list(VALUES))
async def test_value_only_in_question_is_no_leak(spacy_inv: PiiBoundaryInvariant, entity: str) -> None:
    in_context, in_response = VALUES[entity]
    case = Case(
        response="Thanks for waiting. " + SENTENCES[entity].format(in_response),
        question=f"Please update my record, it is {in_context}.",
        context=(FILLER,),
    )
    verdict = await spacy_inv.check(case)
    assert verdict.outcome is Outcome.PASS
    assert leaks(verdict) == []


async def test_value_not_in_context_is_no_leak(spacy_inv: PiiBoundaryInvariant) -> None:
    response = "Call us on 212-555-0187 or write to help@shop-example.com."
    case = Case(response=response, question="How?", context=(FILLER,))
    verdict = await spacy_inv.check(case)
    assert verdict.outcome is Outcome.PASS
    assert verdict.details["unsourced"] == 2


async def test_a_different_value_of_the_same_type_is_no_leak(spacy_inv: PiiBoundaryInvariant) -> None:
    context = (Passage("crm-1", "Her phone number is +1 (212) 555-0187 and she lives in Rotterdam."),)
    case = Case(response="His phone number is +1 (212) 555-0199.", question="Any news?", context=context)
    assert leaks(await spacy_inv.check(case)) == []


@pytest.mark.parametrize("entity", list(VALUES))
async def test_raw_value_is_nowhere_in_the_verdict(spacy_inv: PiiBoundaryInvariant, entity: str) -> None:
    case, value = leak_case(entity)
    verdict = await spacy_inv.check(case)
    assert leaks(verdict)
    text = verdict_text(verdict)
    for form in raw_forms(value) | raw_forms(VALUES[entity][0]):
        assert form not in text
    for token in VALUES[entity][0].split():
        if len(token) > 3:
            assert token not in text and token.lower() not in text


async def test_nothing_of_the_value_reaches_logs(
    spacy_inv: PiiBoundaryInvariant, caplog: pytest.LogCaptureFixture
) -> None:
    from guardrail_invariants.pii import redact

    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as structured:
        for entity in VALUES:
            case, _ = leak_case(entity)
            await spacy_inv.check(case)
            redact(case.context[1].text)
        await make(entities=("PERSON", "EMAIL_ADDRESS"), pattern_only=True)  # logs a warning (no NER for PERSON)
    logged = "\n".join(r.getMessage() for r in caplog.records) + json.dumps(structured, default=str)
    assert caplog.records, "expected at least the warning about unavailable types"
    for in_context, in_response in VALUES.values():
        for form in raw_forms(in_context) | raw_forms(in_response):
            assert form not in logged


async def test_person_span_is_trimmed_to_the_name(spacy_inv: PiiBoundaryInvariant) -> None:
    context = (Passage("crm-2", "Customer Marta Kowalczyk asked for a refund of the blender.", sensitivity="private"),)
    case = Case(response="Customer Marta Kowalczyk asked for a refund.", question="What happened?", context=context)
    (leak,) = leaks(await spacy_inv.check(case))
    assert case.response[leak.start : leak.end] == "Marta Kowalczyk"


async def test_partial_name_of_a_person_in_the_context_is_a_leak(spacy_inv: PiiBoundaryInvariant) -> None:
    context = (Passage("crm-4", "The complaint was filed by Marta J. Kowalczyk from the third floor.",
                       sensitivity="private"),)
    case = Case(response="Marta Kowalczyk filed the complaint.", question="Who complained?", context=context)
    (leak,) = leaks(await spacy_inv.check(case))
    assert leak.evidence["match"] == "partial_name"
    assert leak.passage_id == "crm-4"


async def test_partial_names_can_be_switched_off() -> None:
    inv = await make(partial_names=False)
    context = (Passage("crm-4", "The complaint was filed by Marta J. Kowalczyk from the third floor.",
                       sensitivity="private"),)
    case = Case(response="Marta Kowalczyk filed the complaint.", question="Who complained?", context=context)
    assert leaks(await inv.check(case)) == []


async def test_public_figures_are_not_leaks() -> None:
    inv = await make(public_figures=("Barack Obama",))
    context = (Passage("news-1", "Barack Obama visited Rotterdam in 2015."),)
    case = Case(response="Obama visited the city in 2015.", question="Who visited?", context=context)
    verdict = await inv.check(case)
    assert leaks(verdict) == []
    assert verdict.details["public"] == 1


async def test_names_from_public_sources_are_not_leaks_but_private_ones_are() -> None:
    inv = await make(public_sources=("https://en.wikipedia.org/*",))
    public = Passage(
        "w1", "Marta Kowalczyk is a Polish chemist born in Rotterdam.", url="https://en.wikipedia.org/wiki/X"
    )
    private = Passage("crm-1", "Ticket from Marta Kowalczyk: phone +1 (212) 555-0187.")
    response = "Marta Kowalczyk was born in Rotterdam; her phone number is 212-555-0187."
    only_public = await inv.check(Case(response=response, question="Tell me", context=(public,)))
    assert leaks(only_public) == []
    both = await inv.check(Case(response=response, question="Tell me", context=(public, private)))
    assert sorted(f.evidence["entity_type"] for f in leaks(both)) == ["PERSON", "PHONE_NUMBER"]
    assert all(f.passage_id == "crm-1" for f in leaks(both))


async def test_quoted_people_can_be_declared_public() -> None:
    context = (Passage("blog-1", '"Quality is never an accident," said Marta Kowalczyk at the opening.'),)
    case = Case(response="Marta Kowalczyk said quality is never an accident.", question="Quote?", context=context)
    assert leaks(await (await make(quoted_names_are_public=True, unmarked_passages="private")).check(case)) == []
    assert len(leaks(await (await make(unmarked_passages="private")).check(case))) == 1


async def test_allow_list_matches_normalized_values() -> None:
    inv = await make(allow_list=("+1 800 555 0100", "Support@Shop-Example.com"))
    context = (Passage("faq", "Call +1 (800) 555-0100 or write to support@shop-example.com."),)
    case = Case(response="Call 800-555-0100 or SUPPORT@SHOP-EXAMPLE.COM.", question="How?", context=context)
    verdict = await inv.check(case)
    assert leaks(verdict) == []
    assert verdict.details["allowed"] == 2


async def test_noisy_types_yield_to_precise_ones() -> None:
    inv = await make(entities=("EMAIL_ADDRESS", "CREDIT_CARD", "URL", "DATE_TIME", "PERSON"))
    context = (Passage("crm-1", "Paid with 4111 1111 1111 1111 by marta.kowalczyk@example.org."),)
    case = Case(response="Card 4111 1111 1111 1111, e-mail marta.kowalczyk@example.org.", question="?", context=context)
    types = sorted(f.evidence["entity_type"] for f in leaks(await inv.check(case)))
    assert types == ["CREDIT_CARD", "EMAIL_ADDRESS"]


async def test_presidio_rejects_well_known_sample_ssns(spacy_inv: PiiBoundaryInvariant) -> None:
    """078-05-1120 (the Woolworth wallet card) is invalidated as US_SSN by Presidio; that is why the tests use
    other numbers. (Its digits may still be taken for a phone number, which is then reported as such.)"""
    context = (Passage("crm-1", "Her social security number is 078-05-1120."),)
    case = Case(response="Her social security number is 078-05-1120.", question="?", context=context)
    verdict = await spacy_inv.check(case)
    assert "US_SSN" not in verdict.details["leaks_by_type"]


async def test_pattern_only_mode_catches_patterns_without_spacy(pattern_inv: PiiBoundaryInvariant) -> None:
    assert pattern_inv._analyzer.nlp_engine.engine_name == "no_op"
    case, _ = leak_case("PHONE_NUMBER")
    verdict = await pattern_inv.check(case)
    assert verdict.details["mode"] == "pattern"
    assert [f.evidence["entity_type"] for f in leaks(verdict)] == ["PHONE_NUMBER"]
    person_case, _ = leak_case("PERSON")
    assert leaks(await pattern_inv.check(person_case)) == []


async def test_score_is_product_of_non_leak_chances(spacy_inv: PiiBoundaryInvariant) -> None:
    context = (Passage("crm-1", "Marta Kowalczyk, phone +1 (212) 555-0187."),)
    case = Case(response="Marta Kowalczyk can be called at 212 555 0187.", question="?", context=context)
    verdict = await spacy_inv.check(case)
    expected = 1.0
    for f in leaks(verdict):
        expected *= 1.0 - f.evidence["detector_score"]
    assert len(leaks(verdict)) == 2
    assert verdict.score == pytest.approx(expected, abs=1e-3)
    lenient = PiiBoundaryInvariant(0.0, spacy_inv.options, zoo=None)
    await lenient.load()
    assert (await lenient.check(case)).outcome is Outcome.PASS


async def test_context_passages_are_indexed_once(spacy_inv: PiiBoundaryInvariant) -> None:
    inv = await make()
    case, _ = leak_case("EMAIL_ADDRESS")
    await inv.check(case)
    misses = inv._passages.misses
    await inv.check(case)
    assert inv._passages.misses == misses
    assert inv._passages.hits >= len(case.context)


async def test_check_does_not_block_the_event_loop(spacy_inv: PiiBoundaryInvariant) -> None:
    response = " ".join(["Marta Kowalczyk wrote from Rotterdam about the blender she bought."] * 50)
    case = Case(response=response, question="?", context=(FILLER,))
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await spacy_inv.check(case)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed > 0.05, "the check must do real work for this test to mean anything"
    # Run on the loop, the check would leave no tick during it. In a worker thread the loop keeps ticking, but not
    # evenly: a single long regex match in Presidio holds the GIL (one stall of 185 ms seen in a 266 ms check), so
    # the assertion is on the ticks, not on the longest gap.
    assert len(gaps) >= 5 and sum(g < 0.05 for g in gaps) >= 3, gaps


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        PiiBoundaryOptions(entities=("phone",))
    with pytest.raises(ValueError):
        PiiBoundaryOptions(score_thresholds={"PERSON": 1.5})
    with pytest.raises(ValueError):
        PiiBoundaryOptions(no_such_option=True)  # type: ignore[call-arg]
    merged = PiiBoundaryOptions(score_thresholds={"PHONE_NUMBER": 0.5}).score_thresholds
    assert merged["PHONE_NUMBER"] == 0.5 and merged["US_BANK_NUMBER"] == 0.6
    assert issubclass(PiiBoundaryInvariant.Options, InvariantOptions)
    assert default_threshold("pii_boundary") == 1.0
