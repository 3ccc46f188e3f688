"""No response is too long to check (issue 20, item 1).

A 31,600-character answer that repeats an e-mail address and a US SSN from the context used to be ALLOWed in the
default configuration: entailment (5 s) and pii_boundary (3 s) timed out, and a timeout failed open. Now each
invariant works through the response front to back within its budget and says `partial` with the spans it did not
reach; an unchecked span is never an ALLOW by default (`on_partial: flag`), and a leak found in the checked part is a
FAIL as before. Proved here through a real gRPC server (default config: the four real invariants in process check
workers), and in parts: the coverage bookkeeping, the chunked PII scan on real Presidio, the stepwise entailment on
the real model, the per-invariant policy and its config.
"""

from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from bench.long_response import EMAIL, SSN, long_case
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.client import AsyncGuardrailClient
from guardrail_server.config import ConfigError, load_config
from guardrail_server.convert import case_from_dict, verdict_from_pb, verdict_to_pb
from guardrail_server.policy import Decision, decide, decision_for, let_through_unchecked
from guardrail_invariants import deadline
from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions
from guardrail_invariants.pii.detect import chunk_bounds, scan
from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions
from guardrail_invariants.runner import timeout_verdict
from guardrail_invariants.types import Case, Coverage, Finding, Outcome, Passage, Verdict
from guardrail_models.zoo import ModelZoo, ZooSettings
from tests.conftest import free_port, make_config, running_server

DEADLINE_S = 5.0


def metric(port: int, sample: str) -> float:
    """One sample's value on the server's /metrics (0 when absent). The registry is process-wide, so tests compare
    before and after rather than absolute values."""
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def covers_exactly(coverage: Coverage, length: int) -> None:
    """checked and unchecked: sorted, disjoint, non-empty spans that together are exactly [0, length)."""
    spans = sorted([*coverage.checked, *coverage.unchecked])
    assert all(s < e for s, e in spans)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert coverage.checked_chars + coverage.unchecked_chars == length


class Steps:
    """A deadline that expires after `n` looks at it: the stepwise path, without depending on the clock."""

    limited = True

    def __init__(self, n: int) -> None:
        self.n = n

    def expired(self, step_s: float = 0.0) -> bool:
        self.n -= 1
        return self.n < 0

    def late(self) -> bool:
        return False


# ------------------------------------------------------------------------------------------------ through the server


async def test_a_long_leaking_answer_is_not_allowed_and_comes_back_within_its_deadline() -> None:
    """The issue's case: default config (all four invariants, process check workers, their default timeouts)."""
    case = long_case(31_600)
    response = case["response"]
    assert len(response) == 31_600 and EMAIL in response and SSN in response
    assert EMAIL not in case["question"] and SSN not in case["question"]
    metrics_port = free_port()
    cfg = make_config(None, {"workers.mode": "process", "workers.count": 2, "admission.max_queue": 4,
                             "server.metrics_port": metrics_port})
    assert cfg.invariants["pii_boundary"].on_partial == "flag" and cfg.invariants["entailment"].timeout_s == 5.0
    fail_open = 'guardrail_fail_open_total{invariant="pii_boundary",reason="timeout"}'
    async with running_server(cfg) as (_, target):
        before = metric(metrics_port, fail_open)
        async with AsyncGuardrailClient(target, timeout=DEADLINE_S) as client:
            started = time.perf_counter()
            reply = await client.check(**case)
            elapsed = time.perf_counter() - started
        after = metric(metrics_port, fail_open)
        body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert elapsed < DEADLINE_S
    assert reply.decision in (pb.FLAG, pb.BLOCK), reply
    pii = reply.result("pii_boundary")
    assert pii is not None and pii.outcome in (pb.FAIL, pb.PARTIAL), pii
    leaked = {response[f.start:f.end] for f in pii.findings if f.kind == "pii_leak"}
    for value in (EMAIL, SSN):  # found, or where pii_boundary says it did not look
        at = response.index(value)
        assert value in leaked or any(s <= at < e for s, e in pii.unchecked), (value, pii)
    for result in reply.results:  # whoever did not check everything says which spans, and they add up
        assert result.outcome != pb.PASS or not result.unchecked
        if result.checked or result.unchecked:
            covers_exactly(Coverage(len(response), result.checked, result.unchecked, "deadline"), len(response))
            assert result.unchecked_reason in ("deadline", "limit")
        if result.outcome == pb.ERROR:
            assert result.findings[0].kind == "timeout"
    assert after == before  # nothing let through unchecked
    assert "guardrail_partial_checks_total" in body


