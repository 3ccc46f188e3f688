"""`pii_boundary`: the response must not carry personal data from the retrieved context that the user did
not bring into the question themselves.

A leak is an entity detected in the response whose normalized value occurs in some context passage and not
in the question. Detection (Presidio) runs on the response only; provenance is a normalized search in the
question and the passages (cached per passage content), plus NER on small windows only for partial names.
The value itself never leaves this module: findings carry spans, types, passage ids and `<ENTITY_TYPE>`.

No response is too long to check: a response longer than `chunk_chars` is first swept whole by the pattern
recognizers (contact identifiers: e-mail, phone, card, SSN...; ~0.1 s for 30,000 characters), then analysed fully
(NER too) in chunks of `chunk_chars`, overlapping by `chunk_overlap_chars` so an entity across a cut is still found
whole, front to back. When the check's time budget (`guardrail_invariants.deadline`) or `ner_max_tokens` runs out
first, names and places past that point were not looked for: the verdict is `partial` (or `fail` when a leak was
found anywhere) with that span unchecked (`pii.detect.scan`).

Names and places are personal data only about private people. "Paris" in an answer grounded in an encyclopedia
passage is not a leak (it was: 35% of grounded HaluEval answers were flagged). So the contextual types (PERSON,
LOCATION, NRP) depend on the passage they come from:
- a passage marked `private` (on the wire, or by `private_sources`): a leak, as every other type;
- a passage marked `public` (on the wire, or by `public_sources`): not a leak;
- an unmarked passage, by `unmarked_passages` — default `tied`: a leak only when a contact identifier (e-mail,
  phone, card, account or ID number, IP, street address) stands within `tie_window_chars` of the name or place in
  that passage. A customer record ("Jane Doe, jane@…, +1 …") ties its names; an encyclopedia paragraph does not.
Contact identifiers are leaks wherever they come from; listed `public_figures` and `allow_list` values never are.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from guardrail_invariants import deadline as deadlines
from guardrail_invariants.base import InvariantOptions, verdict_from_score
from guardrail_invariants.pii.detect import KNOWN_ENTITIES, NER_TYPES, Detection, Scan, analyze, scan
from guardrail_invariants.pii.index import LruCache, TextIndex, content_key
from guardrail_invariants.pii.names import (
    Budget,
    Spans,
    attributed_anywhere,
    name_covered_in,
    occurrences,
    partial_name_in,
    spacy_person_tagger,
)
from guardrail_invariants.pii.normalize import Name, fold, normalize, phone_key, trim_name
from guardrail_invariants.pii.places import is_public_place
from guardrail_invariants.types import Case, Coverage, Finding, Passage, Verdict

logger = logging.getLogger(__name__)

DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "UK_NINO", "IN_AADHAAR", "IP_ADDRESS",
    "PERSON", "LOCATION", "STREET_ADDRESS", "DATE_OF_BIRTH", "URL_SECRET",
)
# Noisy detectors need more evidence than the default floor (see the "Known traps").
DEFAULT_SCORE_THRESHOLDS: dict[str, float] = {
    "US_BANK_NUMBER": 0.6,
    "US_DRIVER_LICENSE": 0.6,
    "DATE_TIME": 0.9,
    "URL": 0.6,
}
# Contact identifiers: values that point at one person by themselves, and that tie a name or a place next to them
# to that person. Card, account and ID numbers count; noisy digit types (US_BANK_NUMBER, US_DRIVER_LICENSE) do not.
CONTACT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "US_ITIN", "US_PASSPORT", "UK_NHS",
    "UK_NINO", "IN_AADHAAR", "MEDICAL_LICENSE", "IP_ADDRESS", "STREET_ADDRESS",
)
# A date of birth too: every encyclopedia biography has one; next to a contact identifier in a record it is personal.
CONTEXTUAL_ENTITIES: tuple[str, ...] = ("PERSON", "LOCATION", "NRP", "DATE_OF_BIRTH")
MAX_TIE_OCCURRENCES = 5  # occurrences of a name or place per passage looked at for a nearby identifier
_ENTITY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class PiiCheckError(RuntimeError):
    """Analysis failed; the message names the exception type only, never text from the case."""


class PiiBoundaryOptions(InvariantOptions):
    entities: tuple[str, ...] = Field(DEFAULT_ENTITIES, description="Presidio entity types checked for leaks")
    unmarked_passages: Literal["tied", "private", "public"] = Field(
        "tied", description="names and places (contextual_entities) from a passage marked neither public nor private: "
        "tied = a leak only when a contact identifier (tie_entities) is within tie_window_chars of them in that "
        "passage; private = always a leak (the behaviour before 0.2); public = never")
    contextual_entities: tuple[str, ...] = Field(
        CONTEXTUAL_ENTITIES, validation_alias=AliasChoices("contextual_entities", "public_source_entities"),
        description="types that are personal data only about private people: leaks from private passages, not from "
        "public ones, and from unmarked ones per unmarked_passages (old name: public_source_entities)")
    tie_entities: tuple[str, ...] = Field(
        CONTACT_ENTITIES, description="contact identifiers that tie a name or place to a person (unmarked_passages: "
        "tied); detected by patterns around the name's occurrences in the passage")
    tie_window_chars: int = Field(
        250, ge=0, le=32_000, description="how close (characters) a contact identifier must be to an occurrence of "
        "the name or place in the passage; 0 = anywhere in the passage")
    max_tie_windows: int = Field(
        32, ge=0, description="pattern scans of passage windows per check for the tie (cache hits are free); past it "
        "a name or place counts as tied, i.e. as a leak: the budget bounds the cost, never the protection")
    private_sources: tuple[str, ...] = Field(
        (), description="glob patterns on passage id or url of private documents (crm://*, tickets/*); a passage "
        "marked on the wire keeps its mark")
    score_threshold: float = Field(0.35, ge=0.0, le=1.0, description="minimum detector score for every type")
    score_thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_SCORE_THRESHOLDS),
        description="per-type minimum detector score, merged over the defaults for noisy types",
    )
    allow_list: tuple[str, ...] = Field((), description="values never reported (support lines, company e-mail)")
    public_figures: tuple[str, ...] = Field((), description="names that are never a leak, in whole or part")
    public_sources: tuple[str, ...] = Field(
        (), description="glob patterns on passage id or url of public documents (press, encyclopedia); a passage "
        "marked on the wire keeps its mark"
    )
    public_places: bool = Field(
        True, description="a LOCATION that names a country, capital, US state, continent or city of 100,000+ people "
        "(the bundled GeoNames list) or a named facility (\"the Louvre\") is a public place: in an unmarked passage "
        "a street address next to it does not tie it to a person (it is that address's city); a phone, e-mail or ID "
        "number still does")
    quoted_names_are_public: bool = Field(
        False, description="a name quoted as speaker/author in the context (… said X, “…”) is public"
    )
    partial_names: bool = Field(True, description="a name part (“Ms. Doe”) of a person in the context is a leak")
    max_name_windows: int = Field(16, ge=0, description="NER windows per check for partial names")
    pattern_only: bool = Field(False, description="regex recognizers only, no spaCy (no PERSON/LOCATION)")
    region: str = Field("US", min_length=2, max_length=2, description="default region for phone numbers")
    cache_size: int = Field(4096, ge=0, description="passages (and NER windows) kept analysed, by content hash")
    max_findings: int = Field(50, ge=1)
    ner_max_tokens: int = Field(
        8000, ge=100, description="spaCy NER (PERSON, LOCATION, NRP) reads the response's first N tokens — prose of "
        "32,000 characters is ~6,500; symbol-dense text can reach 30,000, ~7 s of NER. Pattern types (e-mail, phone, "
        "card, ...) always read all of it; past the cap the verdict is partial (reason limit)")
    chunk_chars: int = Field(
        2000, ge=200, le=32_000, description="the response is analysed in chunks of about this many characters, "
        "front to back, so the time budget can stop it between chunks (~60 ms a chunk of prose on an idle core)")
    chunk_overlap_chars: int = Field(
        200, ge=32, le=8000, description="consecutive chunks overlap by this much, so an entity across a cut (up to "
        "about this long) is still found whole")

    @model_validator(mode="after")
    def _overlap_fits(self) -> PiiBoundaryOptions:
        if self.chunk_overlap_chars * 4 > self.chunk_chars:
            raise ValueError(f"chunk_overlap_chars ({self.chunk_overlap_chars}) must be at most a quarter of "
                             f"chunk_chars ({self.chunk_chars})")
        return self

    @field_validator("entities", "contextual_entities", "tie_entities")
    @classmethod
    def _entity_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            _check_entity(name)
        return tuple(dict.fromkeys(value))

    @field_validator("score_thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            _check_entity(name)
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"score threshold of {name} must be in [0, 1]")
        return {**DEFAULT_SCORE_THRESHOLDS, **value}


def _check_entity(name: str) -> None:
    """A type the analyzer cannot produce would disable its check without a word: refused at start-up instead."""
    if not _ENTITY_NAME.match(name):
        raise ValueError(f"entity type {name!r} must be an upper-case Presidio name such as PHONE_NUMBER")
    if name not in KNOWN_ENTITIES:
        raise ValueError(f"unknown entity type {name!r}; known: {', '.join(sorted(KNOWN_ENTITIES))}")


@dataclass(slots=True)
class _Tally:
    detected: int = 0
    leaks: int = 0
    own_data: int = 0
    unsourced: int = 0
    allowed: int = 0
    public: int = 0
    untied: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class PiiBoundaryInvariant:
    """Score = Π(1 − detector score) over leaks — the chance that none of them is real PII, 1.0 with no
    leak. The default threshold of 1.0 fails on any leak; a lower one tolerates low-confidence detections."""

    name: ClassVar[str] = "pii_boundary"
    default_threshold: ClassVar[float] = 1.0
    Options: ClassVar[type[PiiBoundaryOptions]] = PiiBoundaryOptions

    def __init__(self, threshold: float, options: PiiBoundaryOptions, zoo: Any = None) -> None:
        self.threshold = threshold
        self.options = options
        self._analyzer: Any = None
        self._patterns: Any = None  # the pattern-only analyzer, for contact identifiers near names in passages
        self._sweep: Any = None  # the pattern-only analyzer for the part of a response NER did not reach
        self._entities: tuple[str, ...] = ()
        self._tie_entities: tuple[str, ...] = ()
        self._passages: LruCache[bytes, TextIndex] = LruCache(options.cache_size)
        self._windows: LruCache[bytes, Spans] = LruCache(options.cache_size)
        self._identifiers: LruCache[bytes, tuple[tuple[int, int], ...]] = LruCache(options.cache_size)
        self._tagger: Any = None
        self._allowed = self._allow_keys(options)
        self._figures = [set(fold(n).split()) for n in options.public_figures if fold(n)]

    @property
    def mode(self) -> str:
        return "pattern" if self.options.pattern_only else "spacy"

    async def load(self) -> None:
        from guardrail_invariants.pii.engine import get_analyzer, spacy_nlp  # Presidio and spaCy: seconds to import

        o = self.options
        self._analyzer = await asyncio.to_thread(get_analyzer, o.pattern_only)
        supported = set(self._analyzer.get_supported_entities(language="en"))
        if o.pattern_only:
            supported -= NER_TYPES
        else:
            self._tagger = spacy_person_tagger(spacy_nlp())
            self._sweep = await asyncio.to_thread(get_analyzer, True)
        self._entities = tuple(e for e in o.entities if e in supported)
        missing = sorted(set(o.entities) - set(self._entities))
        if missing:
            logger.warning("pii_boundary: entity types unavailable in %s mode: %s", self.mode, ", ".join(missing))
        if o.unmarked_passages == "tied" and set(self._entities) & set(o.contextual_entities):
            self._patterns = await asyncio.to_thread(get_analyzer, True)
            available = set(self._patterns.get_supported_entities(language="en"))
            self._tie_entities = tuple(e for e in o.tie_entities if e in available)

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        if self._analyzer is None:
            await self.load()
        budget = deadlines.current()
        try:
            findings, tally, score, swept = await asyncio.to_thread(self._check_sync, case, budget)
        except Exception as exc:
            # Exception texts from parsers may quote their input: only the type leaves this method.
            raise PiiCheckError(f"pii analysis failed ({type(exc).__name__})") from None
        details = {
            "mode": self.mode,
            "detected": tally.detected,
            "leaks": tally.leaks,
            "own_data": tally.own_data,
            "unsourced": tally.unsourced,
            "allowed": tally.allowed,
            "public": tally.public,
            "untied": tally.untied,
            "leaks_by_type": tally.by_type,
            "chunks": swept.chunks,
            "checked_chars": swept.full_until,
            "swept_chars": swept.swept_until,
        }
        coverage = (Coverage.prefix(len(case.response), swept.full_until, swept.reason)  # type: ignore[arg-type]
                    if swept.full_until < len(case.response) else None)
        return verdict_from_score(self.name, score, self.threshold, findings, started=started,
                                  judge=f"presidio/{self.mode}", details=details, coverage=coverage)

    # --- the synchronous core, run in a worker thread ------------------------------------------------

    def _check_sync(self, case: Case, budget: deadlines.Deadline) -> tuple[list[Finding], _Tally, float, Scan]:
        o = self.options
        swept = scan(self._analyzer, case.response, self._entities, o.score_thresholds, o.score_threshold,
                     chunk_chars=o.chunk_chars, overlap_chars=o.chunk_overlap_chars,
                     ner_max_tokens=None if o.pattern_only else o.ner_max_tokens, patterns=self._sweep,
                     stop_full=budget.expired, stop_sweep=budget.late, presweep=budget.limited)
        detections = swept.detections
        question = TextIndex(case.question)
        passages = [(p.id or str(i), p, self._index(p.text)) for i, p in enumerate(case.context, 1)]
        budget = Budget(o.max_name_windows)
        tie_budget = Budget(o.max_tie_windows)
        tally = _Tally(detected=len(detections))
        findings: list[Finding] = []
        not_leaked = 1.0
        for d in detections:
            value = d.name.value if d.name else normalize(d.entity_type, case.response[d.start : d.end], o.region)
            if value is None:
                continue
            if self._is_allowed(d, value):
                tally.allowed += 1
                continue
            if d.name is not None and self._is_public_figure(d.name):
                tally.public += 1
                continue
            if self._occurs(question, d, value) or self._names_from_question(case.question, d, budget):
                tally.own_data += 1
                continue
            sources = [(pid, p) for pid, p, idx in passages if self._occurs(idx, d, value)]
            match = "exact"
            if not sources and d.name is not None and self._tagger is not None and o.partial_names:
                sources = [
                    (pid, p) for pid, p, _ in passages
                    if partial_name_in(p.text, d.name, self._tagger, self._windows, budget)
                ]
                match = "partial_name"
            if not sources:
                tally.unsourced += 1
                continue
            private = [(pid, p) for pid, p in sources if not self._is_public_source(p, d)]
            if d.name is not None and o.quoted_names_are_public:
                private = [(pid, p) for pid, p in private if not attributed_anywhere(p.text, d.name)]
            if not private:
                tally.public += 1
                continue
            if d.entity_type in o.contextual_entities:
                private = [(pid, p) for pid, p in private
                           if self._counts_in(p, d, value, tie_budget, case.response)]
                if not private:
                    tally.untied += 1
                    continue
            tally.leaks += 1
            tally.by_type[d.entity_type] = tally.by_type.get(d.entity_type, 0) + 1
            not_leaked *= 1.0 - min(1.0, d.score)
            if len(findings) < o.max_findings:
                findings.append(self._finding(d, [pid for pid, _ in private], match))
        return findings, tally, (not_leaked if math.isfinite(not_leaked) else 0.0), swept

    def _finding(self, d: Detection, passage_ids: list[str], match: str) -> Finding:
        return Finding(
            kind="pii_leak",
            message=f"<{d.entity_type}> from passage {passage_ids[0]} leaked",
            start=d.start,
            end=d.end,
            passage_id=passage_ids[0],
            score=round(d.score, 4),
            evidence={
                "entity_type": d.entity_type,
                "detector_score": round(d.score, 4),
                "match": match,
                "passages": passage_ids[:5],
            },
        )

    def _names_from_question(self, question: str, d: Detection, budget: Budget) -> bool:
        """The partial-name fallback on the question's side: a name span whose every token the user gave as (part of)
        a name — e.g. one NER span over two adjacent people the question names separately — is the user's own."""
        o = self.options
        return (d.name is not None and self._tagger is not None and o.partial_names and bool(question.strip())
                and name_covered_in(question, d.name, self._tagger, self._windows, budget))

    def _sensitivity(self, passage: Passage) -> str:
        """`private` / `public` / "" (unmarked): the wire's mark first, then the configured source patterns."""
        if passage.sensitivity:
            return passage.sensitivity
        o = self.options
        keys = [k for k in (passage.id, passage.url) if k]
        if any(fnmatch.fnmatchcase(k, pattern) for k in keys for pattern in o.private_sources):
            return "private"
        if any(fnmatch.fnmatchcase(k, pattern) for k in keys for pattern in o.public_sources):
            return "public"
        return ""

    def _counts_in(self, passage: Passage, d: Detection, value: str, budget: Budget, response: str = "") -> bool:
        """Whether a name or place found in this (non-public) passage is personal data there."""
        mark = self._sensitivity(passage) or self.options.unmarked_passages
        if mark != "tied":
            return mark == "private"
        return self._tied(passage.text, d, value, budget, response)

    def _tied(self, text: str, d: Detection, value: str, budget: Budget, response: str = "") -> bool:
        """A contact identifier within `tie_window_chars` of an occurrence of the name or place in `text`. A public
        place (`public_places`) is not tied by a street address: next to one it is that address's city or landmark
        ("Address: 525 W. Ottawa St., Lansing" ties Lansing to no one); a phone or an e-mail beside it still ties it."""
        public_place = (self.options.public_places and d.entity_type == "LOCATION"
                        and is_public_place(response, d.start, d.end))
        entities = tuple(e for e in self._tie_entities if e != "STREET_ADDRESS") if public_place else None
        if self._patterns is None or not self._tie_entities:
            return False
        radius = self.options.tie_window_chars
        if radius == 0:
            spans = self._identifier_spans(text, budget, entities)
            return spans is None or bool(spans)
        words = tuple(d.name.surface) if d.name is not None else tuple(value.split())
        found = list(occurrences(text, words, capitalized=False, limit=MAX_TIE_OCCURRENCES)) if words else []
        if not found and d.name is not None:  # a partial name: where its tokens occur
            for token in (t for t in d.name.surface if len(t.rstrip(".")) > 1):
                found += occurrences(text, (token,), capitalized=True, limit=MAX_TIE_OCCURRENCES)
        for start, end in found[: 2 * MAX_TIE_OCCURRENCES]:
            lo, hi = max(0, start - radius), min(len(text), end + radius)
            spans = self._identifier_spans(text[lo:hi], budget, entities)
            if spans is None or any(not (lo + s < end and start < lo + e) for s, e in spans):
                return True
        return False

    def _identifier_spans(self, text: str, budget: Budget, entities: tuple[str, ...] | None = None
                          ) -> tuple[tuple[int, int], ...] | None:
        """Spans of contact identifiers (`entities`, default tie_entities) in `text` (pattern recognizers only, no NER),
        cached by content; None when this check's scan budget is spent (the caller then counts the name as tied)."""
        o = self.options
        entities = self._tie_entities if entities is None else entities
        key = content_key(text) + ("|".join(entities).encode() if entities != self._tie_entities else b"")
        if key not in self._identifiers:
            if budget.windows <= 0:
                return None
            budget.windows -= 1

        def build() -> tuple[tuple[int, int], ...]:
            found = analyze(self._patterns, text, entities, o.score_thresholds, o.score_threshold)
            return tuple((r.start, r.end) for r in found)

        return self._identifiers.get_or_build(key, build)

    def _index(self, text: str) -> TextIndex:
        return self._passages.get_or_build(content_key(text), lambda: TextIndex(text))

    @staticmethod
    def _occurs(index: TextIndex, d: Detection, value: str) -> bool:
        if d.name is not None:
            return any(_has_name_form(index, form) for form in d.name.forms())
        return index.contains(d.entity_type, value)

    # --- policy ----------------------------------------------------------------------------------------

    def _allow_keys(self, o: PiiBoundaryOptions) -> dict[str, frozenset[str]]:
        keys: dict[str, frozenset[str]] = {}
        for entity in o.entities:
            found = set()
            for item in o.allow_list:
                if entity == "PERSON":
                    name = trim_name(item, 0, len(item))
                    value = name.value if name else None
                else:
                    value = normalize(entity, item, o.region)
                if value is not None:
                    found.add(self._allow_key(entity, value))
            keys[entity] = frozenset(found)
        return keys

    @staticmethod
    def _allow_key(entity: str, value: str) -> str:
        return phone_key(value) if entity == "PHONE_NUMBER" else value

    def _is_allowed(self, d: Detection, value: str) -> bool:
        allowed = self._allowed.get(d.entity_type)
        return bool(allowed) and self._allow_key(d.entity_type, value) in allowed  # type: ignore[operator]

    def _is_public_figure(self, name: Name) -> bool:
        tokens = {t for t in name.tokens if len(t.rstrip(".")) > 1}
        return bool(tokens) and any(tokens <= figure for figure in self._figures)

    def _is_public_source(self, passage: Passage, d: Detection) -> bool:
        return d.entity_type in self.options.contextual_entities and self._sensitivity(passage) == "public"


def _has_name_form(index: TextIndex, form: str) -> bool:
    """Multi-word names match case-folded; a single word must also be capitalized where it occurs, or
    "Will" in the response would be found in every "will" of the context."""
    if " " in form:
        return index.has_word_sequence(form)
    return index.has_word_sequence(form) and next(
        occurrences(index.text, (form,), capitalized=True, limit=1), None
    ) is not None
