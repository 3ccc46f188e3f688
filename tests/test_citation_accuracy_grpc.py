"""The two accuracy bugs `guardrail synth` found (docs/synth.md), through the public surfaces: a real gRPC server and
`guardrail check`.

1. A claim cited with a markdown link whose text is the passage's title (``... tall ([Eiffel Tower](url)).``, synth's
   `markdown` format) reached the entailment judge with the title in it, and 117 of 118 supported claims were flagged.
2. reference_integrity's support check scored each cited passage alone, so a sentence whose fact needs both of its
   citations failed (81% of synth's `merged` cases) — while a citation to a passage about something else must still
   be caught.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from guardrail_client import Outcome
from guardrail_server.cli import main
from guardrail_server.client import AsyncGuardrailClient
from tests.conftest import make_config, only, running_server

TOWER = "https://docs.invalid/eiffel-tower/1"
LOUVRE = "https://docs.invalid/louvre/1"
CONTEXT = [
    {"id": "doc-1", "title": "Eiffel Tower", "url": TOWER,
     "text": "The Eiffel Tower, completed in 1889, is 330 metres tall and stands in Paris."},
    {"id": "doc-2", "title": "Louvre", "url": LOUVRE,
     "text": "The Louvre is the world's most-visited museum, with 8.7 million visitors in 2023."},
]
# claims the shipped judge passes without any marker (0.94, 0.94 and 0.92 on their own)
SUPPORTED = (f"The Eiffel Tower is 330 metres tall ([Eiffel Tower]({TOWER})). "
             f"The Louvre is the world's most-visited museum ([Louvre]({LOUVRE})).")
TOGETHER = (f"The Eiffel Tower is 330 metres tall and the Louvre is the world's most-visited museum "
            f"([Eiffel Tower]({TOWER}), [Louvre]({LOUVRE})).")
WRONG = f"The Eiffel Tower is 330 metres tall ([Eiffel Tower]({TOWER}), [Louvre]({LOUVRE}))."
MADE_UP = f"The Eiffel Tower is 330 metres tall. It was painted gold in 1850 ([Eiffel Tower]({TOWER}))."
POLICY = {"entailment": {"timeout_s": 60},
          "reference_integrity": {"timeout_s": 60, "options": {"support_check": True}}}


async def test_grpc_title_links_and_joint_citations() -> None:
    async with running_server(make_config(POLICY)) as (_, target):
        async with AsyncGuardrailClient(target, timeout=120) as client:
            replies = {name: await client.check(text, context=CONTEXT) for name, text in
                       (("supported", SUPPORTED), ("together", TOGETHER), ("wrong", WRONG), ("made_up", MADE_UP))}

    for name in ("supported", "together"):  # title links: the claims pass, and so do their citations
        reply = replies[name]
        assert reply.result("entailment").outcome == Outcome.PASS, (name, reply.result("entailment"))
        assert reply.result("reference_integrity").outcome == Outcome.PASS, (name, reply.result("reference_integrity"))
        assert reply.allowed

    wrong = replies["wrong"]  # the claim is true, but [Louvre] does not support it
    assert wrong.result("entailment").outcome == Outcome.PASS
    ref = wrong.result("reference_integrity")
    assert ref.outcome == Outcome.FAIL
    (finding,) = ref.findings
    assert finding.kind == "unsupported_citation" and finding.passage_id == "doc-2"
    assert WRONG[finding.start:finding.end] == WRONG  # the whole sentence as written, links and all

    made_up = replies["made_up"].result("entailment")  # a finding's span is the original sentence, link included
    assert made_up.outcome == Outcome.FAIL
    (finding,) = made_up.findings
    assert MADE_UP[finding.start:finding.end] == f"It was painted gold in 1850 ([Eiffel Tower]({TOWER}))."


def test_cli_check_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case.json"
    outs = {}
    for name, text in (("together", TOGETHER), ("wrong", WRONG)):
        case.write_text(json.dumps({"context": CONTEXT, "response": text}))
        rc = main(["check", "--in-process", "--file", str(case), "--json", "--exit-zero",
                   "--set", only("{entailment: {}, reference_integrity: {options: {support_check: true}}}"),
                   "--set", "review.enabled=false"])
        assert rc == 0
        outs[name] = {r["invariant"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert outs["together"]["entailment"]["outcome"] == "pass"
    assert outs["together"]["reference_integrity"]["outcome"] == "pass"
    assert outs["wrong"]["entailment"]["outcome"] == "pass"
    assert outs["wrong"]["reference_integrity"]["outcome"] == "fail"
    assert [f["passage_id"] for f in outs["wrong"]["reference_integrity"]["findings"]] == ["doc-2"]


async def test_grpc_unsupported_claim_with_a_title_link_is_still_flagged() -> None:
    """Dropping the citation's title must not make a false claim pass: the same sentence, wrong number."""
    response = f"The Eiffel Tower is 450 metres tall ([Eiffel Tower]({TOWER}))."
    async with running_server(make_config(POLICY)) as (_, target):
        async with AsyncGuardrailClient(target, timeout=120) as client:
            reply = await client.check(response, context=CONTEXT)
    assert reply.result("entailment").outcome == Outcome.FAIL
    assert reply.result("reference_integrity").outcome == Outcome.FAIL
    assert not reply.allowed
    await asyncio.sleep(0)
