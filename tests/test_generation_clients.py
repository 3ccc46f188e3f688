"""The callers of CheckGeneration: the OpenAI-compatible streaming adapter against a fake SSE endpoint (a leak is never
shown, a BLOCK closes the model's stream) and `guardrail check --stream` reading a response from a pipe as it is
written. Real server, real Presidio."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from guardrail_client import Decision, GuardrailClient
from guardrail_client.openai_stream import guard_stream, sse_text_deltas, stream_chat_completion, text_deltas
from tests.conftest import make_config, running_server
from tests.fake_openai import FakeOpenAI

EMAIL = "marta.kowalczyk@example.org"
TICKET = [{"id": "ticket-7", "text": f"Ticket 7. Customer Marta Kowalczyk, e-mail {EMAIL}, asks about a refund.",
           "sensitivity": "private"}]
INVARIANTS = {"pii_boundary": {}, "test_keyword": {"on_fail": "block"}}


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[str]:
    config = make_config(INVARIANTS, {"streaming.sentence_invariants": ["test_keyword"]})
    async with running_server(config) as (_, address):
        yield address


def test_text_deltas_reads_every_shape_of_a_streamed_completion() -> None:
    lines = [b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n', b"\n",
             b'data: {"choices": [{"delta": {"content": "Hel"}}]}\n', 'data: {"choices": [{"text": "lo"}]}',
             b": keep-alive\n", b"data: [DONE]\n", b'data: {"choices": [{"delta": {"content": "late"}}]}\n']
    assert list(sse_text_deltas(lines)) == ["Hel", "lo"]
    sdk = SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=" world"))])
    empty = SimpleNamespace(choices=[])
    assert list(text_deltas(["Hi", {"choices": [{"delta": {"content": "!"}}]}, sdk, empty])) == ["Hi", "!", " world"]


async def test_the_adapter_never_shows_a_leak(target: str) -> None:
    text = (f"Thanks for waiting. You can write to {EMAIL} and she will answer within a day. "
            "Is there anything else?")
    with FakeOpenAI(lambda body: text, stream_delay_s=0.01) as fake:
        def run() -> list[Any]:
            deltas = stream_chat_completion(fake.url, model="m", messages=[{"role": "user", "content": "refund?"}])
            with GuardrailClient(target, timeout=60) as guard:
                return list(guard_stream(guard, deltas, question="Where is my refund?", context=TICKET))

        pieces = await asyncio.to_thread(run)
    assert fake.requests[0]["stream"] is True
    shown = ""
    for piece in pieces:
        shown += piece.text
        assert "kowalczyk@" not in shown.lower()  # at no point on the screen
    assert shown == text.replace(EMAIL, "[withheld]")
    withheld = [span for p in pieces for span in p.withheld]
    assert [text[a:b] for a, b in withheld] == [EMAIL]
    assert len([p for p in pieces if p.text]) > 3  # released as it was cleared, not all at the end
    final = pieces[-1].final
    assert final is not None and final.decision is Decision.FLAG and not final.cut


async def test_a_block_closes_the_models_stream_and_shows_nothing_unchecked(target: str) -> None:
    text = ("The first sentence is fine. The second one is forbidden here. " + "More words keep coming. " * 40)
    with FakeOpenAI(lambda body: text, stream_delay_s=0.02) as fake:
        def run() -> list[Any]:
            deltas = stream_chat_completion(fake.url, model="m", messages=[{"role": "user", "content": "q"}])
            with GuardrailClient(target, timeout=60) as guard:
                return list(guard_stream(guard, deltas, hold="sentence", context=["Anything."]))

        pieces = await asyncio.to_thread(run)
        for _ in range(50):
            if fake.streams_cut:
                break
            await asyncio.sleep(0.1)
        total_events = len(text.split()) + 2
        assert fake.streams_cut == 1 and fake.events_sent < total_events / 2  # the model stopped early
    assert "".join(p.text for p in pieces) == "The first sentence is fine."
    assert any(p.blocked for p in pieces)
    final = pieces[-1].final
    assert final is not None and final.cut and final.blocked


async def test_check_stream_cli_prints_a_line_per_sentence_as_stdin_arrives(target: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guardrail_server.cli", "check", "--stream", "-t", target, "-p", "Anything at all.",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    for word in "The first sentence is here. The sec".split(" "):
        proc.stdin.write((word + " ").encode())
        await proc.stdin.drain()
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    line = await asyncio.wait_for(proc.stdout.readline(), 60)  # stdin is still open: the model is "generating"
    assert line.decode().startswith("sentence 0 [0:27] ALLOW") and "test_keyword PASS" in line.decode()
    assert time.perf_counter() - started < 30
    proc.stdin.write("ond one is forbidden. Bye — ünïcödé".encode())
    proc.stdin.close()
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 3, err.decode()[-2000:]  # the exit code is the decision: BLOCK
    assert "sentence 1 [28:" in text and "BLOCK" in text
    assert "cut by BLOCK" in text

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guardrail_server.cli", "check", "--stream", "--json", "-t", target,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, _ = await asyncio.wait_for(proc.communicate("One. Two, ünïcödé.".encode()), 60)
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert [e["event"] for e in events][0] == "started" and events[-1]["event"] == "final"
    assert [e["end"] for e in events if e["event"] == "sentence"] == [4, 18]
    assert proc.returncode == 0 and events[-1]["decision"] == "allow"
