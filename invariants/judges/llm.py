"""An optional LLM judge behind any OpenAI-compatible endpoint, taught by the anchor set's critiques.

Critique shadowing: the prompt for an invariant shows the anchor set's human-labeled cases for that invariant
*with the reviewers' written critiques*, and asks the model to write its own short critique before its
probabilities, so it reasons the way the reviewers did. Anchors come from a `guardrail-anchor/v1` JSON Lines file
(`guardrail review anchors export`). The output is JSON under a schema and is parsed strictly: unknown keys,
missing ids, probabilities outside [0, 1] or not summing to 1 are malformed; after the retries that is a
`JudgeError` (the invariant's verdict is ERROR), never a crash. Disabled unless configured.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail_invariants.judges.base import Pair, JudgeError, check_scores, empty_scores
from guardrail_invariants.judges.openai_client import ChatClient

ANCHOR_FORMAT = "guardrail-anchor/v1"
MAX_TEXT = 700

TASKS: dict[str, str] = {
    "self_consistency": (
        "You check whether sampled answers of a language model contradict each other. Each item gives a PREMISE "
        "(another sampled answer to the same request) and a HYPOTHESIS (one sentence of the answer under test). "
        "'contradiction' means both cannot be true together (a different number, date, name, or a negated fact "
        "about the same thing); 'entailment' means the premise states or clearly implies the hypothesis; "
        "'neutral' means the premise does not speak to it."),
    "entailment": (
        "You check whether a response is grounded in its context. Each item gives a PREMISE (a context passage) and "
        "a HYPOTHESIS (one claim of the response). 'entailment' means the passage supports the claim as stated; "
        "'contradiction' means the passage says otherwise; 'neutral' means the passage does not support it "
        "(an unsupported claim is neutral, not entailed)."),
    "reference_integrity": (
        "You check citations. Each item gives a PREMISE (the cited source) and a HYPOTHESIS (the sentence that cites "
        "it). 'entailment' means the source supports the sentence; 'contradiction' means it says otherwise; "
        "'neutral' means it does not support it."),
}
DEFAULT_TASK = TASKS["entailment"]
OUTPUT_RULES = (
    "Answer with JSON only: {\"results\": [{\"id\": <item id>, \"critique\": <one or two sentences, in the style "
    "of the reviewers' critiques>, \"entailment\": p, \"neutral\": p, \"contradiction\": p}, ...]} with one result "
    "per item, probabilities in [0, 1] summing to 1.")


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: int
    critique: str = Field(max_length=2000)
    entailment: float = Field(ge=0.0, le=1.0)
    neutral: float = Field(ge=0.0, le=1.0)
    contradiction: float = Field(ge=0.0, le=1.0)


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    results: list[_Result]


def output_schema() -> dict[str, Any]:
    prob = {"type": "number", "minimum": 0, "maximum": 1}
    item = {"type": "object", "additionalProperties": False,
            "required": ["id", "critique", "entailment", "neutral", "contradiction"],
            "properties": {"id": {"type": "integer"}, "critique": {"type": "string"}, "entailment": prob,
                           "neutral": prob, "contradiction": prob}}
    return {"type": "object", "additionalProperties": False, "required": ["results"],
            "properties": {"results": {"type": "array", "items": item}}}


@dataclass(frozen=True, slots=True)
class Anchor:
    """One human-labeled case for one invariant: the case text, the human outcome and the critiques."""

    label: str  # "pass" | "fail"
    question: str
    response: str
    context: tuple[str, ...]
    samples: tuple[str, ...]
    critiques: tuple[str, ...]


def load_anchors(path: str | Path, invariant: str) -> list[Anchor]:
    """Anchor cases labeled for `invariant` from a guardrail-anchor/v1 JSONL file (latest annotation wins)."""
    p = Path(path)
    try:
        lines = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise JudgeError(f"cannot read anchor file {p}: {exc.strerror or exc}") from None
    out: list[Anchor] = []
    for n, raw in enumerate(lines, 1):
        try:
            line = json.loads(raw)
        except ValueError:
            raise JudgeError(f"{p}:{n}: not JSON") from None
        if not isinstance(line, dict) or line.get("format") != ANCHOR_FORMAT:
            raise JudgeError(f"{p}:{n}: not a {ANCHOR_FORMAT} line")
        labels: dict[str, str] = {}
        for a in line.get("annotations", []):
            labels.update(a.get("labels") or {})
        label = labels.get(invariant)
        if label not in ("pass", "fail"):
            continue
        case = line.get("sample", {}).get("case", {})
        out.append(Anchor(
            label=label,
            question=str(case.get("question") or ""),
            response=str(case.get("response") or ""),
            context=tuple(str(c.get("text", "")) for c in case.get("context") or []),
            samples=tuple(str(s) for s in case.get("samples") or []),
            critiques=tuple(c for a in line.get("annotations", []) if (c := str(a.get("critique") or "").strip())),
        ))
    return out


def pick_anchors(anchors: Sequence[Anchor], k: int) -> list[Anchor]:
    """Up to k anchors, alternating pass and fail, preferring those with a critique (they teach the most)."""
    ranked = sorted(anchors, key=lambda a: not a.critiques)
    fails = [a for a in ranked if a.label == "fail"]
    passes = [a for a in ranked if a.label == "pass"]
    out: list[Anchor] = []
    while len(out) < k and (fails or passes):
        for bucket in (fails, passes):
            if bucket and len(out) < k:
                out.append(bucket.pop(0))
    return out


def _clip(text: str, n: int = MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def render_anchor(i: int, a: Anchor) -> str:
    parts = [f"Example {i} - human verdict: {a.label.upper()}"]
    if a.question:
        parts.append(f"Question: {_clip(a.question)}")
    for j, c in enumerate(a.context[:3], 1):
        parts.append(f"Context [{j}]: {_clip(c)}")
    parts.append(f"Response: {_clip(a.response)}")
    for j, s in enumerate(a.samples[:3], 1):
        parts.append(f"Sample {j}: {_clip(s)}")
    parts.extend(f"Reviewer critique: {_clip(c, 1000)}" for c in a.critiques)
    return "\n".join(parts)


def build_messages(invariant: str, anchors: Sequence[Anchor], pairs: Sequence[Pair]) -> list[dict[str, str]]:
    system = TASKS.get(invariant, DEFAULT_TASK) + "\n" + OUTPUT_RULES
    messages = [{"role": "system", "content": system}]
    if anchors:
        shots = "\n\n".join(render_anchor(i, a) for i, a in enumerate(anchors, 1))
        messages.append({"role": "user", "content": (
            f"Cases reviewed by people for the '{invariant}' check, with their verdicts and critiques. "
            f"Judge the way they do:\n\n{shots}")})
        messages.append({"role": "assistant", "content": "Understood. I will judge the way the reviewers do."})
    items = "\n\n".join(f"[{i}]\nPREMISE: {_clip(p, 4000)}\nHYPOTHESIS: {_clip(h, 1000)}"
                        for i, (p, h) in enumerate(pairs, 1))
    messages.append({"role": "user", "content": f"Items to judge:\n\n{items}"})
    return messages


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


def parse_output(text: str, n: int) -> np.ndarray:
    """Strict parse of the model's answer -> [n, 3]; raises JudgeError describing (never quoting) the defect."""
    m = _FENCE.match(text)
    raw = m.group(1) if m else text
    try:
        data = json.loads(raw)
    except ValueError:
        raise JudgeError("llm judge output is not JSON") from None
    try:
        out = _Output.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors()[:5])
        raise JudgeError(f"llm judge output does not match the schema ({where})") from None
    ids = [r.id for r in out.results]
    if sorted(ids) != list(range(1, n + 1)):
        raise JudgeError(f"llm judge output has ids {sorted(ids)[:10]}, expected 1..{n}")
    probs = np.zeros((n, 3), dtype=np.float32)
    for r in out.results:
        row = np.array([r.entailment, r.neutral, r.contradiction], dtype=np.float64)
        total = row.sum()
        if not 0.9 <= total <= 1.1:
            raise JudgeError(f"llm judge probabilities of item {r.id} sum to {total:.2f}, not 1")
        probs[r.id - 1] = row / total
    return probs


