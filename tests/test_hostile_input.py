"""Hostile input within the documented limits costs bounded time, and input past them is refused naming the field.

The inputs are the ones that froze the server for 50-110 s (issue 13): 31 KB runs of backticks, brackets, emoji,
【 and colons (spaCy's tokenizer is quadratic on runs without whitespace), an 80 KB passage id and a 40 KB title
(quadratic regexes in the citation parser). Each now reaches no quadratic path; oversize fields are refused before
any check runs; a reply's findings are capped; bytes that are not a CheckRequest are INVALID_ARGUMENT.
"""

from __future__ import annotations

import time

import grpc
import pytest

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.client import AsyncGuardrailClient
from guardrail_invariants.citations import analyze, claim_sentences
from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions
from guardrail_invariants.types import Case, Passage
from tests.conftest import make_config, running_server

RUNS = {
    "backticks": "`" * 31_000,
    "brackets": "[" * 30_000,
    "emoji": "\U0001F600" * 31_000,
    "lenticular": "\u3010" * 31_000,
    "colons": ":" * 31_000,
    "dashed": "a-" * 15_500,
    "citations": "[1]" * 10_000,
}


@pytest.fixture(scope="module")
async def pii() -> PiiBoundaryInvariant:
    inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions())
    await inv.load()
    return inv


@pytest.mark.parametrize("label", sorted(RUNS))
async def test_pii_boundary_on_pathological_runs_is_fast(pii: PiiBoundaryInvariant, label: str) -> None:
    started = time.perf_counter()
    verdict = await pii.check(Case(response=RUNS[label], context=(Passage("1", "Call Jane Doe on 212 555 0187."),)))
    elapsed = time.perf_counter() - started
    # no leak; where the run is ~30,000 tokens (`a-a-...`, `[1][1]...`) NER stops at ner_max_tokens and says so:
    # partial, reason limit (the pattern recognizers still read all of it)
    assert verdict.outcome.value in ("pass", "partial"), verdict
    assert verdict.coverage is None or verdict.coverage.reason == "limit"
    # within pii_boundary's default timeout (3 s) on 2 idle cores; was 50-110 s for the first five (the NER pass is
    # capped at ner_max_tokens, ~1 s; the symbol runs never reach spaCy's tokenizer)
    assert elapsed < 3.0, f"{label}: {elapsed:.2f}s"


async def test_pii_boundary_still_finds_names_and_contacts_beside_symbol_runs(pii: PiiBoundaryInvariant) -> None:
    passage = Passage("crm-1", "Customer Jane Doe, phone 212 555 0187, lives in Springfield.", sensitivity="private")
    response = "``````````\nYou can reach Jane Doe at 212 555 0187. ~~~~~~~~~~~~"
    verdict = await pii.check(Case(response=response, context=(passage,)))
    leaked = {response[f.start:f.end] for f in verdict.findings}
    assert {"Jane Doe", "212 555 0187"} <= leaked


@pytest.mark.parametrize(("pid", "title"), [("a" + "_" * 80_000 + "x", "t"), ("doc-1", "-" * 40_000 + "x"),
                                            ("a_" * 40_000 + "1", "-" * 40_000)])
def test_citation_parser_is_linear_on_hostile_ids_and_titles(pid: str, title: str) -> None:
    started = time.perf_counter()
    analyze("See [doc-1], [a_b_c] and [source: Paris].", [Passage(pid, "text", title=title)])
    assert time.perf_counter() - started < 0.5  # was 52 s for the first id, 3 s for the title


@pytest.mark.parametrize("response", [
    "[" + " " * 30_000 + "](x)",  # a long blank bracket before "(": 150 s in the bracket regex before `\s*+`
    "(" + " [1]" * 7_500,  # a parenthesis of citations that never closes
    ". [A](https://a.org/x)" * 1_500,  # links after sentence ends
    "[w](#a) " * 4_000,  # link syntax that is not a citation
])
def test_claim_text_is_linear_on_hostile_markers(response: str) -> None:
    started = time.perf_counter()
    analyze(response, [Passage("doc-1", "text")])
    claim_sentences(response, [Passage("doc-1", "text")], cache=False)
    assert time.perf_counter() - started < 2.0


LIMITS = [
    ({"request_id": "r" * 129}, "request_id"),
    ({"app": "a" * 65}, "app"),
    ({"context": [{"id": "i" * 257, "text": "x"}]}, "context[0].id"),
    ({"context": [{"id": "1", "title": "t" * 1025, "text": "x"}]}, "context[0].title"),
    ({"context": [{"id": "1", "url": "https://a.org/" + "u" * 4096, "text": "x"}]}, "context[0].url"),
    ({"metadata": {"k" * 129: "v"}}, "metadata key"),
]


async def test_every_free_text_field_has_a_documented_limit() -> None:
    cfg = make_config({"test_keyword": {}})
    async with running_server(cfg) as (_, target):
        async with AsyncGuardrailClient(target, timeout=10) as client:
            for fields, name in LIMITS:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await client.check("fine", **fields)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, name
                assert err.value.details().startswith(f"{name}:"), err.value.details()
            ok = await client.check("fine", request_id="r" * 128, app="a" * 64)
    assert ok.decision == pb.ALLOW


async def test_findings_are_capped_and_the_rest_counted() -> None:
    cfg = make_config({"reference_integrity": {}}, {"limits.max_findings": 100})
    response = "Claims " + " ".join(f"[{i}]" for i in range(2, 502)) + "."  # 500 dangling citations
    async with running_server(cfg) as (_, target):
        async with AsyncGuardrailClient(target, timeout=30) as client:
            reply = await client.check(response, context=[{"id": "1", "text": "One passage."}])
    (result,) = reply.results
    assert len(result.findings) == 100
    assert result.findings_omitted == 400
    assert reply.raw.ByteSize() < 64_000


async def test_undecodable_bytes_are_invalid_argument_not_unknown() -> None:
    cfg = make_config({"test_keyword": {}})
    async with running_server(cfg) as (_, target):
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary("/guardrail.v1.GuardrailService/Check")
            for payload in (b"\x0a\x02\xff\xfe", b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f"):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(payload, timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert err.value.details().startswith("request: not a valid guardrail.v1.CheckRequest")
