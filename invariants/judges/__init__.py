"""Judges: interchangeable scorers of (premise, hypothesis) pairs for the NLI-style invariants.

- `nli`: an NLI cross-encoder from the model zoo (family from its manifest);
- `alignment`: a non-neural judge (numbers, names, negations, content words) of entirely different lineage;
- `llm`: an optional chat model behind an OpenAI-compatible endpoint, few-shot on the anchor critiques.
"""

from __future__ import annotations

from typing import Any

from guardrail_invariants.judges.base import Judge, JudgeError
from guardrail_invariants.judges.config import JudgeConfigError, JudgedOptions, JudgeSpec, check_families

__all__ = ["Judge", "JudgeConfigError", "JudgeError", "JudgeSpec", "JudgedOptions", "build_judge", "load_judges"]


def build_judge(spec: JudgeSpec, zoo: Any, invariant: str) -> Judge:
    """A judge for one invariant (the LLM judge's prompt and anchors are per invariant)."""
    if spec.kind == "nli":
        from guardrail_invariants.judges.nli_model import NliModelJudge

        return NliModelJudge(zoo, spec.model)
    if spec.kind == "alignment":
        from guardrail_invariants.judges.alignment import AlignmentJudge

        return AlignmentJudge()
    from guardrail_invariants.judges.llm import LlmJudge

    assert spec.endpoint and spec.model and spec.family
    return LlmJudge(invariant=invariant, endpoint=spec.endpoint, model=spec.model, family=spec.family,
                    anchors=spec.anchors, max_anchors=spec.max_anchors, timeout_s=spec.timeout_s,
                    retries=spec.retries, api_key_env=spec.api_key_env, response_format=spec.response_format,
                    max_pairs_per_call=spec.max_pairs_per_call)


async def load_judges(specs: tuple[JudgeSpec, ...], zoo: Any, invariant: str,
                      extra: tuple[tuple[str, str], ...] = ()) -> list[Judge]:
    """Builds and loads the judges, then enforces the family rule on the families they actually loaded
    (an imported model's manifest is only known here). `extra` adds (label, family) of judges the invariant
    runs itself, e.g. its own primary model."""
    judges = [build_judge(s, zoo, invariant) for s in specs]
    for j in judges:
        await j.load()
    for spec, j in zip(specs, judges, strict=True):
        if spec.family and spec.kind == "nli" and spec.family.lower() != j.family.lower():
            raise JudgeConfigError(f"invariants.{invariant}.options.judges: {spec.label} is declared family "
                                   f"{spec.family!r} but its manifest says {j.family!r}")
    try:
        check_families([*extra, *((j.name, j.family) for j in judges)])
    except JudgeConfigError as exc:
        raise JudgeConfigError(f"invariants.{invariant}.options.judges: {exc}") from None
    return judges
