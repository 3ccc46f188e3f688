"""`monotonicity` (offline): given more of the same context, an answer must not become less specific.

For a seed case the system under test is called with nested contexts C1 ⊂ C2 ⊂ … ⊂ Cn = the full context: prefixes
of its passages, or — with a single passage — prefixes of that passage's sentences (prefixes keep what a later
sentence refers back to). A generator's answer at each level is measured by `specificity.SpecificityMeter`; a
level whose specificity is below the best of a smaller context is a violation, reported as a finding naming the
two contexts. Our judges have no answer to measure: for them the relation is the logical one — a verdict that holds
on a smaller context must still hold on a larger one (a claim entailed by part of the context is entailed by all
of it; a citation that resolves keeps resolving).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from guardrail_server.metamorph.specificity import Specificity, SpecificityMeter
from guardrail_server.metamorph.types import Output
from guardrail_invariants.text import split_sentences
from guardrail_invariants.types import Case, Passage

JUDGE_TARGETS = ("entailment", "reference_integrity")


@dataclass(frozen=True, slots=True)
class Level:
    label: str
    case: Case


def _ids(passages: Sequence[Passage]) -> str:
    ids = [p.id or str(i) for i, p in enumerate(passages, start=1)]
    return f"{ids[0]}–{ids[-1]}" if len(ids) > 2 else ", ".join(ids)


def nested_contexts(case: Case, levels: int = 3) -> list[Level]:
    """Up to `levels` nested contexts, smallest first, the last being the full context; [] when it cannot be split."""
    passages = tuple(p for p in case.context if p.text.strip())
    if len(passages) >= 2:
        n = len(passages)
        sizes = sorted({max(1, round(n * i / levels)) for i in range(1, levels + 1)} | {n})
        return [Level(f"{'passages' if k > 1 else 'passage'} {_ids(passages[:k])} of {n}",
                      replace(case, context=passages[:k])) for k in sizes]
    if len(passages) == 1:
        p = passages[0]
        sentences = split_sentences(p.text)
        n = len(sentences)
        if n < 2:
            return []
        sizes = sorted({max(1, round(n * i / levels)) for i in range(1, levels + 1)} | {n})
        return [Level(f"passage {p.id or '1'}, sentences 1–{k} of {n}" if k > 1 else
                      f"passage {p.id or '1'}, sentence 1 of {n}",
                      replace(case, context=(replace(p, text=p.text[:sentences[k - 1].end]),))) for k in sizes]
    return []


@dataclass(frozen=True, slots=True)
class MonotonicityResult:
    target: str
    held: bool | None
    score: float
    findings: tuple[dict[str, Any], ...]
    levels: tuple[dict[str, Any], ...]
    error: str = ""


def check_levels(target: str, levels: Sequence[Level], outputs: Sequence[Output],
                 specificity: Sequence[Specificity] | None, tolerance: int = 0) -> MonotonicityResult:
    """Compares every level with the best smaller one; each drop is a finding naming both contexts."""
    errors = [o.error for o in outputs if o.error]
    if errors:
        return MonotonicityResult(target, None, 0.0, (), (), error=errors[0])
    findings: list[dict[str, Any]] = []
    ratios: list[float] = []
    view: list[dict[str, Any]] = []
    if specificity is not None:
        values = [float(s.total) for s in specificity]
        for lv, out, s in zip(levels, outputs, specificity, strict=True):
            view.append({"context": lv.label, "output": out.text, "specificity": s.summary()})
    else:
        values = [1.0 if o.allowed else 0.0 for o in outputs]
        for lv, out in zip(levels, outputs, strict=True):
            view.append({"context": lv.label, "outcome": out.label, "score": out.score})
    for j in range(1, len(values)):
        i = max(range(j), key=lambda k: (values[k], -k))
        best = values[i]
        if best > 0:
            ratios.append(min(1.0, values[j] / best))
        if values[j] < best - tolerance:
            if specificity is not None:
                message = (f"specificity fell from {values[i]:g} ({levels[i].label}) to {values[j]:g} "
                           f"({levels[j].label})")
            else:
                message = (f"{outputs[i].label} ({outputs[i].score:.3f}) with {levels[i].label} but "
                           f"{outputs[j].label} ({outputs[j].score:.3f}) with {levels[j].label}")
            findings.append({"kind": "specificity_drop" if specificity is not None else "verdict_drop",
                             "start": -1, "end": -1, "message": message, "passage_id": "",
                             "score": values[j] / best if best else 0.0,
                             "from_context": levels[i].label, "to_context": levels[j].label})
    return MonotonicityResult(target, not findings, min(ratios, default=1.0), tuple(findings), tuple(view))


async def run_monotonicity(case: Case, targets: Sequence[str], kind: str,
                           call: Callable[[Case, Sequence[str]], Awaitable[dict[str, Output]]],
                           meter: SpecificityMeter | None, levels: int = 3,
                           tolerance: int = 0) -> tuple[list[Level], list[MonotonicityResult]]:
    nested = nested_contexts(case, levels)
    if len(nested) < 2 or not targets:
        return nested, []
    outs = [await call(lv.case, targets) for lv in nested]
    results = []
    for t in targets:
        per_level = [o[t] for o in outs]
        spec = None
        if kind != "judges" and not any(o.error for o in per_level):
            assert meter is not None
            spec = [await meter.measure(o.text, lv.case.context) for o, lv in zip(per_level, nested, strict=True)]
        results.append(check_levels(t, nested, per_level, spec, tolerance))
    return nested, results