class LlmJudge:
    """The `Judge` protocol over a chat model; `family` is declared in config (the lineage of the served model)."""

    def __init__(self, *, invariant: str, endpoint: str, model: str, family: str, anchors: str | None = None,
                 max_anchors: int = 8, timeout_s: float = 20.0, retries: int = 2, api_key_env: str | None = None,
                 response_format: str = "json_schema", max_pairs_per_call: int = 16, concurrency: int = 4) -> None:
        self.invariant = invariant
        self.name = f"llm:{model}"
        self.family = family
        self.anchors_path = anchors
        self.max_anchors = max_anchors
        self.retries = retries
        self.response_format = response_format
        self.max_pairs = max_pairs_per_call
        self.client = ChatClient(endpoint, model, api_key_env=api_key_env, timeout_s=timeout_s, retries=retries)
        self.anchors: list[Anchor] = []
        self._sem = asyncio.Semaphore(concurrency)
        self._loaded = False

    async def load(self) -> None:
        if not self._loaded:
            if self.anchors_path:
                all_anchors = await asyncio.to_thread(load_anchors, self.anchors_path, self.invariant)
                self.anchors = pick_anchors(all_anchors, self.max_anchors)
            self._loaded = True

    def _format(self) -> dict[str, Any] | None:
        if self.response_format == "json_schema":
            return {"type": "json_schema",
                    "json_schema": {"name": "nli_judgement", "strict": True, "schema": output_schema()}}
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return None

    async def _chunk(self, pairs: Sequence[Pair]) -> np.ndarray:
        messages = build_messages(self.invariant, self.anchors, pairs)
        error = JudgeError("llm judge produced no output")
        async with self._sem:
            for _ in range(self.retries + 1):
                text = await self.client.complete(messages, temperature=0.0, response_format=self._format())
                try:
                    return parse_output(text, len(pairs))
                except JudgeError as exc:
                    error = exc
        raise error

    async def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        await self.load()
        if not pairs:
            return empty_scores()
        chunks = [list(pairs[i:i + self.max_pairs]) for i in range(0, len(pairs), self.max_pairs)]
        parts = await asyncio.gather(*(self._chunk(c) for c in chunks))
        return check_scores(np.concatenate(parts), len(pairs), self.name)

    async def aclose(self) -> None:
        await self.client.aclose()
