"""Relations on the retrieved passages: an unrelated passage added, the passages reordered."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import ClassVar, Literal

from pydantic import Field

from guardrail_server.metamorph.relations.base import Relation, RelationOptions, explicit_ids
from guardrail_server.metamorph.types import Edit, FieldName, Transformed
from guardrail_invariants.text import content_words
from guardrail_invariants.types import Case, Passage


@cache
def builtin_distractors() -> tuple[str, ...]:
    data = json.loads(resources.files("guardrail_server.metamorph").joinpath("lexicon/distractors.json").read_text())
    return tuple(data["passages"])


def _vocab(case: Case) -> set[str]:
    return set(content_words(" ".join([case.question, case.response, *(p.text for p in case.context)])))


class DistractorOptions(RelationOptions):
    position: Literal["random", "start", "end"] = Field(
        "random", description="where the distractor goes; passages without ids always get it at the end (their "
        "position is their address)")
    max_overlap: int = Field(0, ge=0, description="content words a distractor may share with the case")
    min_chars: int = Field(40, ge=1)
    max_chars: int = Field(800, ge=1)
    max_passages: int = Field(64, ge=1, description="not applied to a case that already has this many passages "
                              "(the service's default limits.max_passages: one more would be refused as input)")


class DistractorPassage(Relation):
    """Adding a passage unrelated to the case (from another seed case, or the built-in list
    `lexicon/distractors.json`; it shares no content word with the case) must not change the output: a grounded answer
    stays grounded, a citation still resolves, no new personal data is in reach of the response."""

    name = "distractor_passage"
    family: ClassVar[str] = "distractor"
    expect = "same"
    invariants: ClassVar[tuple[str, ...]] = ("entailment", "reference_integrity", "pii_boundary")
    default_fields: ClassVar[dict[str, tuple[FieldName, ...]]] = {"judges": ("context",), "generator": ("context",)}
    Options: ClassVar[type[RelationOptions]] = DistractorOptions

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pool: list[str] = list(builtin_distractors())

    def prepare(self, seeds: Sequence[Case]) -> None:
        o = self.options
        seen: dict[str, None] = {}
        for case in seeds:
            for p in case.context:
                if o.min_chars <= len(p.text) <= o.max_chars:  # type: ignore[attr-defined]
                    seen.setdefault(p.text)
        self.pool = list(seen) + list(builtin_distractors())

    def transform(self, case: Case, rng: random.Random, fields: Sequence[FieldName]) -> Transformed | None:
        if "context" not in fields or len(case.context) >= self.options.max_passages:  # type: ignore[attr-defined]
            return None
        vocab = _vocab(case)
        own = {p.text for p in case.context}
        order = list(range(len(self.pool)))
        rng.shuffle(order)
        limit = self.options.max_overlap  # type: ignore[attr-defined]
        text = next((self.pool[i] for i in order if self.pool[i] not in own
                     and len(vocab & set(content_words(self.pool[i]))) <= limit), None)
        if text is None:
            return None
        ids = {p.id for p in case.context}
        new_id = next(f"distractor-{k}" if k else "distractor" for k in range(len(ids) + 2)
                      if (f"distractor-{k}" if k else "distractor") not in ids)
        passages = list(case.context)
        addressed = all(p.id for p in passages)
        position = self.options.position  # type: ignore[attr-defined]
        if not addressed or position == "end":
            at = len(passages)
        elif position == "start":
            at = 0
        else:
            at = rng.randrange(len(passages) + 1)
        passages.insert(at, Passage(id=new_id if addressed or not passages else "", text=text))
        return Transformed(replace(case, context=tuple(passages)),
                           (Edit(f"context[{at}]", "distractor", "", text),))


class PassageShuffle(Relation):
    """Reordering the passages (each keeps its id, so citations point where they did; passages addressed by position
    get their index as id first, on both sides) must not change the output."""

    name = "passage_shuffle"
    family: ClassVar[str] = "shuffle"
    expect = "same"
    invariants: ClassVar[tuple[str, ...]] = ("entailment", "reference_integrity", "pii_boundary")
    default_fields: ClassVar[dict[str, tuple[FieldName, ...]]] = {"judges": ("context",), "generator": ("context",)}

    def transform(self, case: Case, rng: random.Random, fields: Sequence[FieldName]) -> Transformed | None:
        if "context" not in fields or len(case.context) < 2:
            return None
        passages = explicit_ids(case.context)
        source = replace(case, context=passages) if passages != case.context else None
        order = list(range(len(passages)))
        for _ in range(8):
            rng.shuffle(order)
            if order != sorted(order):
                break
        else:
            order = order[1:] + order[:1]
        shuffled = tuple(passages[i] for i in order)
        edit = Edit("context", "order", ",".join(p.id for p in passages), ",".join(p.id for p in shuffled))
        return Transformed(replace(case, context=shuffled), (edit,), source=source)
