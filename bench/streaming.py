"""CheckGeneration beside unary Check on the same cases (issue 22), on a real `guardrail serve` (process workers).

    python -m bench.streaming [--cases 12] [--rate 20] [--streams 10,25,50] [--seconds 25] [--set key=value ...]

Cases: 5-sentence responses over ~500-token held-out WikiText contexts (`bench.check_latency.make_cases`: 3 sentences
copied from the context, 2 from elsewhere), streamed as words (" word") at `--rate` tokens per second.

1. One stream at a time: per sentence, the time from sending the token that holds its last character to receiving
   its verdict (client side; it includes waiting for the next token, which proves the sentence ended — one token,
   1/rate s, for most sentences) and the server's own figure from the arrival of that character; the final verdict's
   time after the close; next to one unary Check of the full text (the same request), one call at a time.
2. `--streams` concurrent streams at `--rate` tokens/s, each client streaming case after case for `--seconds`:
   streams refused (RESOURCE_EXHAUSTED), fail-opens (`guardrail_fail_open_total`), sentence-verdict and final
   latency percentiles, event-loop stalls. "held" = nothing refused, no fail-open, no error, and the sentence
   verdicts keep up (p90 within 2 s of the sentence's last token).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from bench.harness import ServerProcess, delta, loop_stalls_over, machine_line, pct, table
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_server.convert import request_from_case


@dataclass
class StreamRun:
    sentence_s: list[float] = field(default_factory=list)  # client: last token sent -> verdict received
    server_s: list[float] = field(default_factory=list)  # server: last character arrived -> verdict sent
    final_s: float = float("nan")  # close sent -> final verdict received
    error: str = ""
    decision: int = 0


def tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


async def one_stream(stub: pb_grpc.GuardrailServiceStub, request: pb.CheckRequest, rate: float) -> StreamRun:
    """Streams `request.response` at `rate` tokens/s and times every verdict."""
    run = StreamRun()
    toks = tokens(request.response)
    ends: list[int] = []  # text length after each token
    sent: list[float] = []
    closed_at: list[float] = []
    start = pb.CheckRequest()
    start.CopyFrom(request)
    start.response = ""
    accepted = asyncio.Event()

    async def chunks():  # type: ignore[no-untyped-def]
        yield pb.GenerationChunk(start=start)
        await accepted.wait()  # as GuardrailClient does: no text into a stream the server may still refuse
        at = 0
        t0 = time.perf_counter()
        for i, tok in enumerate(toks):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            at += len(tok)
            ends.append(at)
            sent.append(time.perf_counter())
            yield pb.GenerationChunk(delta=tok)
        closed_at.append(time.perf_counter())
        yield pb.GenerationChunk(close=pb.GenerationClose())

    try:
        async for reply in stub.CheckGeneration(chunks(), timeout=120):
            accepted.set()
            now = time.perf_counter()
            kind = reply.WhichOneof("verdict")
            if kind == "sentence":
                end = reply.sentence.end
                k = next(i for i, e in enumerate(ends) if e >= end)
                run.sentence_s.append(now - sent[k])
                run.server_s.append(reply.sentence.latency.ToNanoseconds() / 1e9)
            elif kind == "final":
                run.final_s = now - closed_at[0] if closed_at else float("nan")
                run.decision = reply.final.response.decision
    except grpc.aio.AioRpcError as err:
        run.error = err.code().name
    finally:
        accepted.set()
    return run


async def sequential(target: str, requests: Sequence[pb.CheckRequest], rate: float) -> tuple[list[StreamRun], list[float]]:
    runs, unary = [], []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GuardrailServiceStub(channel)
        for request in requests:
            runs.append(await one_stream(stub, request, rate))
            t0 = time.perf_counter()
            await stub.Check(request, timeout=60)
            unary.append(time.perf_counter() - t0)
    return runs, unary


async def concurrent(target: str, requests: Sequence[pb.CheckRequest], rate: float, streams: int, seconds: float,
                     stagger_s: float) -> list[StreamRun]:
    runs: list[StreamRun] = []
    stop = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GuardrailServiceStub(channel)

        async def user(u: int) -> None:
            i = u
            await asyncio.sleep(u * stagger_s / max(1, streams))  # arrivals spread over one stream's length
            while time.perf_counter() < stop and i < len(requests):
                runs.append(await one_stream(stub, requests[i], rate))
                i += streams

        await asyncio.gather(*(user(u) for u in range(streams)))
    return runs


def ms(x: float) -> float:
    return x * 1000


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.streaming", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=12, help="cases of part 1")
    ap.add_argument("--rate", type=float, default=20.0, help="tokens per second per stream")
    ap.add_argument("--streams", default="10,25,50", help="concurrency levels of part 2 (empty: skip)")
    ap.add_argument("--seconds", type=float, default=25.0, help="length of each concurrency level")
    ap.add_argument("--set", action="append", default=[], help="server config override key=value (repeatable)")
    args = ap.parse_args(argv)

    from bench.check_latency import make_cases
    from guardrail_models.zoo import ModelZoo

    levels = [int(x) for x in args.streams.split(",") if x.strip()]
    count = ModelZoo().nli().token_count
    per_stream_s = 100 / args.rate
    needed = args.cases + 2 + sum(level * (int(args.seconds / per_stream_s) + 2) for level in levels)
    cases = make_cases(needed, 500, count, seed=22)  # part 2 never repeats a case (no cache hit across streams)
    requests = [request_from_case(c) for c in cases]
    warm, first, rest = requests[:2], requests[2 : 2 + args.cases], requests[2 + args.cases :]
    print(f"bench.streaming: cases of 5 sentences over ~500-token contexts "
          f"({sum(len(tokens(r.response)) for r in first) / len(first):.0f} tokens each), {args.rate:g} tokens/s; "
          f"{machine_line()}", flush=True)
    base = {"workers": {"mode": "process", "count": 2}}
    rows1 = []
    # the same cases, cold: a server whose model cache is off (every call scores everything)
    with ServerProcess(config={**base, "models": {"cache_size": 0}}, sets=args.set) as cold:
        asyncio.run(sequential(cold.target, warm, args.rate))
        runs_cold, unary_cold = asyncio.run(sequential(cold.target, first, args.rate))
    with ServerProcess(config=base, sets=args.set) as server:
        print(f"server SERVING after {server.started_s:.0f}s (process workers: 2)", flush=True)
        asyncio.run(sequential(server.target, warm, args.rate))
        runs, unary_warm = asyncio.run(sequential(server.target, first, args.rate))
        for label, rs in (("model cache on (default)", runs), ("model cache off", runs_cold)):
            sentence = [x for r in rs for x in r.sentence_s]
            server_side = [x for r in rs for x in r.server_s]
            finals = [r.final_s for r in rs]
            rows1 += [
                (f"sentence verdict after its last token, {label}", ms(pct(sentence, 0.5)), ms(pct(sentence, 0.9)),
                 len(sentence)),
                ("  the server's figure, from its last character", ms(pct(server_side, 0.5)),
                 ms(pct(server_side, 0.9)), len(server_side)),
                (f"final verdict after the close, {label}", ms(pct(finals, 0.5)), ms(pct(finals, 0.9)), len(finals)),
            ]
        rows1 += [("unary Check of the full text, cold (cache off)", ms(pct(unary_cold, 0.5)),
                   ms(pct(unary_cold, 0.9)), len(unary_cold)),
                  ("unary Check of the full text, after its stream (cache on)", ms(pct(unary_warm, 0.5)),
                   ms(pct(unary_warm, 0.9)), len(unary_warm))]
        print("\n1. one stream at a time, beside unary Check on the same cases (a sentence's figure includes "
              f"waiting for the next token, {1000 / args.rate:.0f} ms, which proves where it ends)")
        print(table(["measure", "p50 ms", "p90 ms", "n"], rows1), flush=True)
        errors = [r.error for r in runs + runs_cold if r.error]
        if errors:
            print(f"errors: {errors}")
        rows = []
        for level in levels:
            before = server.metrics()
            take, rest = rest[: level * (int(args.seconds / per_stream_s) + 2)], rest[level * (int(args.seconds / per_stream_s) + 2):]
            got = asyncio.run(concurrent(server.target, take, args.rate, level, args.seconds, per_stream_s))
            after = server.metrics()
            sentence = [x for r in got for x in r.sentence_s]
            finals = [r.final_s for r in got if not r.error]
            refused = sum(r.error == "RESOURCE_EXHAUSTED" for r in got)
            other = sum(bool(r.error) and r.error != "RESOURCE_EXHAUSTED" for r in got)
            fail_open = delta(before, after, "guardrail_fail_open_total")
            shed = delta(before, after, "guardrail_shed_total", kind="generation")
            stalls = loop_stalls_over(after) - loop_stalls_over(before)
            p90 = pct(sentence, 0.9)
            held = not refused and not other and not fail_open and not shed and p90 <= 2.0
            rows.append((level, len(got), refused, other, int(fail_open), ms(pct(sentence, 0.5)), ms(p90),
                         ms(pct(finals, 0.5)), ms(pct(finals, 0.9)), int(stalls), "yes" if held else "no"))
            codes = sorted({r.error for r in got if r.error})
            print(f"  {level} streams done; shed: streams_full "
                  f"{delta(before, after, 'guardrail_shed_total', kind='generation', reason='streams_full'):.0f}, behind "
                  f"{delta(before, after, 'guardrail_shed_total', kind='generation', reason='behind'):.0f}; "
                  f"error codes {codes or '-'}", flush=True)
        if rows:
            print(f"\n2. concurrent streams at {args.rate:g} tokens/s, {args.seconds:g} s each, a new case per stream")
            print(table(["streams", "runs", "refused", "errors", "fail-open", "sentence p50 ms", "sentence p90 ms",
                         "final p50 ms", "final p90 ms", "loop stalls", "held"], rows))
        print(f"\nserver RSS at the end: {server.rss()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
