"""CheckGeneration's mechanics on a real gRPC server with a fast test invariant (test_keyword checked per sentence):
back-pressure on a client that stops reading, the idle and total deadlines, auth and API-key pinning, the limits,
the stream cap, a BLOCK that cuts the stream, undecodable and out-of-place chunks, and the metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from guardrail_client import AsyncGuardrailClient, Decision, GuardrailClient
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_client.generation import GenerationResult, GenerationStarted, SentenceResult
from tests.conftest import make_config, running_server

TOKEN = "tok-generation-" + "7" * 24
CHAT_KEY = "key-chat-" + "3" * 30
KEYWORD = {"test_keyword": {"on_fail": "flag"}}
STREAMING = {"streaming.sentence_invariants": ["test_keyword"], "streaming.idle_timeout_s": 1.0,
             "streaming.max_streams": 3, "streaming.max_pending_verdicts": 4, "limits.max_response_chars": 400_000}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[Any, str]]:
    config = make_config(KEYWORD, {**STREAMING, "server.auth.tokens": [TOKEN],
                                   "server.auth.api_keys": {"chat": CHAT_KEY}})
    async with running_server(config) as (srv, target):
        yield srv, target


def chunk(**kwargs: Any) -> pb.GenerationChunk:
    return pb.GenerationChunk(**kwargs)


async def test_sentences_come_one_verdict_each_in_order_then_the_final(server: tuple[Any, str]) -> None:
    _, target = server
    text = "First one is fine. Second one too. Third is last"
    async with AsyncGuardrailClient(target, token=TOKEN) as client:
        events = [e async for e in client.check_generation(list(text), context=["Anything."])]
        unary = await client.check(text, context=["Anything."])
    assert isinstance(events[0], GenerationStarted) and events[0].sentence_invariants == ("test_keyword",)
    sentences = [e for e in events if isinstance(e, SentenceResult)]
    assert [(s.index, text[s.start:s.end]) for s in sentences] == [
        (0, "First one is fine."), (1, "Second one too."), (2, "Third is last")]
    assert all(s.decision is Decision.ALLOW and s.result("test_keyword").score == 1.0 for s in sentences)
    final = events[-1]
    assert isinstance(final, GenerationResult) and not final.cut
    assert final.decision is unary.decision is Decision.ALLOW
    assert [(r.invariant, r.outcome, r.score) for r in final.result.results] == \
        [(r.invariant, r.outcome, r.score) for r in unary.results]


async def test_a_block_is_sent_at_once_and_cuts_the_stream() -> None:
    sent: list[str] = []
    release = asyncio.Event()

    async def deltas() -> AsyncIterator[str]:
        for word in "This is fine. This is forbidden here. Then much more text follows".split(" "):
            sent.append(word)
            yield word + " "
            if word == "follows":
                await release.wait()  # the model is still generating: the BLOCK must not wait for the close

    cut_before = sample("guardrail_generation_streams_cut_total", invariant="test_keyword")
    blocks_before = sample("guardrail_decisions_total", decision="block", app="unset")
    async with running_server(make_config({"test_keyword": {"on_fail": "block"}}, STREAMING)) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            events = [event async for event in client.check_generation(deltas())]
    release.set()
    blocking = [e for e in events if isinstance(e, SentenceResult) and e.decision is Decision.BLOCK]
    assert len(blocking) == 1 and blocking[0].index == 1
    assert blocking[0].running is Decision.BLOCK
    final = events[-1]
    assert isinstance(final, GenerationResult) and final.cut and final.blocked
    assert [r.invariant for r in final.result.results] == ["test_keyword"]
    finding = final.result.results[0].findings[0]
    text = "".join(w + " " for w in sent)
    assert text[finding.start:finding.end] == "forbidden"  # offsets into the whole response
    assert sample("guardrail_generation_streams_cut_total", invariant="test_keyword") == cut_before + 1
    assert sample("guardrail_decisions_total", decision="block", app="unset") == blocks_before + 1


async def test_a_stalled_stream_hits_its_idle_deadline(server: tuple[Any, str]) -> None:
    _, target = server

    async def stalls() -> AsyncIterator[str]:
        yield "Some text. "
        await asyncio.sleep(30)  # the model stalls
        yield "never"

    before = sample("guardrail_generation_streams_total", end="idle_timeout")
    started = time.perf_counter()
    async with AsyncGuardrailClient(target, token=TOKEN) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in client.check_generation(stalls()):
                pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "streaming.idle_timeout_s" in info.value.details()
    assert time.perf_counter() - started < 10
    assert sample("guardrail_generation_streams_total", end="idle_timeout") == before + 1

    async def silent() -> AsyncIterator[pb.GenerationChunk]:  # not even the first message
        await asyncio.sleep(30)
        yield chunk(start=pb.CheckRequest())

    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GuardrailServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.CheckGeneration(silent(), metadata=(("authorization", f"Bearer {TOKEN}"),)):
                pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and info.value.details().startswith("start:")


async def test_the_calls_deadline_bounds_the_whole_stream(server: tuple[Any, str]) -> None:
    _, target = server

    async def slow() -> AsyncIterator[str]:
        for _ in range(100):
            yield "word "
            await asyncio.sleep(0.3)  # never idle for a second, but slower than the deadline allows

    async with AsyncGuardrailClient(target, token=TOKEN) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in client.check_generation(slow(), timeout=2.0):
                pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_client_that_stops_reading_cannot_grow_the_servers_memory(server: tuple[Any, str]) -> None:
    """Every sentence has a long finding list (a ~3 KB verdict): with the client not reading, the transport's flow-
    control window and `max_pending_verdicts` fill and the stream stops checking; reading again, everything arrives.
    (The client turns off gRPC's BDP probing, which would grow its window to a few MB first: bounded as well, but
    by more than this test sends.)"""
    srv, target = server
    sentence = ("forbidden " * 100).strip() + ". "  # 100 findings (limits.max_findings): a ~3 KB verdict
    n = 150
    text = sentence * n
    async with grpc.aio.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        stub = pb_grpc.GuardrailServiceStub(channel)
        metadata = (("authorization", f"Bearer {TOKEN}"),)

        async def requests() -> AsyncIterator[pb.GenerationChunk]:
            yield chunk(start=pb.CheckRequest(request_id="slow-reader"))
            for i in range(0, len(text), 2000):
                yield chunk(delta=text[i:i + 2000])
            yield chunk(close=pb.GenerationClose())

        call = stub.CheckGeneration(requests(), metadata=metadata)  # no deadline: the server's max_duration_s
        await call.read()  # started; then stop reading
        stream = None
        for _ in range(300):
            await asyncio.sleep(0.1)
            stream = next((s for s in srv.servicer.generation.open if s.request_id == "slow-reader"), None)
            if stream is not None and stream.s.closed:
                break
        assert stream is not None and stream.s.closed  # the whole text was read: it is bounded by the limits
        checked = stream.s.checked
        await asyncio.sleep(1.0)
        assert stream.s.checked == checked  # blocked: nothing more is checked while nobody reads
        assert checked < 60, checked  # the 64 KB window and the queue hold a bounded number of verdicts
        assert stream._out.qsize() <= 4
        replies = []
        while (reply := await call.read()) is not grpc.aio.EOF:
            replies.append(reply)
    assert [r.WhichOneof("verdict") for r in replies].count("sentence") == n
    assert replies[-1].final.response.decision == pb.FLAG and not replies[-1].final.cut


async def test_auth_and_app_pinning_apply_to_the_stream(server: tuple[Any, str]) -> None:
    _, target = server
    async with AsyncGuardrailClient(target) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in anonymous.check_generation(["Hello."]):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with AsyncGuardrailClient(target, token=CHAT_KEY) as chat:
        events = [e async for e in chat.check_generation(["Fine."], request_id="pinned")]
        assert isinstance(events[-1], GenerationResult)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in chat.check_generation(["Fine."], app="search"):
                pass
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_limits_and_bad_chunks(server: tuple[Any, str]) -> None:
    _, target = server
    metadata = (("authorization", f"Bearer {TOKEN}"),)

    async def status(chunks: list[pb.GenerationChunk]) -> tuple[grpc.StatusCode, str]:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.GuardrailServiceStub(channel)
            try:
                async for _ in stub.CheckGeneration(iter(chunks), metadata=metadata, timeout=10):
                    pass
            except grpc.aio.AioRpcError as err:
                return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""

    start = chunk(start=pb.CheckRequest(question="q"))
    code, details = await status([start, chunk(delta="x" * 250_000), chunk(delta="y" * 200_000)])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("response: 450000 characters")
    code, details = await status([chunk(start=pb.CheckRequest(question="q" * 20_000))])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("question:")
    code, details = await status([chunk(delta="no start first")])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("start:")
    code, details = await status([start, chunk(delta="Text. "), start])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "only the first" in details
    code, details = await status([start, chunk(close=pb.GenerationClose())])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("response: must not be empty")
    code, details = await status([chunk(start=pb.CheckRequest(invariants=["nope"]))])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("invariants[0]")
    # bytes that are not a GenerationChunk (a string field with invalid UTF-8)
    async with grpc.aio.insecure_channel(target) as channel:
        raw = channel.stream_stream("/guardrail.v1.GuardrailService/CheckGeneration")
        good = start.SerializeToString()
        bad = b"\x12\x02\xff\xfe"  # field 2 (delta), 2 bytes that are not UTF-8
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in raw(iter([good, bad]), metadata=metadata, timeout=10):
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid guardrail.v1.GenerationChunk" in (info.value.details() or "")


async def test_streams_past_max_streams_are_shed_and_counted(server: tuple[Any, str]) -> None:
    _, target = server
    shed_before = sample("guardrail_shed_total", kind="generation", reason="streams_full")
    hold = asyncio.Event()

    async def open_one(client: AsyncGuardrailClient) -> list[Any]:
        async def deltas() -> AsyncIterator[str]:
            yield "Held open. "
            await hold.wait()

        return [e async for e in client.check_generation(deltas())]

    async with AsyncGuardrailClient(target, token=TOKEN) as client:
        held = [asyncio.create_task(open_one(client)) for _ in range(3)]
        await asyncio.sleep(0.5)
        assert sample("guardrail_generation_streams_open") == 3
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in client.check_generation(["One too many."]):
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "streaming.max_streams" in (info.value.details() or "")
        hold.set()
        for task in held:
            assert isinstance((await task)[-1], GenerationResult)
    assert sample("guardrail_shed_total", kind="generation", reason="streams_full") == shed_before + 1
    assert sample("guardrail_generation_streams_open") == 0


async def test_the_blocking_client_yields_the_same_events(server: tuple[Any, str]) -> None:
    _, target = server

    def blocking() -> list[Any]:  # in a thread: the server runs on this test's event loop
        with GuardrailClient(target, token=TOKEN) as client:
            return list(client.check_generation(iter(["One sentence. ", "Another", " one."])))

    events = await asyncio.to_thread(blocking)
    assert [type(e).__name__ for e in events] == ["GenerationStarted", "SentenceResult", "SentenceResult",
                                                  "GenerationResult"]
    latencies = [e.latency_s for e in events if isinstance(e, SentenceResult)]
    assert all(0 <= x < 5 for x in latencies)
    assert sample("guardrail_generation_sentence_verdict_seconds_count") > 0


async def test_an_open_stream_does_not_hold_up_shutdown() -> None:
    """SIGTERM's path (server.stop with a grace): an open stream's next check is refused (UNAVAILABLE: the server is
    going away, retry elsewhere) and the server stops within its grace period."""
    from guardrail_server.server import GuardrailServer

    server = GuardrailServer(make_config(KEYWORD, STREAMING))
    ports = await server.start()
    await server.warm()
    stopping = asyncio.Event()

    async def deltas() -> AsyncIterator[str]:
        yield "First sentence here. "
        await stopping.wait()
        await asyncio.sleep(0.2)
        for _ in range(20):
            yield "More text keeps coming. "
            await asyncio.sleep(0.05)

    async with AsyncGuardrailClient(f"127.0.0.1:{ports.grpc}") as client:
        async def consume() -> list[Any]:
            return [e async for e in client.check_generation(deltas())]

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        stopping.set()
        await server.stop(3.0, flush_s=0.5)
        assert time.perf_counter() - started < 5.0
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await task
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
