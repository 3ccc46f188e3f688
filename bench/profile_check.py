"""Where the milliseconds of a realistic full check go (issue 20, item 2), and what each lever buys.

    python -m bench.profile_check [--cases 40] [--tokens 1500] [--seed 20] [--server] [--set key=value ...]
    python -m bench.profile_check --levers [--lever NAME ...] [--cases 40] [--seconds 15] [--accuracy-limit 150]

The case: a 5-sentence answer (a WiCE claim, three sentences of its evidence, one sentence from another article; about
60% carry a citation) over 3-5 passages of ~1,500 NLI tokens in all (its own evidence first, then passages of other
WiCE articles), a question, two sampled answers of 4-5 sentences: all four invariants have work, in the default
configuration. Built from `/work/shared/data/dev/wice_claims.jsonl` (seeded; see `realistic_cases`).

Profile (default): the invariants run in this process exactly as a check worker runs them (`InlineRunner`, one
onnxruntime thread, the model cache off, every per-text cache cleared before each case: each context is new):
  1. each invariant alone, and the full check (the four at once, as a worker runs them): p50 / p99;
  2. the time of each stage — sentence splitting (pysbd), token counting and windows, BM25, tokenization for the
     models, NLI inference, the embedding pass, the hybrid judge's features, citations, Presidio and spaCy —
     exclusive wall time per check (a stage's callees are their own rows), per invariant, from explicit timers
     wrapped around those functions for the run (the code is not changed); `other` is the invariant's time no
     stage accounts for (asyncio, thread hops, Python glue);
  3. the NLI pairs and embedding texts per check: how many, their token lengths (p50 / p90 / max), ms per pair;
  4. serialization: pickling the case and its verdicts (the worker pipe), building and parsing the protobuf
     request and reply;
  5. with `--server`: the same cases through a real `guardrail serve` (process workers, gRPC, one call at a time):
     the worker hop = server p50 minus the in-process full check p50.

Levers (`--levers`): each lever alone, beside today's code, in one table from one run: the server's CPU time per
check (the server, its check workers and redaction worker, from /proc/<pid>/stat, one call at a time: on shared cores
the figure that other jobs disturb least), p50 / p99 of one call at a time and checks/s (closed loop, 4 callers) through a real server (2 process workers, default config — review
sampling and its redaction worker included — plus the lever's `--set` flags; the model cache off unless the lever
is the cache, and every call a case not sent before), NLI pairs per check, and — for the levers that change entailment scoring — dev AUROC on slices of
halueval_qa and wice_claims through `bench.nli_eval.evaluate_set` (the `guardrail eval` path). Full-set accuracy:
`python -m bench.nli_eval`.

On 2 shared cores, pause other CPU-heavy jobs while timing and say so; the bench prints the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import pickle
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.harness import machine_line, pct, table
from guardrail_invariants.types import Case, Passage

DATA = Path("/work/shared/data/dev")
INVARIANTS = ("reference_integrity", "entailment", "pii_boundary", "self_consistency")


# ------------------------------------------------------------------------------------------------ cases


def _sentences(row: dict[str, Any]) -> list[str]:
    return [s.strip() for s in row["context"] if len(s.split()) >= 4 and not s.startswith("(meta data)")]


def realistic_cases(n: int, count_tokens: Callable[[str], int], *, seed: int = 20, tokens: int = 1500,
                    data: Path = DATA) -> list[Case]:
    """`n` full-check cases (see the module doc): passages of ~`tokens`/4 tokens until ~`tokens` in all (3-5 of them),
    the claim's own evidence first; a 5-sentence answer; two sampled answers. Deterministic for a seed."""
    rows = [json.loads(line) for line in (data / "wice_claims.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if len(_sentences(r)) >= 6]
    rng = random.Random(seed)
    per_passage = max(60, tokens // 4)
    cases = []
    for k in range(n):
        row = rows[rng.randrange(len(rows))]
        own = _sentences(row)
        passages: list[str] = []
        total = 0

        def pack(sents: Sequence[str], limit: int) -> None:
            nonlocal total
            chunk: list[str] = []
            size = 0
            for s in sents:
                t = count_tokens(s)
                if chunk and size + t > per_passage:
                    passages.append(" ".join(chunk))
                    total += size
                    chunk, size = [], 0
                    if len(passages) >= limit or total >= tokens:
                        return
                chunk.append(s)
                size += t
            if chunk and len(passages) < limit and total < tokens:
                passages.append(" ".join(chunk))
                total += size

        pack(own, 3)
        own_text = set(" ".join(passages).split(". "))
        while (total < tokens * 0.9 or len(passages) < 3) and len(passages) < 5:
            other = _sentences(rows[rng.randrange(len(rows))])
            start = rng.randrange(max(1, len(other) - 10))
            before = len(passages)
            pack(other[start:], before + 1)
            if len(passages) == before:
                break
        pool = [s for s in own if 6 <= len(s.split()) <= 40 and any(s in p for p in passages[:3])] or own[:6]
        copied = rng.sample(pool, min(3, len(pool)))
        foreign = [s for s in _sentences(rows[rng.randrange(len(rows))]) if 6 <= len(s.split()) <= 40
                   and s not in own_text] or ["The company was founded in 1990 by two engineers."]
        answer = [row["response"].strip(), *copied, rng.choice(foreign)]
        cited = [f"{s.rstrip('.')} [{1 + rng.randrange(len(passages))}]." if rng.random() < 0.6 else s for s in answer]
        alt = [s for s in pool if s not in copied]
        samples = (" ".join(rng.sample(answer, len(answer))),
                   " ".join([row["response"].strip(), *rng.sample(alt or pool, min(3, len(alt or pool)))]))
        title = row["meta"].get("claim_title") or "the subject"
        cases.append(Case(response=" ".join(cited), question=f"What do the sources say about {title}?",
                          context=tuple(Passage(str(i + 1), t, title=title) for i, t in enumerate(passages)),
                          samples=samples, request_id=f"profile-{seed}-{k}"))
    return cases


# ------------------------------------------------------------------------------------------------ stage timers


class StageTimer:
    """Exclusive wall time per labelled stage, on whichever thread the stage runs (a stack per thread): a wrapped
    function's time minus its wrapped callees'. Patches are undone by `undo()`."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.on = False
        self._local = threading.local()
        self._patches: list[tuple[Any, str, Any]] = []

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        timer = self

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not timer.on:
                return fn(*args, **kwargs)
            stack = getattr(timer._local, "stack", None)
            if stack is None:
                stack = timer._local.stack = []
            frame = [0.0]
            stack.append(frame)
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - began
                stack.pop()
                timer.wall[label] += spent - frame[0]
                timer.calls[label] += 1
                if stack:
                    stack[-1][0] += spent

        return timed

    def patch(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        self._patches.append((owner, attr, original))
        setattr(owner, attr, self.wrap(label, original))

    def reset(self) -> None:
        self.wall.clear()
        self.calls.clear()

    def undo(self) -> None:
        for owner, attr, original in reversed(self._patches):
            setattr(owner, attr, original)
        self._patches.clear()


@dataclass
class Recorder:
    """Every NLI pair and embedding text a check sent to the runtimes (to count them and their tokens afterwards)."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    on: bool = False


def instrument() -> tuple[StageTimer, Recorder]:
    """Timers around the stages of a check (see the module doc). Imports every invariant's modules first."""
    from guardrail_invariants import citations, entailment, pii_boundary, self_consistency, text
    from guardrail_invariants.pii import detect, engine, names
    from guardrail_models import runtime

    timer, rec = StageTimer(), Recorder()
    timer.patch(text, "_split", "sentence split (pysbd)")
    timer.patch(runtime.NliRuntime, "token_count", "token counts (windows)")
    for module in (entailment, self_consistency):
        timer.patch(module, "make_windows", "windows")
    timer.patch(text.Bm25, "__init__", "BM25 index")
    timer.patch(text.Bm25, "scores", "BM25 scoring")
    timer.patch(runtime.NliRuntime, "encode", "NLI tokenization")
    timer.patch(runtime.NliRuntime, "predict", "NLI inference")
    timer.patch(runtime.EmbeddingRuntime, "embed", "embedding pass (tokenize + infer)")
    timer.patch(entailment, "features", "hybrid judge features")
    timer.patch(citations, "analyze", "citations (parse, resolve)")
    timer.patch(engine.OfflineSpacyNlpEngine, "process_text", "spaCy (response NER)")
    timer.patch(detect, "_analyze", "Presidio recognizers")
    timer.patch(names, "_tag_counted", "spaCy (name windows)")
    timer.patch(pii_boundary.PiiBoundaryInvariant, "_check_sync", "PII provenance and policy")

    predict, embed = runtime.NliRuntime.predict, runtime.EmbeddingRuntime.embed

    def rec_predict(self: Any, pairs: Sequence[tuple[str, str]]) -> Any:
        if rec.on:
            rec.pairs.extend(pairs)
        return predict(self, pairs)

    def rec_embed(self: Any, texts: Sequence[str]) -> Any:
        if rec.on:
            rec.texts.extend(texts)
        return embed(self, texts)

    timer._patches += [(runtime.NliRuntime, "predict", predict), (runtime.EmbeddingRuntime, "embed", embed)]
    runtime.NliRuntime.predict = rec_predict  # type: ignore[method-assign]
    runtime.EmbeddingRuntime.embed = rec_embed  # type: ignore[method-assign]
    return timer, rec


def cold(runner: Any) -> None:
    """Forget every per-text cache (sentence splits, citation contexts, PII passage indexes, model outputs), so a
    case costs what a case with a context never seen before costs."""
    from guardrail_invariants import text

    text._split_cached.cache_clear()
    for inv in getattr(runner, "invariants", {}).values():
        for attr in ("_passages", "_windows", "_identifiers"):
            cache = getattr(inv, attr, None)
            if cache is not None and hasattr(cache, "clear"):
                cache.clear()
    for model in getattr(getattr(runner, "zoo", None), "_models", {}).values():
        cache = getattr(model, "cache", None)
        if cache is not None:
            cache.__init__(cache.size)


# ------------------------------------------------------------------------------------------------ in process


def build_config(sets: Sequence[str] = ()) -> Any:
    """The default config, review off, plus `key=value` overrides (the model cache off unless a flag sets it)."""
    from guardrail_server.config import ModelsConfig, load_config, parse_set_flags

    base: list[tuple[str, Any]] = [("review.enabled", False)]
    if "cache_size" in ModelsConfig.model_fields:
        base.append(("models.cache_size", 0))
    return load_config(None, environ={}, overrides=[*base, *parse_set_flags(list(sets))])


async def start_runner(config: Any) -> Any:
    """The invariants as one check worker holds them (its onnxruntime thread count)."""
    from guardrail_models.zoo import ModelZoo
    from guardrail_server.config import zoo_settings
    from guardrail_server.workers import InlineRunner

    zoo = ModelZoo(replace(zoo_settings(config), intra_op_threads=config.workers.intra_op_threads))
    runner = InlineRunner(config, zoo)
    await runner.start()
    return runner


@dataclass
class Profile:
    cases: int
    alone: dict[str, list[float]]
    full: list[float]
    stages: dict[str, dict[str, float]]  # invariant -> stage -> seconds (sum over cases)
    calls: dict[str, dict[str, int]]
    wall: dict[str, float]  # invariant -> seconds (sum over cases)
    pairs: dict[str, list[tuple[int, int]]]  # invariant -> (pair tokens, premise tokens) per pair
    texts: dict[str, list[int]]  # invariant -> tokens per embedded text
    nli_s: dict[str, float]
    embed_s: dict[str, float]
    serialization: dict[str, float]


async def profile(cases: Sequence[Case], sets: Sequence[str] = (), warmup: int = 3) -> Profile:
    config = build_config(sets)
    timer, rec = instrument()
    runner = await start_runner(config)
    try:
        names = [n for n in INVARIANTS if n in runner.invariants]
        timeouts = {n: 600.0 for n in names}
        for case in cases[:warmup]:
            await runner.run(case, names, timeouts, None)
        nli = runner.zoo.nli()
        alone: dict[str, list[float]] = {n: [] for n in names}
        stages: dict[str, dict[str, float]] = {}
        calls: dict[str, dict[str, int]] = {}
        pairs: dict[str, list[tuple[int, int]]] = {}
        texts: dict[str, list[int]] = {}
        nli_s: dict[str, float] = {}
        embed_s: dict[str, float] = {}
        for name in names:
            timer.reset()
            rec.pairs.clear()
            rec.texts.clear()
            for case in cases:
                cold(runner)
                timer.on = rec.on = True
                began = time.perf_counter()
                await runner.run(case, [name], timeouts, None)
                alone[name].append(time.perf_counter() - began)
                timer.on = rec.on = False
            stages[name], calls[name] = dict(timer.wall), dict(timer.calls)
            nli_s[name] = timer.wall.get("NLI inference", 0.0) + timer.wall.get("NLI tokenization", 0.0)
            embed_s[name] = timer.wall.get("embedding pass (tokenize + infer)", 0.0)
            pairs[name] = [(sum(e.attention_mask), nli.token_count(p)) for (p, _), e in
                           zip(rec.pairs, nli.runtime.tokenizer.encode_batch(rec.pairs), strict=True)]
            texts[name] = [nli.token_count(t) + 2 for t in rec.texts]
        full = []
        for case in cases:
            cold(runner)
            began = time.perf_counter()
            await runner.run(case, names, timeouts, None)
            full.append(time.perf_counter() - began)
        serialization = await _serialization(runner, cases[: min(10, len(cases))], names)
    finally:
        timer.undo()
        await runner.close()
    return Profile(len(cases), alone, full, stages, calls, {n: sum(v) for n, v in alone.items()}, pairs, texts,
                   nli_s, embed_s, serialization)


async def _serialization(runner: Any, cases: Sequence[Case], names: list[str]) -> dict[str, float]:
    """Seconds per check of what moves a case and its verdicts across the process and the wire."""
    from guardrail_server.convert import case_from_request, request_from_case, result_to_pb
    from guardrail_server.engine import CheckResult
    from guardrail_server.policy import Decision

    out: dict[str, float] = defaultdict(float)
    for case in cases:
        verdicts = await runner.run(case, names, {n: 600.0 for n in names}, None)
        began = time.perf_counter()
        blob = pickle.dumps(("check", 1, case, names, {}, None), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
        back = [pickle.dumps(("verdict", 1, v), protocol=pickle.HIGHEST_PROTOCOL) for v in verdicts]
        for b in back:
            pickle.loads(b)
        out["pickle: case to a worker and verdicts back"] += time.perf_counter() - began
        out["pickled bytes"] += len(blob) + sum(len(b) for b in back)
        began = time.perf_counter()
        req = request_from_case(case).SerializeToString()
        from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb

        case_from_request(pb.CheckRequest.FromString(req))
        reply = result_to_pb(CheckResult(case.request_id, Decision.FLAG, verdicts, 0.1)).SerializeToString()
        pb.CheckResponse.FromString(reply)
        out["protobuf: request and reply, encode and decode"] += time.perf_counter() - began
        out["wire bytes"] += len(req) + len(reply)
    return {k: v / len(cases) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------ through a server


def client_cpu_s() -> float:
    import os

    t = os.times()
    return t.user + t.system


async def server_latency(target: str, cases: Sequence[Case], warmup: int = 3) -> list[float]:
    """One call at a time through gRPC (unary Check, 30 s deadline): seconds per call."""
    import grpc

    from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
    from guardrail_server.convert import request_from_case

    reqs = [request_from_case(c) for c in cases]
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.GuardrailServiceStub(ch)
        async def call(r: Any) -> float:
            for _ in range(20):  # a worker still finishing (or being replaced) sheds the next call: wait, retry
                began = time.perf_counter()
                try:
                    await stub.Check(r, timeout=30)
                    return time.perf_counter() - began
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    await asyncio.sleep(0.25)
            raise RuntimeError("every try shed")

        for r in reqs[:warmup]:
            await call(r)
        return [await call(r) for r in reqs[warmup:]]


async def closed_loop(target: str, cases: Sequence[Case], concurrency: int, seconds: float) -> tuple[int, int, float]:
    """`concurrency` callers for `seconds`, each on the next case: (answered, refused or failed, seconds)."""
    import grpc

    from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
    from guardrail_server.convert import request_from_case

    reqs = [request_from_case(c) for c in cases]
    ok = bad = 0
    nxt = 0
    began = time.perf_counter()
    end = began + seconds
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.GuardrailServiceStub(ch)

        async def caller() -> None:
            nonlocal ok, bad, nxt
            while time.perf_counter() < end:
                req = reqs[nxt % len(reqs)]
                nxt += 1
                try:
                    await stub.Check(req, timeout=30)
                    ok += 1
                except grpc.aio.AioRpcError:
                    bad += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return ok, bad, time.perf_counter() - began


# ------------------------------------------------------------------------------------------------ report


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def report(p: Profile, server: list[float] | None = None) -> str:
    n = p.cases
    names = list(p.alone)
    total_alone = sum(p.wall.values())
    out = [f"{n} cases; full check = the four invariants at once, as a check worker runs them", ""]
    rows = [[name, _ms(pct(p.alone[name], 0.5)), _ms(pct(p.alone[name], 0.99)), _ms(p.wall[name] / n),
             f"{p.wall[name] / total_alone:.0%}"] for name in names]
    rows.append(["sum of the four alone", "", "", _ms(total_alone / n), "100%"])
    rows.append(["full check (in process)", _ms(pct(p.full, 0.5)), _ms(pct(p.full, 0.99)),
                 _ms(statistics.mean(p.full)), ""])
    if server:
        rows.append(["full check through gRPC + workers", _ms(pct(server, 0.5)), _ms(pct(server, 0.99)),
                     _ms(statistics.mean(server)), ""])
        rows.append(["  worker hop + gRPC (server p50 - in-process p50)", "", "",
                     _ms(pct(server, 0.5) - pct(p.full, 0.5)), ""])
    out.append(table(["invariant", "p50 ms", "p99 ms", "mean ms", "share of the sum"], rows))
    out.append("")
    labels = sorted({s for st in p.stages.values() for s in st},
                    key=lambda s: -sum(st.get(s, 0.0) for st in p.stages.values()))
    rows = []
    for label in labels:
        per = [p.stages[name].get(label, 0.0) for name in names]
        calls = sum(p.calls[name].get(label, 0) for name in names)
        rows.append([label, _ms(sum(per) / n), f"{sum(per) / total_alone:.1%}", calls / n,
                     *[_ms(x / n) if x else "" for x in per]])
    other = [p.wall[name] - sum(p.stages[name].values()) for name in names]
    rows.append(["other (asyncio, threads, glue)", _ms(sum(other) / n), f"{sum(other) / total_alone:.1%}", "",
                 *[_ms(x / n) for x in other]])
    out.append("stages: exclusive wall ms per check, each invariant alone")
    out.append(table(["stage", "ms/check", "share", "calls/check", *[s[:14] for s in names]], rows))
    out.append("")
    rows = []
    for name in names:
        pairs = p.pairs[name]
        if pairs:
            lens = [a for a, _ in pairs]
            prem = [b for _, b in pairs]
            rows.append([f"{name}: NLI pairs", len(pairs) / n, pct(lens, 0.5), pct(lens, 0.9), max(lens),
                         pct(prem, 0.5), sum(lens) / n, _ms(p.nli_s[name] / len(pairs))])
        if p.texts[name]:
            lens = p.texts[name]
            rows.append([f"{name}: embedded texts", len(lens) / n, pct(lens, 0.5), pct(lens, 0.9), max(lens), "",
                         sum(lens) / n, _ms(p.embed_s[name] / len(lens))])
    out.append("model inputs per check (tokens with special tokens; ms per item includes tokenization)")
    out.append(table(["invariant: input", "per check", "tokens p50", "p90", "max", "premise p50", "tokens/check",
                      "ms/item"], rows))
    out.append("")
    out.append("serialization per check: " + "; ".join(
        f"{k} {v:,.0f}" if "bytes" in k else f"{k} {_ms(v):.2f} ms" for k, v in p.serialization.items()))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ levers


@dataclass(frozen=True)
class Lever:
    name: str
    sets: tuple[str, ...]  # `--set` flags for the server and the in-process profile
    accuracy: dict[str, Any] | None = None  # entailment options for the dev slices (None: scoring unchanged)
    note: str = ""


def _entailment_options(sets: Iterable[str]) -> dict[str, Any]:
    from guardrail_server.config import parse_set_flags

    out: dict[str, Any] = {}
    for key, value in parse_set_flags(list(sets)):
        prefix = "invariants.entailment.options."
        if key.startswith(prefix):
            out[key[len(prefix):]] = value
    return out


_E = "invariants.entailment.options."


def _lever(name: str, *sets: str, note: str = "") -> Lever:
    """A lever switched by `sets`; its AUROC is measured when it changes entailment's options (or is today's)."""
    options = _entailment_options(sets)
    changes = options != _entailment_options(TODAY) or name == "today"
    return Lever(name, tuple(sets), options if changes else None, note)


TODAY = (f"{_E}premise=windows", f"{_E}embedding=context")  # the defaults before issue 20 item 2

LEVERS: list[Lever] = [  # each alone on top of today's defaults; `after` = this tree's defaults (the levers that pay)
    _lever("today", *TODAY, note="128-token windows, the whole context embedded for open claims"),
    _lever("embedding: scored", *TODAY, f"{_E}embedding=scored",
           note="embed only the premises a claim was scored against"),
    _lever("embedding: off", *TODAY, f"{_E}embedding=off", note="no embedding pass; embed_sim at a constant"),
    _lever("premise: sentences", *TODAY, f"{_E}premise=sentences",
           note="premises of the most relevant sentences (<= 96 tokens)"),
    _lever("early exit 0.8", *TODAY, f"{_E}early_exit=0.8", note="decide a claim in round 1 at P >= 0.8 (0.9)"),
    _lever("pair cache", *TODAY, "models.cache_size=4096",
           note="no pair or text scored twice in a worker (distinct cases: hits within a request only)"),
    _lever("2 onnxruntime threads", *TODAY, "workers.intra_op_threads=2", note="a check's inference on both cores"),
    _lever("inline checks (no worker hop)", *TODAY, "workers.mode=inline", "workers.count=2",
           note="what the worker processes cost (not a lever to pull: they make deadlines hard)"),
    _lever("after: sentences + scored", note="this tree's defaults"),
    _lever("after + early exit 0.8", f"{_E}early_exit=0.8"),
]


async def lever_accuracy(options: dict[str, Any], limit: int) -> dict[str, float | None]:
    from bench.nli_eval import DATA as NLI_DATA
    from bench.nli_eval import evaluate_set

    out: dict[str, float | None] = {}
    for name in ("halueval_qa", "wice_claims"):
        r = await evaluate_set(NLI_DATA / "dev" / f"{name}.jsonl", "entailment", None,
                               options.get("judge", "hybrid"), limit=limit, options=options)
        out[name] = r.auroc
    return out


def run_levers(levers: Sequence[Lever], cases: Sequence[Case], *, calls: int, seconds: float, concurrency: int,
               accuracy_limit: int, with_accuracy: bool) -> str:
    from bench.harness import ServerProcess

    rows = []
    for lever in levers:
        if not calls:  # --accuracy-only
            acc = asyncio.run(lever_accuracy(lever.accuracy, accuracy_limit)) if lever.accuracy is not None else {}
            rows.append([lever.name, *[""] * 7, acc.get("halueval_qa", ""), acc.get("wice_claims", ""), lever.note])
            print(f"  {time.strftime('%H:%M:%S')} {lever.name}: {acc}", flush=True)
            continue
        with ServerProcess(sets=[*(["models.cache_size=0"] if _has_cache_setting() else []), *lever.sets]) as server:
            asyncio.run(server_latency(server.target, cases[:3], warmup=3))
            cpu0 = sum(server.cpu_seconds().values())
            lat = asyncio.run(server_latency(server.target, cases[3: calls + 3], warmup=0))
            cpu_per_check = (sum(server.cpu_seconds().values()) - cpu0) / len(lat)
            cpu0 = client_cpu_s()
            ok, bad, took = asyncio.run(closed_loop(server.target, cases[calls + 3:] or cases, concurrency, seconds))
            client_cpu = client_cpu_s() - cpu0
            pairs = _pairs_per_check(server)
        acc: dict[str, float | None] = {}
        if with_accuracy and lever.accuracy is not None:
            acc = asyncio.run(lever_accuracy(lever.accuracy, accuracy_limit))
        rows.append([lever.name, _ms(cpu_per_check), _ms(pct(lat, 0.5)), _ms(pct(lat, 0.99)), ok / took, bad,
                     client_cpu / took, pairs, acc.get("halueval_qa", math.nan) if acc else "",
                     acc.get("wice_claims", math.nan) if acc else "", lever.note])
        print(f"  {time.strftime('%H:%M:%S')} {lever.name}: CPU {rows[-1][1]:.0f} ms/check, p50 {rows[-1][2]:.0f} ms, "
              f"{rows[-1][4]:.2f} checks/s", flush=True)
    return table(["lever", "server CPU ms/check", "p50 ms", "p99 ms", f"checks/s (c={concurrency})", "refused",
                  "bench CPU cores",
                  "NLI pairs/check", f"AUROC halueval[:{accuracy_limit}]", f"wice[:{accuracy_limit}]", "what"], rows)


def _has_cache_setting() -> bool:
    from guardrail_server.config import ModelsConfig

    return "cache_size" in ModelsConfig.model_fields


def _pairs_per_check(server: Any) -> float:
    """NLI pairs the workers scored per answered check, from the server's /metrics."""
    from bench.harness import total

    m = server.metrics()
    batches = total(m, "guardrail_model_batch_size_sum", model="minilm-groundedness-v2")
    checks = total(m, "guardrail_request_duration_seconds_count")
    return batches / checks if checks else math.nan


async def entailment_latency(n: int, threads: int = 0) -> str:
    """The issue's 500 / 2,000-token goal, measured as `bench.nli_eval --latency` and the manifest measure it
    (`bench.check_latency`: WikiText contexts, 5-sentence answers, one check at a time, onnxruntime on every core):
    today's entailment options beside this tree's defaults, on the same cases."""
    from bench.check_latency import latency, make_cases
    from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions
    from guardrail_models.zoo import ModelZoo, ZooSettings

    zoo = ModelZoo(ZooSettings(intra_op_threads=threads))
    variants = {"today (windows, context embedded)": EntailmentOptions(premise="windows", embedding="context"),
                "after (sentences, scored embedding)": EntailmentOptions()}
    invs = {}
    for name, opts in variants.items():
        invs[name] = EntailmentInvariant(EntailmentInvariant.default_threshold, opts, zoo)
        await invs[name].load()
    rows = []
    for tokens in (500, 2000):
        cases = make_cases(n, tokens, next(iter(invs.values())).model.token_count, seed=tokens)
        for name, inv in invs.items():
            p50, p99, pairs, _ = await latency(inv, cases)
            rows.append([f"~{tokens} tokens", name, _ms(p50), _ms(p99), pairs])
    await zoo.close()
    return table(["context", "entailment", "p50 ms", "p99 ms", "NLI pairs/check"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.profile_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--tokens", type=int, default=1500, help="context tokens per case (default %(default)s)")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the profile (repeatable)")
    ap.add_argument("--server", action="store_true", help="also time the cases through a real server")
    ap.add_argument("--levers", action="store_true", help="the lever table instead of the profile")
    ap.add_argument("--lever", action="append", default=[], help="only these levers (by name; today's code always)")
    ap.add_argument("--seconds", type=float, default=15.0, help="closed-loop seconds per lever")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--accuracy-limit", type=int, default=150, help="dev cases per set for the AUROC columns")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--accuracy-only", action="store_true", help="the AUROC columns alone (no server, no timing)")
    ap.add_argument("--entailment-latency", type=int, default=0, metavar="N",
                    help="only the 500/2,000-token entailment latency, today vs now, N cases each")
    args = ap.parse_args(argv)
    from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR
    from guardrail_models.runtime import NliRuntime
    from guardrail_server.logs import configure_logging

    configure_logging("warning")
    count = NliRuntime.from_dir(SHIPPED_DIR / DEFAULT_NLI, threads=1).token_count
    print(f"bench.profile_check: {machine_line()}", flush=True)
    if args.entailment_latency:
        print(asyncio.run(entailment_latency(args.entailment_latency)))
        print(f"after: {machine_line()}")
        return 0
    if args.levers:
        cases = realistic_cases(max(args.cases, 200), count, seed=args.seed, tokens=args.tokens)
        chosen = [lv for lv in LEVERS if lv.name == "today" or not args.lever or lv.name in args.lever]
        print(run_levers(chosen, cases, calls=0 if args.accuracy_only else args.cases, seconds=args.seconds,
                         concurrency=args.concurrency,
                         accuracy_limit=args.accuracy_limit, with_accuracy=not args.no_accuracy))
        print(f"after: {machine_line()}")
        return 0
    cases = realistic_cases(args.cases, count, seed=args.seed, tokens=args.tokens)
    ctx = [sum(count(p.text) for p in c.context) for c in cases]
    print(f"{len(cases)} cases: context {statistics.median(ctx):.0f} tokens p50 ({min(ctx)}-{max(ctx)}), "
          f"{statistics.median(len(c.context) for c in cases):.0f} passages p50, response "
          f"{statistics.median(len(c.response) for c in cases):.0f} chars p50, 2 samples; config: defaults"
          + (f" + {' '.join(args.sets)}" if args.sets else ""), flush=True)
    prof = asyncio.run(profile(cases, args.sets))
    server = None
    if args.server:
        from bench.harness import ServerProcess

        with ServerProcess(sets=[*(["models.cache_size=0"] if _has_cache_setting() else []), *args.sets]) as srv:
            server = asyncio.run(server_latency(srv.target, cases))
    print(report(prof, server))
    print(f"after: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
