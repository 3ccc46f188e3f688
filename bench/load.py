"""Load shedding under real load (issue 13): find the saturation point, then offer 1x, 2x and 4x of it.

    python -m bench.load [--step-seconds 20] [--cases all|halueval|wice] [--set key=value ...] [--try NAME:key=value,...]

Each variant starts its own real `guardrail serve` (default config: all four real invariants, process check workers;
`--set` flags apply to every variant, `--try` adds a variant with its own flags). Cases are realistic: HaluEval QA
and WiCE claims from `/work/shared/data/dev/` — passages with ids, the response with citations (some dangling), two
sampled responses for self_consistency.

Per variant: the unloaded p50/p99 (one call at a time: the baseline); a closed-loop concurrency ramp whose best
admitted throughput is the saturation point; then open-loop (Poisson) unary and CheckStream load at 1x, 2x and 4x
saturation — offered rate, admitted and shed rates (client RESOURCE_EXHAUSTED and `guardrail_shed_total`), p50/p99
of admitted calls, fail-opens (`guardrail_fail_open_total` delta, and ERROR verdicts the client saw), other errors,
RSS; last a mixed run: one CheckStream client flooding at 4x while unary clients call at `--mixed-unary` x. The
offered rates of every variant come from the first variant's saturation (`--rate` to fix it), so variants face the
same load; each variant's own saturation is printed too. The goal (issue 13): at 4x, admitted p99 <= 3x the unloaded
p50 and 0 fail-opens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.harness import Rss, Samples, ServerProcess, delta, machine_line, own_cpu_seconds, pct, table
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_client.client import build_request

DATA = Path("/work/shared/data/dev")
STATUS_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


# ------------------------------------------------------------------------------------------------ cases


def _halueval(path: Path) -> list[pb.CheckRequest]:
    """QA with its two knowledge paragraphs as passages; samples: the right and the hallucinated answer."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    answers: dict[int, list[str]] = {}
    for r in rows:
        answers.setdefault(r["meta"]["orig_index"], []).append(r["response"])
    out = []
    for i, r in enumerate(rows):
        paragraphs = [p for p in re.split(r"(?<=[a-z0-9)]\.)(?=[A-Z])", r["context"]) if p.strip()]
        ctx = [{"id": f"kb-{k}", "text": p, "title": r["question"][:60]} for k, p in enumerate(paragraphs, 1)]
        cite = f"[kb-{1 + i % len(ctx)}]" if i % 5 else f"[kb-{len(ctx) + 1}]"  # every 5th cites a missing passage
        out.append(build_request(f"{r['response']} {cite}", question=r["question"], context=ctx,
                                 samples=answers[r["meta"]["orig_index"]], request_id=f"halueval-{i}"))
    return out


