"""PII on ordinary text (issue 23, item 7), with the real Presidio + spaCy analyzer: a European address and a date of
birth are detected (as leaks and in redaction), a city next to a public building's address is not a leak, public places
are labelled LOCATION (not PERSON), and the review store keeps them readable when the case's passage is public."""

from __future__ import annotations

import pytest

from guardrail_invariants.pii import redact
from guardrail_invariants.pii.places import is_place_name
from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions
from guardrail_invariants.types import Case, Outcome, Passage, Verdict
from guardrail_server.review.records import case_record

RECORD = "Client file 2291: Jeanne Moreau, 17 Rue des Lilas, Lyon, born 12 March 1987. Prefers e-mail."


@pytest.fixture(scope="module")
async def inv() -> PiiBoundaryInvariant:
    invariant = PiiBoundaryInvariant(1.0, PiiBoundaryOptions())
    await invariant.load()
    return invariant


def leaked(case: Case, verdict: Verdict) -> list[tuple[str, str]]:
    return [(case.response[f.start:f.end], str(f.evidence["entity_type"])) for f in verdict.findings]


async def test_a_european_address_and_a_date_of_birth_are_leaks(inv: PiiBoundaryInvariant) -> None:
    case = Case(response="She lives at 17 Rue des Lilas and was born 12 March 1987.", question="Where does she live?",
                context=(Passage("crm-1", RECORD),))
    verdict = await inv.check(case)
    assert verdict.outcome is Outcome.FAIL
    assert sorted(leaked(case, verdict)) == [("12 March 1987", "DATE_OF_BIRTH"), ("17 Rue des Lilas", "STREET_ADDRESS")]


def test_redaction_removes_the_address_and_the_date_of_birth() -> None:
    out = redact(RECORD, pattern_only=False)
    assert "Rue des Lilas" not in out and "1987" not in out and "Moreau" not in out
    assert "<STREET_ADDRESS>" in out and "born <DATE_OF_BIRTH>" in out and "<PERSON>" in out
    assert "<PERSON>" not in out.split("<STREET_ADDRESS>")[1]  # "Lyon" is a place, not a person
    for text, address in (("Write to 3, via della Spiga, Milano.", "3, via della Spiga"),
                          ("Office: 8 Calle Mayor, Madrid.", "8 Calle Mayor"),
                          ("DOB: 1987-03-12", "1987-03-12"), ("Date of birth: 12/03/1987", "12/03/1987")):
        assert address not in redact(text, pattern_only=False), text


async def test_a_city_next_to_a_public_buildings_address_is_not_a_leak(inv: PiiBoundaryInvariant) -> None:
    """The WiCE case that flagged 'Lansing': the passage is the address line of a state office building."""
    case = Case(response="Today the Michigan Department of Transportation building in Lansing is named after him.",
                question="", context=(Passage("20", "## G. Mennen Williams Building"),
                                      Passage("21", "Address:525 W. Ottawa St., Lansing")))
    verdict = await inv.check(case)
    assert verdict.outcome is Outcome.PASS, leaked(case, verdict)
    # a phone number beside the city still ties it: a customer's city in a record is theirs
    crm = Case(response="She is from Lansing.", question="Where is she from?",
               context=(Passage("t1", "Ticket 7: Ann Dole, +1 517 555 0142, from Lansing."),))
    assert ("Lansing", "LOCATION") in leaked(crm, await inv.check(crm))


def test_public_places_are_labelled_locations_not_people() -> None:
    assert redact("How tall is the Louvre?", pattern_only=False) == "How tall is the <LOCATION>?"
    assert redact("She moved to Lyon in 2001.", pattern_only=False) == "She moved to <LOCATION> in 2001."
    assert "<PERSON>" not in redact("The Louvre is in Paris, France.", pattern_only=False)
    # a place name inside a person's name stays a person; a title before a name is not a facility
    assert redact("Sherry Lansing ran the studio.", pattern_only=False) == "<PERSON> ran the studio."
    assert is_place_name("Lyon") and is_place_name("Lansing") and is_place_name("the Netherlands")
    assert not is_place_name("Moreau")


def test_the_review_record_keeps_public_places_readable_when_a_passage_is_public() -> None:
    question, response = "How tall is the Eiffel Tower in Paris?", "Gustave Eiffel's tower in Paris is 330 m tall."
    passage = "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, built by Gustave Eiffel's company."
    public = case_record(Case(response=response, question=question,
                              context=(Passage("w", passage, sensitivity="public"),)), redact)
    assert public["question"] == question  # not "How tall is <LOCATION>?"
    assert "Paris" in public["response"] and "Paris, France" in public["context"][0]["text"]
    assert "Gustave" not in public["response"]  # people are still redacted
    unmarked = case_record(Case(response=response, question=question, context=(Passage("w", passage),)), redact)
    assert "Paris" not in unmarked["question"] and "<LOCATION>" in unmarked["question"]
