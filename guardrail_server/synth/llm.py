"""`--llm URL`: questions and answers written by a model, kept only when a judge of another family agrees.

For each sampled passage the model (any OpenAI-compatible chat endpoint, temperature 0, the seed passed on) writes a
question, an answer the passage supports and a wrong answer with one fact changed or added. Each answer becomes a
case (`llm_supported`: entailment should pass; `llm_hallucinated`: should fail) and is kept only when the judge —
this configuration's `entailment` invariant, run in process — reaches the intended verdict.

The seed's circularity warning, enforced: a generator filtered by a judge of its own family grades its own
homework (shared training lineage, shared blind spots). The generator's family is a required flag
(`--llm-family`), recorded in every case it wrote; when it equals the judge's family (the NLI model manifest's
`family`) `guardrail synth` refuses to start.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail_server.synth.build import SynthCase, dedup_key
from guardrail_server.synth.documents import Corpus
from guardrail_server.synth.grid import Cell

SYSTEM = ("You write test data for a checker of grounded answers. Reply with one JSON object and nothing else.")
USER = """Passage:
<<<
{passage}
>>>
Write a question that a user might ask and that this passage answers. Then write two answers of one or two sentences:
"answer": fully supported by the passage - it states nothing the passage does not state;
"wrong_answer": the same answer with exactly one fact changed or added, so that the passage no longer supports it.
Reply as {{"question": "...", "answer": "...", "wrong_answer": "..."}}"""

Judge = Callable[[SynthCase], Awaitable[bool]]  # True when the judge says the case's response is supported


class SameFamilyError(ValueError):
    """The generator and the judge are of one model family."""


@dataclass(frozen=True, slots=True)
class LlmSettings:
    url: str
    model: str
    family: str
    api_key_env: str | None = None
    passages: int = 20  # passages to ask about (two candidate cases each)
    timeout_s: float = 60.0
    concurrency: int = 4


@dataclass(slots=True)
class LlmResult:
    cases: list[SynthCase] = field(default_factory=list)
    asked: int = 0
    written: int = 0
    kept: int = 0
    rejected: int = 0  # the judge disagreed with the intended label
    unusable: int = 0  # no JSON, missing fields, a call that failed
    judge: str = ""
    judge_family: str = ""


def judge_identity(config: Any) -> tuple[str, str | None]:
    """(model name, family) of the entailment invariant's primary NLI model, read from its manifest."""
    from guardrail_server.config import zoo_settings
    from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR

    opts = config.options("entailment")
    model = opts.judges[0].model or opts.model or DEFAULT_NLI
    roots = [p for p in (zoo_settings(config).models_dir, SHIPPED_DIR) if p is not None]
    for root in roots:
        path = Path(root) / model / "manifest.json"
        if path.is_file():
            family = json.loads(path.read_text(encoding="utf-8")).get("family")
            return model, str(family) if family else None
    return model, None


def check_families(generator_family: str, judge_model: str, judge_family: str | None) -> None:
    """Refuses a same-family judge, and a judge whose family nobody can tell."""
    if not generator_family.strip():
        raise SameFamilyError("--llm-family is required with --llm (the generator's model family, e.g. 'llama-3')")
    if not judge_family:
        raise SameFamilyError(f"the judge {judge_model!r} has no 'family' in its manifest, so a same-family judge "
                              "cannot be ruled out; pick a zoo model with a manifest family")
    if generator_family.strip().lower() == judge_family.strip().lower():
        raise SameFamilyError(
            f"--llm-family {generator_family!r} is the family of the judge that filters its cases ({judge_model}: "
            f"{judge_family!r}); a model judged by its own family grades its own homework - use a judge of another "
            "family (invariants.entailment.options.model) or another generator")


def parse_reply(text: str) -> dict[str, str] | None:
    m = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if not m:
        return None
    try:
        data = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    out = {k: data.get(k) for k in ("question", "answer", "wrong_answer")}
    if not all(isinstance(v, str) and v.strip() for v in out.values()):
        return None
    return {k: " ".join(str(v).split()) for k, v in out.items()}