async def test_on_partial_allow_is_the_old_fail_open_and_is_counted() -> None:
    """An operator who accepts unchecked spans says so per invariant; the response then goes through, counted."""
    metrics_port = free_port()
    cfg = make_config({"test_sleepy": {"timeout_s": 0.3, "on_partial": "allow"}},
                      {"server.metrics_port": metrics_port})
    samples = ('guardrail_fail_open_total{invariant="test_sleepy",reason="timeout"}',
               'guardrail_partial_checks_total{invariant="test_sleepy",reason="deadline"}')
    async with running_server(cfg) as (_, target):
        before = [metric(metrics_port, s) for s in samples]
        async with AsyncGuardrailClient(target, timeout=DEADLINE_S) as client:
            allowed = await client.check("x", metadata={"sleep": "5"})
            listed = await client.list_invariants()
        after = [metric(metrics_port, s) for s in samples]
    (result,) = allowed.results
    assert result.outcome == pb.ERROR and result.unchecked == ((0, 1),) and result.unchecked_reason == "deadline"
    assert allowed.decision == pb.ALLOW
    assert [a - b for a, b in zip(after, before)] == [1.0, 1.0]  # the fail-open and the partial check, counted
    assert [i.on_partial for i in listed.invariants if i.name == "test_sleepy"] == ["allow"]


async def test_a_timeout_is_flagged_by_default() -> None:
    cfg = make_config({"test_sleepy": {"timeout_s": 0.3}})
    async with running_server(cfg) as (_, target):
        async with AsyncGuardrailClient(target, timeout=DEADLINE_S) as client:
            reply = await client.check("x", metadata={"sleep": "5"})
    assert reply.results[0].outcome == pb.ERROR and reply.decision == pb.FLAG


# ------------------------------------------------------------------------------------------------ the bookkeeping


@pytest.mark.parametrize("seed", range(20))
def test_coverage_spans_cover_the_response_exactly(seed: int) -> None:
    rnd = random.Random(seed)
    length = rnd.randint(1, 500)
    raw = [(rnd.randint(-20, length + 20), rnd.randint(-20, length + 20)) for _ in range(rnd.randint(0, 6))]
    coverage = Coverage.of(length, raw, "deadline")
    covers_exactly(coverage, length)
    inside = {i for s, e in raw for i in range(max(0, s), min(length, e))}
    assert {i for s, e in coverage.checked for i in range(s, e)} == inside
    assert coverage.complete == (len(inside) == length)


def test_a_prefix_and_a_timeout_have_their_obvious_coverage() -> None:
    assert Coverage.prefix(100, 40, "limit") == Coverage(100, ((0, 40),), ((40, 100),), "limit")
    assert Coverage.prefix(100, 0, "deadline").checked == ()
    verdict = timeout_verdict("x", 0.5, "check exceeded 1.000s", time.perf_counter(), 100)
    assert verdict.outcome is Outcome.ERROR and verdict.unchecked == ((0, 100),)
    with pytest.raises(ValueError, match="reason"):
        Coverage.of(10, (), "tired")  # type: ignore[arg-type]


def test_coverage_survives_the_wire() -> None:
    verdict = Verdict("pii_boundary", Outcome.PARTIAL, 1.0, 1.0, coverage=Coverage.prefix(31_600, 20_000, "deadline"))
    back = verdict_from_pb(verdict_to_pb(verdict))
    assert back.outcome is Outcome.PARTIAL and back.coverage == verdict.coverage
    assert verdict_from_pb(verdict_to_pb(Verdict("x", Outcome.PASS, 1.0, 1.0))).coverage is None


def test_a_deadline_has_a_soft_point_before_its_timeout() -> None:
    d = deadline.Deadline.after(5.0, now=100.0)
    assert (d.soft, d.hard) == (pytest.approx(104.25), 105.0)
    assert deadline.Deadline.after(30.0, now=0.0).soft == pytest.approx(29.0)  # the reserve is at most 1 s
    assert deadline.current() is deadline.NO_DEADLINE and not deadline.NO_DEADLINE.expired(10.0)
    now = time.perf_counter()
    roomy = deadline.Deadline(now + 10.0, now + 12.0)
    assert not roomy.expired(1.0) and roomy.expired(8.0)  # no room for one more step like the last one
    with deadline.within(d) as inner:
        assert deadline.current() is inner
    assert deadline.current() is deadline.NO_DEADLINE


# ------------------------------------------------------------------------------------------------ pii_boundary


@pytest.fixture(scope="module")
async def pii() -> PiiBoundaryInvariant:
    inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions())
    await inv.load()
    return inv


