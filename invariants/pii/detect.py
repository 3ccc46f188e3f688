"""PII detection in one text: Presidio results filtered by per-type score thresholds, overlaps resolved in
favour of validated pattern types, PERSON spans trimmed to the name itself.

Presidio is imported for type hints only: importing this module (and the invariant's options, which config
validation needs) must not pay for Presidio, spaCy and the transformers stack it pulls in — seconds of start-up
for a command that only validates a config file."""

from __future__ import annotations

import re

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guardrail_invariants.pii.normalize import Name, trim_name

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult

LANGUAGE = "en"

# Checksummed or strictly formatted: when one overlaps a fuzzy result (URL on the domain of an e-mail,
# DATE_TIME on groups of a card number, PERSON/LOCATION on an e-mail's local part), the precise one wins.
PRECISE_TYPES = frozenset(
    {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "US_ITIN", "IP_ADDRESS", "CRYPTO",
     "UK_NHS", "MAC_ADDRESS", "STREET_ADDRESS", "UK_NINO", "IN_AADHAAR", "DATE_OF_BIRTH", "URL_SECRET"}
)
# Types that only spaCy's NER produces; unavailable in pattern-only mode.
NER_TYPES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
# Every type the shared analyzer can produce (Presidio's English recognizers, spaCy's mapped labels, ours). A type
# outside this set in config is a typo (`PERSN`) that would silently check nothing: config validation refuses it.
# tests/test_pii_defaults.py keeps this equal to what the real analyzer reports.
KNOWN_ENTITIES = frozenset({
    "CREDIT_CARD", "CRYPTO", "DATE_OF_BIRTH", "DATE_TIME", "EMAIL_ADDRESS", "IBAN_CODE", "IN_AADHAAR", "IP_ADDRESS",
    "LOCATION", "MAC_ADDRESS", "MEDICAL_LICENSE", "NRP", "PERSON", "PHONE_NUMBER", "STREET_ADDRESS", "UK_NHS",
    "UK_NINO", "URL", "URL_SECRET", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN", "US_PASSPORT", "US_SSN", "UUID",
})


@dataclass(frozen=True, slots=True)
class Detection:
    entity_type: str
    start: int
    end: int
    score: float
    name: Name | None = None  # set for PERSON


_SYMBOL_RUN = re.compile(r"[^\w\s]{3,}")
_LONG_RUN = re.compile(r"\S{65,}")


def spacy_view(text: str) -> str:
    """The text spaCy reads: same length, so every offset still points into the original.

    Runs of 3+ symbols are blanked and whitespace-free runs are cut every 64 characters. Why: spaCy's tokenizer is
    quadratic on a long run without whitespace (31 KB of backticks held the GIL for 50-110 s) and every symbol is a
    token NER pays for; no name or place lives inside such runs, and Presidio's pattern recognizers (e-mail, phone,
    card...) still read the original text.
    """
    text = _SYMBOL_RUN.sub(lambda m: " " * len(m.group(0)), text)
    return _LONG_RUN.sub(lambda m: "".join(" " if i % 64 == 63 else c for i, c in enumerate(m.group(0))), text)


def resolve_overlaps(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Keeps one result per overlapping group: precise types first, then higher score, then longer span."""
    ranked = sorted(
        results, key=lambda r: (r.entity_type not in PRECISE_TYPES, -r.score, -(r.end - r.start), r.start)
    )
    kept: list[RecognizerResult] = []
    for r in ranked:
        if all(r.end <= k.start or k.end <= r.start for k in kept):
            kept.append(r)
    return sorted(kept, key=lambda r: r.start)


def analyze(
    analyzer: AnalyzerEngine,
    text: str,
    entities: Collection[str],
    thresholds: Mapping[str, float],
    default_threshold: float,
    ner_max_tokens: int | None = None,
) -> list[RecognizerResult]:
    if not text.strip() or not entities:
        return []
    floor = min([default_threshold, *(thresholds.get(e, default_threshold) for e in entities)])
    artifacts = None
    if analyzer.nlp_engine.engine_name != "no_op":
        # Presidio's context enhancer walks `tokens` once per result; over a spaCy Doc every step builds a new
        # Token object, which made it cost more than NER itself on long responses. A list walks for free.
        artifacts = analyzer.nlp_engine.process_text(text, LANGUAGE, max_tokens=ner_max_tokens)
        artifacts.tokens = list(artifacts.tokens)
    results = analyzer.analyze(
        text, language=LANGUAGE, entities=list(entities), score_threshold=floor, nlp_artifacts=artifacts
    )
    results = [r for r in results if r.score >= thresholds.get(r.entity_type, default_threshold)]
    return resolve_overlaps(results)


def detect(
    analyzer: AnalyzerEngine,
    text: str,
    entities: Collection[str],
    thresholds: Mapping[str, float],
    default_threshold: float,
    ner_max_tokens: int | None = None,
) -> list[Detection]:
    detections = []
    for r in analyze(analyzer, text, entities, thresholds, default_threshold, ner_max_tokens):
        if r.entity_type == "PERSON":
            name = trim_name(text, r.start, r.end)
            if name is None:
                continue
            detections.append(Detection("PERSON", name.start, name.end, float(r.score), name))
        else:
            detections.append(Detection(r.entity_type, r.start, r.end, float(r.score)))
    return detections
