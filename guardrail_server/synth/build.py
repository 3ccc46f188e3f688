"""From a plan of (kind, cell) slots to eval rows: context for the cell, the kind's core, fillers, markers, dedup.

Every slot has its own random generator (`Random(f"{seed}:{slot}")`), so a case depends only on the seed, the
documents and its slot — never on what other slots drew — and the same inputs give the same file, byte for byte.
A slot tries up to `TRIES` target passages before it is given up (a kind a corpus cannot give, e.g. no negatable
sentence, shows as a shortfall in the summary, never as a mislabelled case).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail_server.synth.documents import Corpus, SynthPassage
from guardrail_server.synth.grid import Cell, Slot, line_count, passage_count
from guardrail_server.synth.kinds import KINDS, Core, Env, Line, generic_question, question_for
from guardrail_server.synth.markers import cite

TRIES = 40
GIVE_UP_AFTER = 3  # slots of a kind that found nothing in TRIES tries, with none found yet: the kind is skipped


@dataclass(slots=True)
class SynthCase:
    id: str
    kind: str
    cell: Cell
    question: str
    context: list[SynthPassage]
    response: str
    expected: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """A native `guardrail eval` row (see docs/evals.md "Inputs"): `expected` per invariant; `label` and `meta`
        are extras the reader keeps out of the case (the checks never see the answer key)."""
        spec = KINDS.get(self.kind)
        return {
            "id": self.id,
            "question": self.question,
            "context": [{"id": p.id, "title": p.title, "url": p.url, "text": p.text} for p in self.context],
            "response": self.response,
            "expected": self.expected,
            "label": spec.label if spec else self.meta.get("label", ""),
            "meta": {"kind": self.kind, "length": self.cell.length, "passages": self.cell.passages,
                     "citation": self.cell.citation, **self.meta},
        }


def dedup_key(question: str, response: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", f"{question}\n{response}".lower()).split())


def choose_context(corpus: Corpus, target: int, n: int, rng: random.Random) -> tuple[list[SynthPassage], int]:
    """The target passage and n-1 others — about half from the same document (what retrieval returns), the rest
    from other documents — in a random order; returns (context, index of the target)."""
    p = corpus.passages[target]
    same = [i for i in corpus.by_doc[p.doc] if i != target]
    chosen: list[int] = []
    for _ in range(n - 1):
        from_same = same and (rng.random() < 0.5 or len(corpus.docs) < 2)
        if from_same:
            i = same.pop(rng.randrange(len(same)))
        else:
            for _ in range(10):
                i = rng.randrange(len(corpus.passages))
                if corpus.passages[i].doc != p.doc and i not in chosen:
                    break
            else:
                if not same:
                    break
                i = same.pop(rng.randrange(len(same)))
        chosen.append(i)
    context = [target, *chosen]
    rng.shuffle(context)
    return [corpus.passages[i] for i in context], context.index(target)


def assemble(env: Env, core: Core, citation: str) -> tuple[str, str, int] | None:
    """(response, question, sentences): the core plus verbatim fillers from the context up to `env.lines`."""
    need = env.lines - len(core.lines)
    if need < 0:
        return None
    pool: list[Line] = []
    for i, p in enumerate(env.context):
        for s in p.sentences:
            if s not in core.used and all(s not in line.text for line in core.lines):
                pool.append(Line(s, (env.cite(i),)))
    if len(pool) < need:
        return None
    fillers = env.rng.sample(pool, need)
    at = 0 if core.first else env.rng.randint(0, len(fillers))
    lines = fillers[:at] + core.lines + fillers[at:]
    response = " ".join(cite(line.text, citation, line.cites) for line in lines)
    question = core.question
    if question is None:
        source = sorted(core.used) + [f.text for f in fillers]
        for s in source:
            made = question_for(s, env.rng)
            if made:
                question = made[0]
                break
        else:
            question = generic_question(env)
    return response, question, len(lines)


def build_one(corpus: Corpus, slot: Slot, rng: random.Random) -> SynthCase | None:
    spec = KINDS[slot.kind]
    n_passages = passage_count(slot.cell.passages, rng)
    n_lines = line_count(slot.cell.length, rng)
    target = rng.randrange(len(corpus.passages))
    context, ti = choose_context(corpus, target, n_passages, rng)
    if len(context) < spec.min_passages:
        return None
    env = Env(corpus, context, ti, rng, n_lines)
    core = spec.build(env)
    if core is None:
        return None
    made = assemble(env, core, slot.cell.citation)
    if made is None:
        return None
    response, question, sentences = made
    meta: dict[str, Any] = {"group": spec.group, "sentences": sentences, "n_passages": len(env.context),
                            "claim": " ".join(line.text for line in core.lines),
                            "doc": corpus.docs[corpus.passages[target].doc].id, "generator": "template", **core.meta}
    return SynthCase("", slot.kind, slot.cell, question, env.context, response, spec.expected(slot.cell.citation),
                     meta)


@dataclass(slots=True)
class Built:
    cases: list[SynthCase]
    shortfall: dict[str, int]  # kind -> planned slots left empty
    duplicates: int


def synthesize(corpus: Corpus, slots: Sequence[Slot], seed: int, *,
               progress: Callable[[int], None] | None = None) -> Built:
    """One case per slot where the documents allow it; deterministic for (corpus, slots, seed)."""
    if not corpus.passages:
        raise ValueError("the documents gave no passages (each needs at least two sentences of 5-60 words)")
    seen: set[str] = set()
    cases: list[SynthCase] = []
    shortfall: dict[str, int] = {}
    empty_streak: dict[str, int] = {}
    found: dict[str, int] = {}
    duplicates = 0
    for n, slot in enumerate(slots):
        case = None
        if empty_streak.get(slot.kind, 0) < GIVE_UP_AFTER or found.get(slot.kind):
            rng = random.Random(f"{seed}:{n}")
            for _ in range(TRIES):
                made = build_one(corpus, slot, rng)
                if made is None:
                    continue
                key = dedup_key(made.question, made.response)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                case = made
                break
        if case is None:
            shortfall[slot.kind] = shortfall.get(slot.kind, 0) + 1
            empty_streak[slot.kind] = empty_streak.get(slot.kind, 0) + 1
        else:
            found[slot.kind] = found.get(slot.kind, 0) + 1
            case.id = f"synth-{seed}-{n:05d}"
            case.meta["seed"] = seed
            cases.append(case)
        if progress is not None:
            progress(1)
    return Built(cases, shortfall, duplicates)


def rows(cases: Iterable[SynthCase]) -> list[dict[str, Any]]:
    return [c.to_row() for c in cases]