def test_chunks_cover_the_text_and_overlap() -> None:
    text = long_case(31_600)["response"]
    bounds = chunk_bounds(text, 2000, 200)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    for (a0, a1), (b0, b1) in zip(bounds, bounds[1:]):
        assert a0 < b0 < a1 < b1 and a1 - b0 <= 200 and a1 - a0 <= 2000
        assert text[a1 - 1].isspace() and text[b0 - 1].isspace()  # cut after whitespace, start at a word
    solid = "x" * 5000  # no whitespace: hard cuts, overlapping all the same
    assert [b - a for a, b in chunk_bounds(solid, 2000, 200)][:2] == [2000, 2000]


@pytest.mark.parametrize("offset", [-40, -25, -12, -5, -1, 0, 3])
async def test_an_entity_across_a_chunk_cut_is_found_once_and_whole(pii: PiiBoundaryInvariant, offset: int) -> None:
    """An e-mail address in a run without whitespace (so the cut falls inside it), and an SSN, near the cut."""
    o = pii.options
    email = "dana.whitfield@northwind-mail.com"
    head = "y" * (o.chunk_chars + offset - 1) + ","
    text = head + email + ", ssn 536-22-8714 and more words follow here."
    found = scan(pii._analyzer, text, pii._entities, o.score_thresholds, o.score_threshold,
                 chunk_chars=o.chunk_chars, overlap_chars=o.chunk_overlap_chars, patterns=pii._sweep)
    emails = [(d.start, d.end) for d in found.detections if d.entity_type == "EMAIL_ADDRESS"]
    assert emails == [(len(head), len(head) + len(email))]
    assert [text[d.start:d.end] for d in found.detections if d.entity_type == "US_SSN"] == ["536-22-8714"]
    assert found.full_until == len(text) and found.chunks >= 2


async def test_a_long_response_scans_like_one_call(pii: PiiBoundaryInvariant) -> None:
    """Chunking changes the cost, not the answer: the same detections as one Presidio call on the whole text."""
    from guardrail_invariants.pii.detect import detect

    o = pii.options
    text = long_case(12_000)["response"]
    whole = detect(pii._analyzer, text, pii._entities, o.score_thresholds, o.score_threshold, o.ner_max_tokens)
    chunked = scan(pii._analyzer, text, pii._entities, o.score_thresholds, o.score_threshold,
                   chunk_chars=o.chunk_chars, overlap_chars=o.chunk_overlap_chars, ner_max_tokens=o.ner_max_tokens)
    assert [(d.entity_type, d.start, d.end) for d in chunked.detections] == [
        (d.entity_type, d.start, d.end) for d in whole]


async def test_out_of_time_pii_boundary_still_sweeps_contact_identifiers(pii: PiiBoundaryInvariant) -> None:
    """The budget runs out after three chunks: names are looked for no further, but the e-mail (~50%) and the SSN
    (~95%) are still found by the pattern sweep, and the verdict says where it stopped looking for names."""
    case = case_from_dict(long_case(31_600))
    with deadline.within(Steps(3)):  # type: ignore[arg-type]
        verdict = await pii.check(case)
    assert verdict.outcome is Outcome.FAIL
    leaked = {case.response[f.start:f.end] for f in verdict.findings}
    assert {EMAIL, SSN} <= leaked
    assert verdict.coverage is not None and verdict.coverage.reason == "deadline"
    covers_exactly(verdict.coverage, len(case.response))
    bounds = chunk_bounds(case.response, pii.options.chunk_chars, pii.options.chunk_overlap_chars)
    assert verdict.coverage.checked == ((0, bounds[3][0]),)


async def test_a_leak_free_partial_scan_is_partial_not_pass(pii: PiiBoundaryInvariant) -> None:
    case = case_from_dict(long_case(20_000, leak=False))
    with deadline.within(Steps(2)):  # type: ignore[arg-type]
        verdict = await pii.check(case)
    assert verdict.outcome is Outcome.PARTIAL and verdict.unchecked
    assert verdict.details["swept_chars"] == len(case.response)


def test_chunk_options_are_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"invariants\.pii_boundary\.options.*chunk_overlap_chars"):
        load_config(None, environ={}, overrides=[("invariants.pii_boundary.options.chunk_overlap_chars", 900)])


# ------------------------------------------------------------------------------------------------ entailment


@pytest.fixture(scope="module")
async def entailment() -> EntailmentInvariant:
    inv = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), ModelZoo(ZooSettings()))
    await inv.load()
    return inv


