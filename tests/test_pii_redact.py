"""guardrail_invariants.pii.redact: what the review store stores instead of raw text."""

from __future__ import annotations

import asyncio

from guardrail_invariants.pii import get_analyzer, redact

TEXT = (
    "Customer Marta Kowalczyk (marta.kowalczyk@example.org, +1 (212) 555-0187) paid with 4111 1111 1111 1111 "
    "from 192.168.10.4; refund to IBAN DE89 3704 0044 0532 0130 00, social security number 536-22-8417. "
    "She lives in Rotterdam, at 221B Baker Street."
)
RAW = [
    "Kowalczyk", "marta.kowalczyk@example.org", "555-0187", "4111 1111 1111 1111", "192.168.10.4",
    "DE89 3704 0044 0532 0130 00", "536-22-8417", "Rotterdam", "Baker Street",
]


def test_redact_replaces_every_value_with_its_type() -> None:
    redacted = redact(TEXT, pattern_only=False)
    for raw in RAW:
        assert raw not in redacted
    for tag in ("<PERSON>", "<EMAIL_ADDRESS>", "<PHONE_NUMBER>", "<CREDIT_CARD>", "<IP_ADDRESS>", "<IBAN_CODE>",
                "<US_SSN>", "<LOCATION>", "<STREET_ADDRESS>"):
        assert tag in redacted
    assert redacted.startswith("Customer ")  # only the value goes, the sentence stays readable
    assert "paid with" in redacted and "refund to IBAN" in redacted


def test_redact_keeps_an_e_mail_whole() -> None:
    assert redact("write to marta.kowalczyk@example.org today", pattern_only=False) == "write to <EMAIL_ADDRESS> today"


def test_redact_limited_to_given_entities() -> None:
    redacted = redact(TEXT, entities=["EMAIL_ADDRESS"], pattern_only=False)
    assert "<EMAIL_ADDRESS>" in redacted
    assert "4111 1111 1111 1111" in redacted and "Kowalczyk" in redacted


def test_redact_pattern_only_leaves_names_but_removes_patterns() -> None:
    redacted = redact(TEXT, pattern_only=True)
    assert "<CREDIT_CARD>" in redacted and "<EMAIL_ADDRESS>" in redacted
    assert "Kowalczyk" in redacted


def test_redact_shares_the_loaded_engine_and_handles_empty_text() -> None:
    analyzer = get_analyzer(False)
    assert get_analyzer(False) is analyzer
    assert redact("") == ""
    assert redact("   ") == "   "
    assert redact("nothing personal here") == "nothing personal here"


async def test_redact_from_async_code_via_a_thread() -> None:
    results = await asyncio.gather(*(asyncio.to_thread(redact, TEXT) for _ in range(4)))
    assert len(set(results)) == 1 and "<CREDIT_CARD>" in results[0]
