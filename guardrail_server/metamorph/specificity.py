"""How specific an answer is, measured mechanically against the context it was given: entailed content units, plus
grounded named entities and numbers.

- content units: the answer's claim sentences (citation markers stripped, non-claims skipped), split further at
  ';' and at ', and' / ', but' / ', while' between clauses; a unit counts when the NLI model finds it entailed by
  the context (P(entailment) >= `entail_threshold`, the raw model probability through the entailment invariant's
  own window selection `score_claims`);
- named entities (spaCy NER: people, organisations, places, works, events, products, laws, languages, groups) and
  numbers (digits) of the answer that also occur in the context (case-folded, commas in numbers ignored).

Specificity = units + entities + numbers. Ungrounded detail does not count: an answer cannot become "more specific"
by inventing things.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail_invariants.citations import claim_sentences
from guardrail_invariants.entailment import EntailmentOptions, score_claims
from guardrail_invariants.text import is_non_claim
from guardrail_invariants.types import Passage

ENTITY_LABELS = frozenset({"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT", "WORK_OF_ART", "PRODUCT", "LAW",
                           "LANGUAGE"})
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CLAUSE = re.compile(r";\s+|,\s+(?=(?:and|but|while|whereas)\s)")


@dataclass(frozen=True, slots=True)
class Specificity:
    units: int
    entities: int
    numbers: int
    unit_texts: tuple[str, ...] = ()
    entity_texts: tuple[str, ...] = ()
    number_texts: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.units + self.entities + self.numbers

    def summary(self) -> dict[str, Any]:
        return {"total": self.total, "units": self.units, "entities": list(self.entity_texts),
                "numbers": list(self.number_texts)}


def content_units(answer: str, passages: Sequence[Passage] = ()) -> list[str]:
    units = []
    for span in claim_sentences(answer, passages):
        for piece in _CLAUSE.split(span.text):
            piece = re.sub(r"^(?:and|but|while|whereas)\s+", "", piece.strip())
            if len(piece.split()) >= 3 and not is_non_claim(piece):
                units.append(piece)
    return units


def _fold(text: str) -> str:
    return " ".join(text.casefold().replace(",", "").split())


def _occurs(needle: str, haystack: str) -> bool:
    """Whole-token occurrence: '18' is not grounded by '1889', 'Paris' not by 'Parisian'."""
    return bool(needle) and re.search(rf"(?<![\w.]){re.escape(needle)}(?!\w)", haystack) is not None


class SpecificityMeter:
    """Loads the NLI model (from the shared zoo) and spaCy once; `measure` is safe to call concurrently."""

    def __init__(self, zoo: Any, *, model: str | None = None, entail_threshold: float = 0.5) -> None:
        self.zoo = zoo
        self.model_name = model
        self.entail_threshold = entail_threshold
        self.options = EntailmentOptions(judge="model", early_exit=None)
        self.model: Any = None
        self.nlp: Any = None

    async def load(self) -> None:
        from guardrail_invariants.pii.engine import SPACY_MODEL

        import spacy

        self.model = await self.zoo.load_nli(self.model_name)
        self.nlp = await asyncio.to_thread(spacy.load, SPACY_MODEL, disable=["lemmatizer"])

    async def measure(self, answer: str, passages: Sequence[Passage]) -> Specificity:
        if self.model is None:
            await self.load()
        context = " ".join(p.text for p in passages)
        folded = _fold(context)
        units = content_units(answer, passages)
        pairs = [(p.id or str(i), p.text) for i, p in enumerate(passages, start=1) if p.text.strip()]
        entailed: list[str] = []
        if units and pairs:
            scores = await score_claims(self.model, units, pairs, self.options)
            entailed = [u for u, s in zip(units, scores, strict=True) if s.entailment >= self.entail_threshold]
        doc = await asyncio.to_thread(self.nlp, answer)
        entities = sorted({e.text for e in doc.ents if e.label_ in ENTITY_LABELS and _occurs(_fold(e.text), folded)})
        numbers = sorted({n.replace(",", "") for n in _NUMBER.findall(answer) if _occurs(_fold(n), folded)})
        return Specificity(len(entailed), len(entities), len(numbers), tuple(entailed), tuple(entities),
                           tuple(numbers), {"units_checked": len(units)})