async def test_entailment_checks_claim_by_claim_and_says_where_it_stopped(entailment: EntailmentInvariant) -> None:
    raw = long_case(6_000, leak=False)
    case = case_from_dict(raw)
    claims = entailment.claims(case.response, case.context)
    assert len(claims) > 16
    with deadline.within(Steps(2)):  # type: ignore[arg-type]
        partial = await entailment.check(case)
    assert partial.outcome in (Outcome.PARTIAL, Outcome.FAIL)
    assert partial.details["claims_checked"] == 16 and partial.coverage is not None
    assert partial.coverage.checked == ((0, claims[16].start),) and partial.coverage.reason == "deadline"
    covers_exactly(partial.coverage, len(case.response))
    full = await entailment.check(case)  # no budget: every claim, and the first 16 scored as in the partial check
    assert full.coverage is None and full.details["claims_checked"] == len(claims)
    assert full.details["sentences"][:16] == partial.details["sentences"]


async def test_entailment_past_max_sentences_is_partial_for_a_limit() -> None:
    inv = EntailmentInvariant(0.0, EntailmentOptions(max_sentences=3), ModelZoo(ZooSettings()))
    await inv.load()
    context = (Passage("1", "The museum opened in 1910. It is in Berlin. It has a gate. It has an altar."),)
    case = Case(response="The museum opened in 1910. It is in Berlin. It has a gate. It has an altar.", context=context)
    verdict = await inv.check(case)
    assert verdict.outcome is Outcome.PARTIAL and verdict.coverage is not None
    assert verdict.coverage.reason == "limit" and verdict.coverage.unchecked == ((case.response.index("It has an"),
                                                                                 len(case.response)),)


# ------------------------------------------------------------------------------------------------ policy


def policy(on_fail: str = "flag", on_error: str = "fail_open", on_partial: str = "flag") -> Any:
    return SimpleNamespace(on_fail=on_fail, on_error=on_error, on_partial=on_partial)


PART = Coverage.prefix(100, 60, "deadline")


def verdict(outcome: Outcome, coverage: Coverage | None = None, kind: str = "") -> Verdict:
    findings = (Finding(kind=kind, message=kind),) if kind else ()
    return Verdict("inv", outcome, 0.5, 0.5, findings=findings, coverage=coverage)


@pytest.mark.parametrize(("v", "p", "expected"), [
    (verdict(Outcome.PARTIAL, PART), policy(), Decision.FLAG),  # the default: never ALLOW
    (verdict(Outcome.PARTIAL, PART), policy(on_partial="allow"), Decision.ALLOW),
    (verdict(Outcome.PARTIAL, PART), policy(on_partial="block"), Decision.BLOCK),
    (verdict(Outcome.FAIL, PART), policy(on_fail="block", on_partial="allow"), Decision.BLOCK),  # a leak is a leak
    (verdict(Outcome.FAIL, PART), policy(on_fail="flag", on_partial="block"), Decision.BLOCK),
    (verdict(Outcome.ERROR, Coverage.of(100, (), "deadline"), "timeout"), policy(), Decision.FLAG),
    (verdict(Outcome.ERROR, Coverage.of(100, (), "deadline"), "timeout"), policy(on_partial="allow"), Decision.ALLOW),
    (verdict(Outcome.ERROR, Coverage.of(100, (), "deadline"), "timeout"),
     policy(on_error="fail_closed", on_partial="allow"), Decision.BLOCK),
    (verdict(Outcome.ERROR, None, "exception"), policy(), Decision.ALLOW),  # on_error alone, as before
    (verdict(Outcome.PASS), policy(on_partial="block"), Decision.ALLOW),
])
def test_what_an_unchecked_span_does_to_the_decision(v: Verdict, p: Any, expected: Decision) -> None:
    assert decision_for(v, p) is expected
    assert let_through_unchecked(v, p) == (expected is Decision.ALLOW and v.outcome is not Outcome.PASS)


def test_the_policy_is_per_invariant() -> None:
    verdicts = [Verdict("a", Outcome.PARTIAL, 1.0, 1.0, coverage=PART),
                Verdict("b", Outcome.PARTIAL, 1.0, 1.0, coverage=PART)]
    assert decide(verdicts, {"a": policy(on_partial="allow"), "b": policy(on_partial="allow")}) is Decision.ALLOW
    assert decide(verdicts, {"a": policy(on_partial="allow"), "b": policy(on_partial="block")}) is Decision.BLOCK


def test_on_partial_is_validated_at_start_up_naming_the_key() -> None:
    config = load_config(None, environ={})
    assert {p.on_partial for p in config.invariants.values()} == {"flag"}
    with pytest.raises(ConfigError, match=r"invariants\.entailment\.on_partial"):
        load_config(None, environ={}, overrides=[("invariants.entailment.on_partial", "fail_open")])
    config = load_config(None, environ={"GUARDRAIL_INVARIANTS__PII_BOUNDARY__ON_PARTIAL": "block"})
    assert config.invariants["pii_boundary"].on_partial == "block"

