"""The README's first call, through a real server with the shipped judge: the correct rewording passes entailment
("330 m" for "330 metres"), and only the wrong sentence is flagged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guardrail_client import AsyncGuardrailClient
from tests.conftest import make_config, running_server

README = Path(__file__).resolve().parents[1] / "README.md"
RESPONSE = "The Eiffel Tower is 330 m tall [1]. It opened in 1887 [2]."
QUESTION = "How tall is the Eiffel Tower?"
CONTEXT = [{"id": "1", "text": "The Eiffel Tower is 330 metres tall."},
           {"id": "2", "text": "The tower opened to the public in March 1889."}]


def test_the_readme_shows_this_call() -> None:
    text = README.read_text(encoding="utf-8")
    block = text[text.index("## A first call"):]
    for part in (RESPONSE, QUESTION, *(c["text"] for c in CONTEXT)):
        assert part in block, f"README's first call no longer says {part!r}: update this test with it"


@pytest.mark.asyncio
async def test_the_readme_first_call_passes_the_rewording_and_flags_the_wrong_date() -> None:
    config = make_config({"entailment": {}, "reference_integrity": {}})
    async with running_server(config) as (_, target):
        async with AsyncGuardrailClient(target) as guard:
            reply = await guard.check(RESPONSE, question=QUESTION, context=CONTEXT)
    entailment = next(r for r in reply.results if r.invariant == "entailment")
    first_end = RESPONSE.index("[1].") + 4
    flagged = [(f.start, f.end) for f in entailment.findings if f.kind != "supported_claim"]
    assert flagged, "the wrong year (1887 for 1889) must be flagged"
    assert all(start >= first_end for start, _ in flagged), f"the correct rewording was flagged: {flagged}"
    assert re.search("1887", RESPONSE[flagged[0][0]:flagged[0][1]])
