"""The `Relation` base: one small class per relation, its docstring saying what it asserts (shown by
`guardrail metamorph relations` and in the report).

A relation has two halves: `transform(case, rng, fields)` builds the follow-up case (deterministic for a given
`rng`; None when it does not apply to this case), and `check(source_output, followup_output, pair)` says whether the
outputs keep the relation (`expect = "same"` or `"flip"`, see `compare.py`). Options are pydantic data, so a relation
configured from YAML fails fast on a typo.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from guardrail_server.metamorph import compare
from guardrail_server.metamorph.types import Check, Edit, Expect, FieldName, Output, Pair, Transformed
from guardrail_invariants.types import Case, Passage

SutKind = str  # "judges" | "generator"


class RelationOptions(BaseModel):
    """Options every relation has; relations add their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: tuple[FieldName, ...] | None = Field(
        None, description="case fields to transform; default depends on the system under test (see each relation)")
    invariants: tuple[str, ...] | None = Field(
        None, description="judges the relation constrains when our invariants are under test (default: the class's)")
    variants: int = Field(1, ge=1, le=100, description="pairs per seed case (each with its own seeded rng)")
    min_f1: float = Field(0.8, ge=0.0, le=1.0, description="text outputs: token F1 at or above which answers agree")


class Relation:
    """Base class; subclasses set `name`, `expect`, `invariants`, `default_fields` and implement `transform`."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    expect: ClassVar[Expect] = "same"
    invariants: ClassVar[tuple[str, ...]] = ()
    default_fields: ClassVar[dict[SutKind, tuple[FieldName, ...]]] = {
        "judges": ("context",), "generator": ("question", "context")}
    Options: ClassVar[type[RelationOptions]] = RelationOptions

    def __init__(self, options: RelationOptions | dict | None = None, *, name: str | None = None) -> None:
        if options is None or isinstance(options, dict):
            options = self.Options.model_validate(options or {})
        self.options = options
        self.key = name or self.name  # a YAML entry may run a shipped class under its own name

    @classmethod
    def describe(cls) -> str:
        """The docstring's first paragraph, on one line."""
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(doc.split())

    @property
    def summary(self) -> str:
        """What this relation asserts, for listings and the report (a YAML relation's own `doc`)."""
        return getattr(self, "doc", "") or self.describe()

    @property
    def family_name(self) -> str:
        return self.family or self.name

    def prepare(self, seeds: Sequence[Case]) -> None:
        """Called once with every seed case before any pair is generated (e.g. to collect distractor passages)."""

    def fields_for(self, kind: SutKind) -> tuple[FieldName, ...]:
        return self.options.fields or self.default_fields.get(kind, ("question", "context"))

    def targets_for(self, kind: SutKind, available: Sequence[str]) -> tuple[str, ...]:
        """Which outputs of the system this relation constrains: named invariants for our judges, else all."""
        if kind != "judges":
            return tuple(available)
        wanted = self.options.invariants if self.options.invariants is not None else self.invariants
        return tuple(t for t in available if t in wanted)

    def transform(self, case: Case, rng: random.Random, fields: Sequence[FieldName]) -> Transformed | None:
        raise NotImplementedError

    def check(self, source: Output, followup: Output, pair: Pair) -> Check:
        if self.expect == "flip":
            return compare.flipped(source, followup, min_f1=self.options.min_f1)
        return compare.same(source, followup, min_f1=self.options.min_f1, mapping=pair.mapping)


# ---------------------------------------------------------------------------------------------- text helpers


def segments(case: Case, fields: Sequence[FieldName]) -> list[tuple[str, str]]:
    """(where, text) of every transformable text in the chosen fields, in a fixed order."""
    out: list[tuple[str, str]] = []
    if "question" in fields and case.question:
        out.append(("question", case.question))
    if "context" in fields:
        out += [(f"context[{i}]", p.text) for i, p in enumerate(case.context) if p.text]
    if "response" in fields and case.response:
        out.append(("response", case.response))
    return out


def rebuild(case: Case, texts: dict[str, str]) -> Case:
    """`case` with the segments in `texts` replaced."""
    context = tuple(replace(p, text=texts.get(f"context[{i}]", p.text)) for i, p in enumerate(case.context))
    return replace(case, question=texts.get("question", case.question), response=texts.get("response", case.response),
                   context=context)


def transformed(case: Case, texts: dict[str, str], edits: list[Edit], **kwargs: object) -> Transformed | None:
    """None when nothing changed (a pair whose sides are identical tests nothing)."""
    if not edits:
        return None
    new = rebuild(case, texts)
    if new == case:
        return None
    return Transformed(new, tuple(edits), **kwargs)  # type: ignore[arg-type]


def explicit_ids(passages: Sequence[Passage]) -> tuple[Passage, ...]:
    """Passages addressed by position get their 1-based index as id, so moving them does not re-point citations."""
    return tuple(p if p.id else replace(p, id=str(i)) for i, p in enumerate(passages, start=1))
