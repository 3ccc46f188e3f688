"""The data a metamorphic run passes around: what a transformation changed, what a system answered, a test pair."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from guardrail_invariants.types import Case, Passage

FieldName = Literal["question", "context", "response"]
Expect = Literal["same", "flip"]
ALLOWED = ("pass", "skipped")  # a skipped check is allowed, as the service treats it


@dataclass(frozen=True, slots=True)
class Edit:
    """One change a transformation made: where (`context[2]`, `question`, `response`), what kind, before -> after."""

    where: str
    kind: str
    before: str
    after: str

    def describe(self) -> str:
        return f"{self.where}: {self.kind} {self.before!r} -> {self.after!r}"


@dataclass(frozen=True, slots=True)
class Transformed:
    """A follow-up case. `source` replaces the seed as the pair's first side when the relation normalizes it (e.g.
    explicit passage ids before a shuffle); `mapping` is applied to the source's *text* output before comparing
    (a demographic swap renames people in the expected answer too)."""

    case: Case
    edits: tuple[Edit, ...]
    source: Case | None = None
    mapping: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Output:
    """What a system under test answered for one case and one target.

    Text systems fill `text`; classifiers may set `label`; our invariants set `label` to the verdict's outcome,
    `score` to its score and `verdict=True` (their relations compare decisions, allowed vs. fail).
    """

    text: str = ""
    label: str | None = None
    score: float | None = None
    error: str = ""
    judge: str = ""
    latency_s: float = 0.0
    verdict: bool = False
    findings: tuple[dict[str, Any], ...] = ()

    @property
    def allowed(self) -> bool | None:
        """For verdicts: does the service let it through (pass, or skipped)?"""
        if not self.verdict or self.label is None:
            return None
        return self.label in ALLOWED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "label": self.label, "score": self.score}
        if self.error:
            out["error"] = self.error
        if self.findings:
            out["findings"] = list(self.findings)
        return out


@dataclass(frozen=True, slots=True)
class Check:
    """A relation's judgement of one pair: `held` None = the relation does not constrain this pair (inconclusive)."""

    held: bool | None
    score: float
    message: str


@dataclass(frozen=True, slots=True)
class Pair:
    """One generated test: a seed's source case, its follow-up, and the targets (invariants or `sut`) to compare."""

    id: str
    relation: str
    seed_id: str
    variant: int
    source: Case
    followup: Case
    edits: tuple[Edit, ...]
    targets: tuple[str, ...]
    mapping: dict[str, str] = field(default_factory=dict)


def rng_for(*parts: object) -> random.Random:
    """A Random seeded from the parts (global seed, seed case id, relation, variant): stable across runs, machines
    and Python's hash randomization, so a pair can be regenerated and a test can pin its exact output."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def case_key(case: Case) -> str:
    """Content hash of everything a system may look at (ids included: citations resolve by id)."""
    payload = [case.question, case.response, list(case.samples),
               [[p.id, p.text, p.title, p.url] for p in case.context], case.app]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()[:24]


def _passage_dict(p: Passage) -> dict[str, Any]:
    """id and text, plus every other Passage field that is set (title, url, sensitivity, ...): a faithful record."""
    out: dict[str, Any] = {"id": p.id, "text": p.text}
    for f in fields(p):
        value = getattr(p, f.name)
        if f.name not in out and value not in ("", None):
            out[f.name] = value
    return out


def case_to_dict(case: Case) -> dict[str, Any]:
    return {"question": case.question, "response": case.response, "samples": list(case.samples),
            "context": [_passage_dict(p) for p in case.context]}


def with_passages(case: Case, passages: list[Passage] | tuple[Passage, ...]) -> Case:
    from dataclasses import replace

    return replace(case, context=tuple(passages))
