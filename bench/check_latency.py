"""What both entailment benches measure a check with: cases over held-out WikiText contexts, and the latency of one
`check` (p50/p99, NLI pairs per case, service overhead over raw onnxruntime time for the very same calls).

`bench.entailment` (latency tables) and `bench.nli_eval --latency` (the figures in a model's manifest) both import it,
so a latency in a manifest and one in the bench table are measured the same way.
"""

from __future__ import annotations

import random
import statistics
import time

import numpy as np

from guardrail_invariants.entailment import EntailmentInvariant
from guardrail_invariants.types import Case, Passage


def make_cases(n: int, context_tokens: int, count_tokens, seed: int = 0) -> list[Case]:
    """Context of ~`context_tokens` from held-out WikiText; response: 5 sentences (3 copied, 2 from elsewhere)."""
    from guardrail_models.training.train import split_documents

    _, held = split_documents()
    rng = random.Random(seed)
    all_sents = [s for d in held for s in d.sentences()]
    cases = []
    for _ in range(n):
        doc = rng.choice(held)
        sents = doc.sentences()
        start = rng.randrange(max(1, len(sents) - 10))
        ctx, tokens = [], 0
        i = start
        while tokens < context_tokens:
            s = sents[i % len(sents)] if i < start + len(sents) else rng.choice(all_sents)
            ctx.append(s)
            tokens += count_tokens(s)
            i += 1
        response = rng.sample(ctx, min(3, len(ctx))) + rng.sample(all_sents, 2)
        cases.append(Case(response=" ".join(response), context=(Passage("doc", " ".join(ctx)),)))
    return cases


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


class _Recorder:
    """Delegates to a loaded model and keeps every call's inputs, so the very same calls can be replayed raw."""

    def __init__(self, inner, method: str) -> None:
        self.inner, self.method, self.calls = inner, method, []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def predict(self, pairs):
        self.calls.append(list(pairs))
        return await self.inner.predict(pairs)

    async def embed(self, texts):
        self.calls.append(list(texts))
        return await self.inner.embed(texts)


async def latency(inv: EntailmentInvariant, cases: list[Case]) -> tuple[float, float, float, float]:
    """p50, p99 of one check (sequential), NLI pairs per case, and the service overhead over raw onnxruntime time for
    the very same model calls (the NLI pairs and embedding texts each check sent, replayed straight into the
    runtimes, same call boundaries)."""
    model, embedder = inv.model, inv.embedder
    inv.model = rec_m = _Recorder(model, "predict")
    if embedder is not None:
        inv.embedder = rec_e = _Recorder(embedder, "embed")
    times, raw, pairs = [], [], []
    try:
        for case in cases:
            rec_m.calls.clear()
            if embedder is not None:
                rec_e.calls.clear()
            t0 = time.perf_counter()
            await inv.check(case)
            times.append(time.perf_counter() - t0)
            pairs.append(sum(len(c) for c in rec_m.calls))
            t0 = time.perf_counter()
            for call in rec_m.calls:
                model.runtime.predict(call)
            for call in (rec_e.calls if embedder is not None else []):
                embedder.runtime.embed(call)
            raw.append(time.perf_counter() - t0)
    finally:
        inv.model, inv.embedder = model, embedder
    return pct(times, 50), pct(times, 99), statistics.mean(pairs), statistics.mean(times) / statistics.mean(raw) - 1