def _wice(path: Path) -> list[pb.CheckRequest]:
    """A Wikipedia claim against its retrieved evidence in passages of 5 sentences; cites the passage that holds the
    first oracle sentence; samples: the claim and the evidence's first sentence."""
    out = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        r = json.loads(line)
        sents = r["context"]
        ctx = [{"id": str(k // 5 + 1), "text": " ".join(sents[k:k + 5]), "url": f"https://wice.example/{i}/{k // 5}"}
               for k in range(0, len(sents), 5)]
        order = r["meta"].get("evidence_sentence_idx") or []
        oracle = [order.index(x) for x in r["meta"].get("oracle_supporting_idx") or [] if x in order]
        cite = f"[{oracle[0] // 5 + 1}]" if oracle else "[1]"
        out.append(build_request(f"{r['response']} {cite}", question=f"Tell me about {r['meta'].get('claim_title')}.",
                                 context=ctx, samples=[r["response"], sents[0]], request_id=f"wice-{i}"))
    return out


CASE_SETS = ("all", "halueval", "wice")


def load_cases(data: Path = DATA, seed: int = 13, which: str = "all") -> list[pb.CheckRequest]:
    """HaluEval and WiCE cases interleaved, in a seeded order. `which` picks one kind: HaluEval's short answers over
    two paragraphs cost about the same per call, so their latency spread is the server's, not the mix's."""
    cases = (_halueval(data / "halueval_qa.jsonl") if which in ("all", "halueval") else []) \
        + (_wice(data / "wice_claims.jsonl") if which in ("all", "wice") else [])
    random.Random(seed).shuffle(cases)
    return cases


# ------------------------------------------------------------------------------------------------ calls


@dataclass(slots=True)
class Call:
    """One request: when it was sent (monotonic), how long until its answer, the status, and ERROR verdicts in an
    answered reply (what a caller sees of a fail-open)."""

    kind: str
    sent: float
    latency: float
    status: str
    error_verdicts: int = 0


def _errors(reply: pb.CheckResponse) -> int:
    return sum(1 for r in reply.results if r.outcome == pb.ERROR)


class Target:
    """Requests to send (cycled) and the channel to send them on."""

    def __init__(self, address: str, cases: Sequence[pb.CheckRequest], deadline_s: float = 10.0) -> None:
        self.address = address
        self.cases = list(cases)
        self.deadline_s = deadline_s
        self._n = 0

    def next(self, tag: str) -> pb.CheckRequest:
        req = pb.CheckRequest()
        req.CopyFrom(self.cases[self._n % len(self.cases)])
        req.request_id = f"{tag}-{self._n}"
        self._n += 1
        return req


async def unary_call(stub: pb_grpc.GuardrailServiceStub, req: pb.CheckRequest, deadline_s: float) -> Call:
    t0 = time.monotonic()
    try:
        reply = await stub.Check(req, timeout=deadline_s)
        return Call("unary", t0, time.monotonic() - t0, "OK", _errors(reply))
    except grpc.aio.AioRpcError as err:
        return Call("unary", t0, time.monotonic() - t0, err.code().name)


async def sequential(target: Target, n: int) -> list[Call]:
    """One call at a time: the unloaded latency."""
    async with grpc.aio.insecure_channel(target.address) as ch:
        stub = pb_grpc.GuardrailServiceStub(ch)
        return [await unary_call(stub, target.next("seq"), target.deadline_s) for _ in range(n)]


async def closed_loop(target: Target, concurrency: int, seconds: float, shed_backoff_s: float = 0.05) -> list[Call]:
    """`concurrency` callers, each sending its next call when the last one returns (after a short back-off when it
    was shed, as a client with retries would)."""
    calls: list[Call] = []
    end = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target.address) as ch:
        stub = pb_grpc.GuardrailServiceStub(ch)

        async def caller() -> None:
            while time.monotonic() < end:
                call = await unary_call(stub, target.next(f"c{concurrency}"), target.deadline_s)
                calls.append(call)
                if call.status != "OK":
                    await asyncio.sleep(shed_backoff_s)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return calls


def _arrivals(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Poisson arrival offsets in [0, seconds)."""
    out, t = [], rng.expovariate(rate)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate)
    return out


async def open_loop_unary(target: Target, rate: float, seconds: float, rng: random.Random, tag: str = "u"
                          ) -> list[Call]:
    """Unary calls arriving at `rate`/s (Poisson) whatever the answers: the offered load does not back off."""
    async with grpc.aio.insecure_channel(target.address) as ch:
        stub = pb_grpc.GuardrailServiceStub(ch)
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for at in _arrivals(rate, seconds, rng):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            tasks.append(asyncio.ensure_future(unary_call(stub, target.next(tag), target.deadline_s)))
        return list(await asyncio.gather(*tasks))


async def open_loop_stream(target: Target, rate: float, seconds: float, rng: random.Random, tag: str = "s"
                           ) -> list[Call]:
    """One CheckStream call whose requests arrive at `rate`/s (Poisson). A request the server refuses comes back with
    `error_code`; a write the transport holds back (the server's stream window is full) delays the ones after it —
    the requests sent are counted, so the offered and the sent rate can be compared."""
    sent: dict[str, float] = {}
    calls: list[Call] = []
    async with grpc.aio.insecure_channel(target.address) as ch:
        stub = pb_grpc.GuardrailServiceStub(ch)
        call = stub.CheckStream(timeout=seconds + target.deadline_s + 30)

        async def reader() -> None:
            async for reply in call:
                t0 = sent.pop(reply.request_id, None)
                if t0 is None:
                    continue
                status = STATUS_NAMES.get(reply.error_code, str(reply.error_code)) if reply.error_code else "OK"
                calls.append(Call("stream", t0, time.monotonic() - t0, status, _errors(reply)))

        reading = asyncio.ensure_future(reader())
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for at in _arrivals(rate, seconds, rng):
                if loop.time() > start + seconds:
                    break  # the transport held writes back past the step: what was not sent is not offered
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                req = target.next(tag)
                sent[req.request_id] = time.monotonic()
                await call.write(req)
            await call.done_writing()
            await asyncio.wait_for(reading, timeout=target.deadline_s + 30)
        except (grpc.aio.AioRpcError, asyncio.TimeoutError) as err:
            call.cancel()
            status = err.code().name if isinstance(err, grpc.aio.AioRpcError) else "DEADLINE_EXCEEDED"
            calls += [Call("stream", t0, time.monotonic() - t0, status) for t0 in sent.values()]
        finally:
            reading.cancel()
    return calls


# ------------------------------------------------------------------------------------------------ steps


@dataclass
class Step:
    """One measured interval: the calls, and the server's counters and RSS around it."""

    variant: str
    name: str
    kind: str
    offered_rate: float
    seconds: float
    calls: list[Call]
    before: Samples = field(default_factory=dict)
    after: Samples = field(default_factory=dict)
    rss: Rss | None = None
    server_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the step, by role
    bench_cpu_s: float = math.nan  # ... and this load generator (every thread of this process)
    wall_s: float = math.nan  # the step's own duration (the drain of the last calls included)

    def of(self, kind: str | None = None) -> list[Call]:
        return [c for c in self.calls if kind is None or c.kind == kind]

    def admitted(self, kind: str | None = None) -> list[Call]:
        return [c for c in self.of(kind) if c.status == "OK"]

    def shed(self, kind: str | None = None) -> list[Call]:
        return [c for c in self.of(kind) if c.status == "RESOURCE_EXHAUSTED"]

    def errors(self, kind: str | None = None) -> list[Call]:
        return [c for c in self.of(kind) if c.status not in ("OK", "RESOURCE_EXHAUSTED")]

    def p(self, q: float, kind: str | None = None) -> float:
        return pct([c.latency for c in self.admitted(kind)], q)

    @property
    def shed_metric(self) -> float:
        return delta(self.before, self.after, "guardrail_shed_total")

    @property
    def fail_opens(self) -> float:
        return delta(self.before, self.after, "guardrail_fail_open_total")

    def visible_errors(self, kind: str | None = None) -> int:
        return sum(c.error_verdicts for c in self.admitted(kind))

    @property
    def server_cpu_s(self) -> float:
        """CPU seconds the server and its workers used during the step."""
        return sum(self.server_cpu.values()) if self.server_cpu else math.nan

    def cpu_per_check_ms(self, role: str) -> float:
        n = len(self.admitted())
        return 1000.0 * self.server_cpu.get(role, 0.0) / n if n else math.nan

    @property
    def server_cores(self) -> float:
        """Cores the server (with its check workers and redaction worker) kept busy on average during the step."""
        return self.server_cpu_s / self.wall_s

    @property
    def bench_cores(self) -> float:
        """Cores this load generator used on average: on a shared machine, taken from what the server could use."""
        return self.bench_cpu_s / self.wall_s

    @property
    def per_core_second(self) -> float:
        """Admitted (answered) checks per CPU second the server consumed: its capacity per core, whatever else ran."""
        return len(self.admitted()) / self.server_cpu_s if self.server_cpu_s > 0 else math.nan


async def measured(server: ServerProcess, variant: str, name: str, kind: str, rate: float, seconds: float,
                   run: Callable[[], Any]) -> Step:
    before = await asyncio.to_thread(server.metrics)
    cpu0, own0, t0 = server.cpu_seconds(), own_cpu_seconds(), time.monotonic()
    calls = await run()
    cpu1, own1, t1 = server.cpu_seconds(), own_cpu_seconds(), time.monotonic()
    after = await asyncio.to_thread(server.metrics)
    return Step(variant, name, kind, rate, seconds, calls, before, after, server.rss(),
                {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}, own1 - own0, t1 - t0)


async def mixed(target: Target, stream_rate: float, unary_rate: float, seconds: float, rng: random.Random
                ) -> list[Call]:
    """A CheckStream client flooding while unary clients call: both at once, on their own channels."""
    stream, unary = await asyncio.gather(open_loop_stream(target, stream_rate, seconds, random.Random(rng.random()),
                                                          "mix-s"),
                                         open_loop_unary(target, unary_rate, seconds, random.Random(rng.random()),
                                                         "mix-u"))
    return stream + unary


@dataclass
class VariantResult:
    name: str
    sets: list[str]
    started_s: float
    unloaded: Step
    ramp: list[Step]
    saturation: float
    saturation_concurrency: int
    steps: list[Step]
    machine: str
    top: str  # the name of the highest multiple's steps ("4x")


def saturation_of(ramp: Sequence[Step]) -> tuple[float, int]:
    """The best admitted throughput of the ramp, and the smallest concurrency reaching 95% of it."""
    rates = [(len(s.admitted()) / s.seconds, int(s.name.removeprefix("c="))) for s in ramp]
    best = max(r for r, _ in rates)
    return best, min(c for r, c in rates if r >= 0.95 * best)


async def run_variant(server: ServerProcess, name: str, cases: Sequence[pb.CheckRequest], *, step_seconds: float,
                      ramp: Sequence[int], multiples: Sequence[float], rate: float | None, mixed_unary: float,
                      unloaded_calls: int, deadline_s: float, seed: int,
                      progress: Callable[[str], None] = lambda s: None) -> VariantResult:
    target = Target(server.target, cases, deadline_s)
    rng = random.Random(seed)
    await sequential(target, 5)  # warm-up: first-call costs (spaCy vocab, ONNX arenas) are not the baseline
    unloaded = await measured(server, name, "unloaded", "unary", math.nan, math.nan,
                              lambda: sequential(target, unloaded_calls))
    progress(f"{name}: unloaded p50 {unloaded.p(0.5) * 1e3:.0f} ms")
    ramp_steps = []
    for c in ramp:
        ramp_steps.append(await measured(server, name, f"c={c}", "unary", math.nan, step_seconds,
                                         lambda c=c: closed_loop(target, c, step_seconds)))
        progress(f"{name}: ramp c={c}: {len(ramp_steps[-1].admitted()) / step_seconds:.1f} admitted/s")
    sat, sat_c = saturation_of(ramp_steps)
    ref = rate if rate is not None else sat
    steps = []
    for kind, fn in (("unary", open_loop_unary), ("stream", open_loop_stream)):
        for m in multiples:
            r = ref * m
            steps.append(await measured(server, name, f"{m:g}x", kind, r, step_seconds,
                                        lambda r=r, fn=fn: fn(target, r, step_seconds, random.Random(rng.random()))))
            progress(f"{name}: {kind} {m:g}x: {len(steps[-1].admitted()) / step_seconds:.1f} admitted/s, "
                     f"p99 {steps[-1].p(0.99) * 1e3:.0f} ms")
    steps.append(await measured(server, name, f"mixed {max(multiples):g}x+{mixed_unary:g}x", "mixed",
                                ref * (max(multiples) + mixed_unary), step_seconds,
                                lambda: mixed(target, ref * max(multiples), ref * mixed_unary, step_seconds, rng)))
    return VariantResult(name, list(server.sets), server.started_s, unloaded, ramp_steps, sat, sat_c, steps,
                         machine_line(), f"{max(multiples):g}x")


# ------------------------------------------------------------------------------------------------ report


def ms(x: float) -> float:
    return x * 1e3


def report(results: Sequence[VariantResult], ref_rate: float) -> str:
    out = []
    out.append(table(
        ["variant", "server flags", "start s", "unloaded p50 ms", "p99 ms", "saturation /s", "at concurrency"],
        [[r.name, " ".join(r.sets) or "(defaults)", r.started_s, ms(r.unloaded.p(0.5)), ms(r.unloaded.p(0.99)),
          r.saturation, r.saturation_concurrency] for r in results]))
    out.append("\nconcurrency ramp (closed loop; a shed caller backs off 50 ms). CPU: cores kept busy on average by "
               "the server (with its workers) and by this load generator, from /proc/<pid>/stat; checks per server "
               "core-second = admitted checks / the server's CPU seconds")
    out.append(table(["variant", "concurrency", "admitted /s", "shed /s", "p50 ms", "p99 ms", "fail-opens",
                      "server cores", "bench cores", "checks/core-s"],
                     [[r.name, s.name, len(s.admitted()) / s.seconds, len(s.shed()) / s.seconds, ms(s.p(0.5)),
                       ms(s.p(0.99)), s.fail_opens, s.server_cores, s.bench_cores, s.per_core_second]
                      for r in results for s in r.ramp]))
    out.append(f"\nopen-loop load (Poisson), multiples of {ref_rate:.1f}/s; p50/p99 of admitted calls; fail-opens = "
               "guardrail_fail_open_total delta (ERROR verdicts seen by clients)")
    rows = []
    for r in results:
        base = r.unloaded.p(0.5)
        for s in r.steps:
            kinds = ["stream", "unary"] if s.kind == "mixed" else [s.kind]
            for k in kinds:
                n = len(s.of(k))
                seen = f"({s.visible_errors(k)})"
                rows.append([r.name, f"{s.name} {k}", n / s.seconds, len(s.admitted(k)) / s.seconds,
                             len(s.shed(k)) / s.seconds, f"{len(s.shed(k))}/{n}",
                             f"{s.shed_metric:.0f}" if k == kinds[0] else "", ms(s.p(0.5, k)), ms(s.p(0.99, k)),
                             s.p(0.99, k) / base if base else math.nan,
                             f"{s.fail_opens:.0f} {seen}" if k == kinds[0] else seen,
                             len(s.errors(k)), f"{s.rss.total_mb:.0f}" if s.rss else "-",
                             s.server_cores if k == kinds[0] else "", s.bench_cores if k == kinds[0] else "",
                             s.per_core_second if k == kinds[0] else ""])
    out.append(table(["variant", "step", "sent /s", "admitted /s", "shed /s", "shed/sent", "shed_total", "p50 ms",
                      "p99 ms", "p99/unloaded p50", "fail-opens", "errors", "RSS MB", "server cores", "bench cores",
                      "checks/core-s"], rows))
    out.append("\ngoal (issue 13): at 4x saturation admitted p99 <= 3x unloaded p50, 0 fail-opens; unary admitted "
               "while a stream floods")
    goal = []
    for r in results:
        base = r.unloaded.p(0.5)
        top = [s for s in r.steps if s.name == r.top]
        worst = max((s.p(0.99) for s in top), default=math.nan)
        fo = sum(s.fail_opens for s in r.steps) + sum(s.fail_opens for s in r.ramp)
        mix = next(s for s in r.steps if s.kind == "mixed")
        unary_ok = len(mix.admitted("unary")) / max(1, len(mix.of("unary")))
        ok = worst <= 3 * base and fo == 0 and unary_ok > 0.5
        goal.append([r.name, ms(base), ms(worst), worst / base, fo, f"{unary_ok:.0%}", "MET" if ok else "not met"])
    out.append(table(["variant", "unloaded p50 ms", "worst 4x p99 ms", "ratio", "fail-opens (all steps)",
                      "mixed: unary admitted", "goal"], goal))
    out.append("(a single call's own spread bounds what admission can do: unloaded p99/p50 = "
               + ", ".join(f"{r.name} {r.unloaded.p(0.99) / r.unloaded.p(0.5):.1f}" for r in results) + ")")
    out.append("\n" + capacity(results))
    return "\n".join(out)


def capacity(results: Sequence[VariantResult]) -> str:
    """What a check costs in CPU, by process, at the saturation step of the ramp, and what that predicts for more
    cores: checks/s on C cores ~ C / (CPU seconds per check), with workers.count = C and nothing else on them (the
    load generator not on them either), while the server process's own share stays under one core (its event loop
    is one thread: past 1 / (its CPU per check) it is the limit, whatever the cores)."""
    rows = []
    for r in results:
        sat = max(r.ramp, key=lambda s: len(s.admitted()) / s.seconds)
        roles = [sat.cpu_per_check_ms(k) for k in ("server", "workers", "redaction")]
        per_check = sum(x for x in roles if not math.isnan(x)) / 1000.0
        bench = 1000.0 * sat.bench_cpu_s / max(1, len(sat.admitted()))
        loop_cap = 1000.0 / roles[0] if roles[0] and not math.isnan(roles[0]) else math.nan
        predicted = [min(c / per_check, loop_cap) if per_check else math.nan for c in (2, 4, 8)]
        rows.append([r.name, sat.name, len(sat.admitted()) / sat.seconds, sat.server_cores, sat.bench_cores,
                     *roles, bench, sat.per_core_second, *predicted, loop_cap])
    head = ("capacity at the saturation step (closed loop): CPU ms per admitted check by process, measured from "
            "/proc/<pid>/stat; prediction = cores / CPU per check (workers.count = cores, the machine to itself), "
            "capped by the server process's one-thread loop")
    return head + "\n" + table(
        ["variant", "step", "admitted /s", "server cores", "bench cores", "server-process ms", "workers ms",
         "redaction ms", "bench ms", "checks/core-s", "pred. 2 cores /s", "pred. 4 cores /s", "pred. 8 cores /s",
         "loop cap /s"], rows)


def parse_try(spec: str) -> tuple[str, list[str]]:
    """`NAME:key=value,key=value` -> (NAME, ["key=value", ...])."""
    name, _, flags = spec.partition(":")
    return name, [f for f in flags.split(",") if f]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--step-seconds", type=float, default=20.0)
    ap.add_argument("--ramp", default="1,2,3,4,6,8", help="closed-loop concurrencies (default %(default)s)")
    ap.add_argument("--multiples", default="1,2,4", help="open-loop load as multiples of saturation")
    ap.add_argument("--rate", type=float, default=None, help="saturation rate to use instead of the first variant's")
    ap.add_argument("--mixed-unary", type=float, default=0.5, help="unary rate in the mixed run (x saturation)")
    ap.add_argument("--unloaded-calls", type=int, default=60)
    ap.add_argument("--deadline", type=float, default=10.0, help="client deadline of each call (s)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--cases", choices=CASE_SETS, default="all", help="which dev cases to send (default %(default)s)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every variant's `guardrail serve --set` (repeatable)")
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="another variant with these --set flags (repeatable); the defaults run first")
    ap.add_argument("--no-defaults", action="store_true", help="run only the --try variants")
    ap.add_argument("--nice", type=int, default=0, help="run the servers under `nice -n`")
    args = ap.parse_args(argv)
    variants = ([] if args.no_defaults else [("defaults", [])]) + [parse_try(t) for t in args.tries]
    cases = load_cases(seed=args.seed, which=args.cases)
    ramp = [int(x) for x in args.ramp.split(",")]
    multiples = [float(x) for x in args.multiples.split(",")]
    results: list[VariantResult] = []
    ref = args.rate
    for name, flags in variants:
        with ServerProcess(sets=[*args.sets, *flags], nice=args.nice) as server:
            print(f"{name}: SERVING after {server.started_s:.1f} s; {server.rss()}; {machine_line()}", flush=True)
            result = asyncio.run(run_variant(
                server, name, cases, step_seconds=args.step_seconds, ramp=ramp, multiples=multiples, rate=ref,
                mixed_unary=args.mixed_unary, unloaded_calls=args.unloaded_calls, deadline_s=args.deadline,
                seed=args.seed, progress=lambda s: print(f"  {time.strftime('%H:%M:%S')} {s}", flush=True)))
            results.append(result)
            if ref is None:
                ref = result.saturation
    kinds = {"all": "HaluEval QA + WiCE claims", "halueval": "HaluEval QA only", "wice": "WiCE claims only"}
    print(f"\nbench.load: {len(cases)} cases ({kinds[args.cases]}; citations, 2 samples each), steps of "
          f"{args.step_seconds:g} s, client deadline {args.deadline:g} s; {machine_line()}\n")
    assert ref is not None
    print(report(results, ref))
    return 0


if __name__ == "__main__":
    sys.exit(main())