async def generate(corpus: Corpus, settings: LlmSettings, judge: Judge, seed: int, *,
                   seen: set[str] | None = None, progress: Callable[[int], None] | None = None) -> LlmResult:
    from guardrail_invariants.judges.openai_client import ChatClient, ChatError

    result = LlmResult()
    seen = set() if seen is None else seen
    rng = random.Random(f"{seed}:llm")
    picks = rng.sample(range(len(corpus.passages)), min(settings.passages, len(corpus.passages)))
    client = ChatClient(settings.url, settings.model, api_key_env=settings.api_key_env, timeout_s=settings.timeout_s)
    gate = asyncio.Semaphore(settings.concurrency)

    async def ask(i: int) -> dict[str, str] | None:
        passage = corpus.passages[i]
        async with gate:
            try:
                reply = await client.complete([{"role": "system", "content": SYSTEM},
                                               {"role": "user", "content": USER.format(passage=passage.text)}],
                                              temperature=0.0, seed=seed)
            except ChatError:
                return None
        return parse_reply(reply)

    try:
        replies = await asyncio.gather(*(ask(i) for i in picks))
    finally:
        await client.aclose()
    cell = Cell("1", "1", "none")
    for n, (i, reply) in enumerate(zip(picks, replies, strict=True)):
        result.asked += 1
        if progress is not None:
            progress(1)
        if reply is None:
            result.unusable += 1
            continue
        passage = corpus.passages[i]
        for kind, text, supported in (("llm_supported", reply["answer"], True),
                                      ("llm_hallucinated", reply["wrong_answer"], False)):
            result.written += 1
            key = dedup_key(reply["question"], text)
            if key in seen:
                continue
            case = SynthCase(
                id=f"synth-{seed}-llm-{n:04d}-{'s' if supported else 'h'}", kind=kind, cell=cell,
                question=reply["question"], context=[passage], response=text,
                expected={"entailment": "pass" if supported else "fail", "reference_integrity": "pass"},
                meta={"group": "llm", "label": "supported" if supported else "hallucinated", "sentences": 0,
                      "n_passages": 1, "doc": corpus.docs[passage.doc].id, "generator": f"llm:{settings.model}",
                      "generator_family": settings.family, "seed": seed})
            if await judge(case) != supported:
                result.rejected += 1
                continue
            seen.add(key)
            result.kept += 1
            result.cases.append(case)
    return result


class EntailmentJudge:
    """The configuration's entailment invariant, in process (the servicer's code path), as the filter."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.engine: Any = None

    async def __aenter__(self) -> EntailmentJudge:
        from guardrail_server.engine import CheckEngine

        self.engine = CheckEngine(self.config)
        await self.engine.load()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.close()

    async def __call__(self, case: SynthCase) -> bool:
        from guardrail_invariants.types import Case, Passage

        checked = Case(response=case.response, question=case.question, request_id=case.id,
                       context=tuple(Passage(id=p.id, text=p.text, title=p.title, url=p.url) for p in case.context))
        result = await self.engine.check(checked, ["entailment"], sample=False)
        return result.verdicts[0].outcome.value == "pass"


def judge_overrides(config: Any) -> list[tuple[str, Any]]:
    """Config overrides that leave only `entailment` on, run in this process (one model load, no check workers)."""
    return [("invariants", {name: {"enabled": name == "entailment"} for name in config.invariants}),
            ("workers.mode", "inline"), ("review.enabled", False), ("server.metrics_port", None)]


def describe(model: str, family: str, result: LlmResult) -> str:
    return (f"llm {model} (family {family}) judged by {result.judge} (family {result.judge_family}): "
            f"{result.asked} passages asked, {result.written} answers written, {result.kept} kept, "
            f"{result.rejected} rejected by the judge, {result.unusable} unusable replies")


def kinds() -> Sequence[str]:
    return ("llm_supported", "llm_hallucinated")
