"""pii_boundary's defaults, through the library API, the config loader and gRPC, on real Presidio and spaCy:

- names and places of public text are not leaks (HaluEval's grounded answers), unless a contact identifier stands next
  to them in the passage, or the passage is marked private (on the wire, or by `private_sources`);
- a typo in an entity type is a start-up error naming the key, not a check that silently checks nothing;
- the user's own names in the question are not leaks when NER joins two adjacent names into one span;
- e-mail addresses on any top-level domain are detected and redacted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.cli import main
from guardrail_server.client import AsyncGuardrailClient
from guardrail_invariants.pii.detect import KNOWN_ENTITIES
from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions
from guardrail_invariants.types import Case, Outcome, Passage, Verdict
from tests.conftest import make_config, running_server

HALUEVAL = Path("/work/shared/data/dev/halueval_qa.jsonl")
RECORD = "The complaint was filed by Marta Kowalczyk from Rotterdam last week."
PHONE = "+1 (212) 555-0187"


@pytest.fixture(scope="module")
async def inv() -> PiiBoundaryInvariant:
    invariant = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(), zoo=None)
    await invariant.load()
    return invariant


async def make(**options: object) -> PiiBoundaryInvariant:
    invariant = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(**options), zoo=None)
    await invariant.load()
    return invariant


def leaked(case: Case, verdict: Verdict) -> list[tuple[str, str]]:
    return [(case.response[f.start : f.end], f.evidence["entity_type"]) for f in verdict.findings]


def grounded_halueval(n: int) -> list[Case]:
    rows = [json.loads(line) for line in HALUEVAL.read_text().splitlines()]
    picked = [r for r in rows if r["label"] == "supported"][:n]
    return [Case(response=r["response"], question=r["question"], context=(Passage("1", r["context"]),)) for r in picked]


async def test_grounded_encyclopedia_answers_are_not_flagged(inv: PiiBoundaryInvariant) -> None:
    cases = grounded_halueval(40)
    verdicts = [await inv.check(c) for c in cases]
    flagged = [leaked(c, v) for c, v in zip(cases, verdicts, strict=True) if v.outcome is Outcome.FAIL]
    assert len(flagged) <= 1, flagged  # the old defaults flagged ~35% of them (bench.pii_boundary)
    assert sum(v.details["untied"] for v in verdicts) > 10  # names and places were found, and judged public


async def test_paris_is_not_a_leak_but_a_customer_record_is(inv: PiiBoundaryInvariant) -> None:
    public = Case(response="It is in Paris, France.", question="Where is the Eiffel Tower?",
                  context=(Passage("w1", "The Eiffel Tower is a wrought-iron tower in Paris, France."),))
    assert (await inv.check(public)).outcome is Outcome.PASS
    crm = Case(response="Marta Kowalczyk from Rotterdam filed it.", question="Who complained?",
               context=(Passage("t1", f"Ticket 7: filed by Marta Kowalczyk ({PHONE}) from Rotterdam."),))
    verdict = await inv.check(crm)
    assert sorted(span for span, _ in leaked(crm, verdict)) == ["Marta Kowalczyk", "Rotterdam"]


async def test_tie_window_and_marks(inv: PiiBoundaryInvariant) -> None:
    response = "Marta Kowalczyk filed the complaint."
    far = Passage("t1", RECORD + " " + "The warehouse restocks blenders every week. " * 12 + f"Hotline: {PHONE}.")
    assert len(far.text) > 2 * 250
    assert (await inv.check(Case(response=response, question="Who?", context=(far,)))).outcome is Outcome.PASS
    whole = await make(tie_window_chars=0)
    assert (await whole.check(Case(response=response, question="Who?", context=(far,)))).outcome is Outcome.FAIL
    marked = Case(response=response, question="Who?", context=(Passage("t2", RECORD, sensitivity="private"),))
    assert leaked(marked, await inv.check(marked)) == [("Marta Kowalczyk", "PERSON")]
    by_glob = await make(private_sources=("crm://*",))
    crm = Passage("crm://tickets/7", RECORD)
    assert (await by_glob.check(Case(response=response, question="Who?", context=(crm,)))).outcome is Outcome.FAIL
    spent = await make(max_tie_windows=0)  # no scan left: counted as tied — the budget bounds cost, not protection
    assert (await spent.check(Case(response=response, question="Who?", context=(Passage("x", RECORD),)))).failed
    old = await make(unmarked_passages="private")
    assert (await old.check(Case(response=response, question="Who?", context=(Passage("x", RECORD),)))).failed


async def test_a_public_mark_exempts_names_not_contact_identifiers(inv: PiiBoundaryInvariant) -> None:
    press = Passage("pr-1", f"Press contact Marta Kowalczyk, phone {PHONE}.", sensitivity="public")
    case = Case(response=f"Call Marta Kowalczyk on {PHONE}.", question="Whom do I call?", context=(press,))
    assert [t for _, t in leaked(case, await inv.check(case))] == ["PHONE_NUMBER"]


async def test_sensitivity_travels_over_grpc() -> None:
    response = "Marta Kowalczyk from Rotterdam filed the complaint."
    config = make_config({"pii_boundary": {"on_fail": "block", "timeout_s": 30}})
    replies = {}
    async with running_server(config) as (_, target):
        async with AsyncGuardrailClient(target, timeout=60) as client:
            for mark in ("", "private", "public"):
                passage = {"id": "t1", "text": RECORD, **({"sensitivity": mark} if mark else {})}
                replies[mark] = await client.check(response, question="Who complained?", context=[passage])
    assert int(replies[""].decision) == pb.ALLOW
    assert int(replies["private"].decision) == pb.BLOCK
    assert int(replies["public"].decision) == pb.ALLOW


def test_known_entities_are_what_the_analyzer_produces() -> None:
    from guardrail_invariants.pii import get_analyzer

    assert set(get_analyzer(False).get_supported_entities(language="en")) == KNOWN_ENTITIES


@pytest.mark.parametrize("key", ["entities", "contextual_entities", "tie_entities"])
def test_an_unknown_entity_type_is_a_start_up_error_naming_the_key(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "--set", f"invariants.pii_boundary.options.{key}=[EMAIL_ADDRESS, PERSN]"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"invariants.pii_boundary.options.{key}" in err and "PERSN" in err


async def test_own_names_in_the_question_are_not_leaks_when_ner_joins_them(inv: PiiBoundaryInvariant) -> None:
    question = "Hi, I am Marta Kowalczyk and my husband is Jan Nowak. Who holds policy 77?"
    policy = Passage("p77", f"Policy 77: holders Marta Kowalczyk, Jan Nowak; phone {PHONE}.", sensitivity="private")
    case = Case(response="The policy holders are Marta Kowalczyk Jan Nowak.", question=question, context=(policy,))
    verdict = await inv.check(case)
    assert verdict.outcome is Outcome.PASS, leaked(case, verdict)
    assert verdict.details["own_data"] >= 1
    # One shared name is not enough: the other person's name is still a leak.
    other = Case(response=case.response, question="Hi, I am Marta Kowalczyk. Who holds policy 77?", context=(policy,))
    assert (await inv.check(other)).outcome is Outcome.FAIL


@pytest.mark.parametrize("address", ["jane.doe@hr.internal", "ops@build.corp", "admin@printer.local",
                                     "j.doe@example.com"])
async def test_email_on_any_tld_is_a_leak_and_is_redacted(inv: PiiBoundaryInvariant, address: str) -> None:
    from guardrail_invariants.pii import redact

    case = Case(response=f"Write to {address} about it.", question="Whom do I write to?",
                context=(Passage("hr-1", f"HR contact: {address}."),))
    assert leaked(case, await inv.check(case)) == [(address, "EMAIL_ADDRESS")]
    redacted = redact(f"HR contact: {address}.")
    assert address not in redacted and "<EMAIL_ADDRESS>" in redacted
