"""Normalization and the normalized lookup behind provenance (no engine needed)."""

from __future__ import annotations

import pytest

from guardrail_invariants.pii.index import LruCache, TextIndex
from guardrail_invariants.pii.normalize import normalize, phone_key, trim_name


@pytest.mark.parametrize(
    ("entity", "a", "b"),
    [
        ("PHONE_NUMBER", "+1 (212) 555-0187", "212.555.0187"),
        ("EMAIL_ADDRESS", "Jo.Kim@Example.ORG", "jo.kim@example.org"),
        ("CREDIT_CARD", "4111-1111-1111-1111", "4111 1111 1111 1111"),
        ("IBAN_CODE", "de89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("IP_ADDRESS", "010.001.002.003", "10.1.2.3"),
        ("LOCATION", "  New   York ", "new york"),
        ("STREET_ADDRESS", "221B Baker Street", "221b baker st."),
    ],
)
def test_same_value_same_form(entity: str, a: str, b: str) -> None:
    assert normalize(entity, a) == normalize(entity, b) is not None


def test_phone_numbers_become_e164_and_match_national_forms() -> None:
    assert normalize("PHONE_NUMBER", "(212) 555-0187") == "+12125550187"
    uk = normalize("PHONE_NUMBER", "+44 20 7946 0958")
    assert uk == "+442079460958"
    assert TextIndex("call 020 7946 0958 today").contains("PHONE_NUMBER", uk)
    assert phone_key(uk) == "2079460958"


@pytest.mark.parametrize(
    ("entity", "value", "text", "found"),
    [
        ("CREDIT_CARD", "4111111111111111", "card: 4111 1111 1111 1111.", True),
        ("US_SSN", "536228417", "ssn 536-22-8417", True),
        ("US_SSN", "536228417", "account 1536228417", False),
        ("EMAIL_ADDRESS", "jo@example.org", "mail JO@EXAMPLE.ORG.", True),
        ("EMAIL_ADDRESS", "jo@example.org", "mail bojo@example.org", False),
        ("IP_ADDRESS", "10.1.2.3", "from 10.1.2.30", False),
        ("IP_ADDRESS", "10.1.2.3", "from 10.1.2.3.", True),
        ("LOCATION", "york", "New Yorker magazine", False),
        ("IBAN_CODE", "DE89370400440532013000", "IBAN DE89 3704 0044 0532 0130 00", True),
        ("PHONE_NUMBER", "+12125550187", "ref 2125550199", False),
    ],
)
def test_lookup(entity: str, value: str, text: str, found: bool) -> None:
    assert TextIndex(text).contains(entity, value) is found


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Customer Jane Doe", "Jane Doe"),
        ("Dear Dr. Jane Doe", "Jane Doe"),
        ("Jane Doe's", "Jane Doe"),
        ("Mr. Nekrasov", "Nekrasov"),
        ("Jane Q. Doe", "Jane Q. Doe"),
        ("jane doe", "jane doe"),
        ("Jane Doe called", "Jane Doe"),
    ],
)
def test_person_spans_are_trimmed(text: str, name: str) -> None:
    trimmed = trim_name(text, 0, len(text))
    assert trimmed is not None and text[trimmed.start : trimmed.end] == name


def test_name_forms_drop_initials_and_titles_only_names_are_none() -> None:
    assert trim_name("Jane Q. Doe", 0, 11).forms() == ["jane q. doe", "jane doe"]  # type: ignore[union-attr]
    assert trim_name("Dear Customer", 0, 13) is None


def test_lru_cache_evicts_oldest() -> None:
    cache: LruCache[str, int] = LruCache(2)
    for key in "abc":
        cache.get_or_build(key, lambda: 1)
    assert "a" not in cache and "c" in cache and len(cache) == 2
