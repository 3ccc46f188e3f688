"""Offline samples for `self_consistency`: call the system under test N times at temperature > 0.

`guardrail eval --sampler` uses this when a dataset has no samples of its own: the system under test is reached
through an OpenAI-compatible chat endpoint (vLLM, Ollama, a hosted API, or the application's own proxy), asked the
case's question with its context, and each answer becomes one sample. Requests run concurrently, each with its own
seed, so servers that cache deterministic completions still return independent samples.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from guardrail_invariants.judges.openai_client import ChatClient, ChatError
from guardrail_invariants.types import Case

SYSTEM_PROMPT = "Answer the user's question. When context passages are given, answer from them."


def messages_for(case: Case, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The request the system under test is assumed to get: its system prompt, the context, the question."""
    if not case.question.strip():
        raise ValueError("sampling needs the case's question (the input the samples answer)")
    context = "\n\n".join(f"[{p.id or i}] {p.text}" for i, p in enumerate(case.context, 1) if p.text.strip())
    user = f"Context:\n{context}\n\nQuestion: {case.question}" if context else case.question
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


async def sample_responses(case: Case, endpoint: str, model: str, n: int = 5, temperature: float = 1.0, *,
                           api_key_env: str | None = None, timeout_s: float = 60.0, retries: int = 2,
                           max_tokens: int | None = 512, concurrency: int = 4,
                           system_prompt: str = SYSTEM_PROMPT) -> tuple[str, ...]:
    """N sampled answers to the case's question (temperature > 0), in request order; empty answers dropped.

    Raises ValueError for bad arguments and `guardrail_invariants.judges.openai_client.ChatError` when the endpoint fails
    after its retries.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if temperature <= 0:
        raise ValueError("samples need temperature > 0 (at 0 every sample is the same answer)")
    client = ChatClient(endpoint, model, api_key_env=api_key_env, timeout_s=timeout_s, retries=retries)
    messages = messages_for(case, system_prompt)
    sem = asyncio.Semaphore(concurrency)

    async def one(seed: int) -> str:
        async with sem:
            return await client.complete(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)

    try:
        answers: Sequence[str] = await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.aclose()
    return tuple(a.strip() for a in answers if a.strip())


async def fill_samples(cases: Sequence[Case], endpoint: str, model: str, n: int = 5, temperature: float = 1.0, *,
                       concurrency: int = 4, **kwargs: Any) -> tuple[list[Case], list[str]]:
    """Cases without samples get N sampled answers; cases that have samples, or no question, are left as they are.

    Returns the cases and, per case, "" or why sampling failed (that case keeps no samples): one unreachable answer
    must not cost the whole offline run. Bad arguments raise ValueError before any request is sent.
    """
    if n < 1:
        raise ValueError("--samples must be >= 1")
    if temperature <= 0:
        raise ValueError("samples need temperature > 0 (at 0 every sample is the same answer)")
    sem = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> tuple[Case, str]:
        if case.samples or not case.question.strip():
            return case, ""
        async with sem:
            try:
                samples = await sample_responses(case, endpoint, model, n, temperature, **kwargs)
            except ChatError as exc:
                return case, str(exc)[:300]
        return replace(case, samples=samples), ""

    done = await asyncio.gather(*(one(c) for c in cases))
    return [c for c, _ in done], [e for _, e in done]
