"""Redaction for stored samples (the review store): every detected value becomes `<ENTITY_TYPE>`."""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig

from guardrail_invariants.pii.detect import NER_TYPES, analyze
from guardrail_invariants.pii.engine import get_analyzer, loaded_analyzer
from guardrail_invariants.pii.places import is_public_place

# Broader than the invariant's defaults: a stored sample should rather lose a false positive than keep a
# value. DATE_TIME and URL stay readable (they fire on almost every text and rarely identify anyone).
REDACT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "US_ITIN", "US_BANK_NUMBER",
    "US_DRIVER_LICENSE", "US_PASSPORT", "IP_ADDRESS", "CRYPTO", "MEDICAL_LICENSE", "UK_NHS", "UK_NINO", "IN_AADHAAR",
    "PERSON", "LOCATION", "STREET_ADDRESS", "DATE_OF_BIRTH", "URL_SECRET",
)
REDACT_SCORE_THRESHOLD = 0.3


@lru_cache(maxsize=1)
def _anonymizer() -> AnonymizerEngine:
    return AnonymizerEngine()


def redact(
    text: str,
    *,
    entities: Collection[str] | None = None,
    score_threshold: float = REDACT_SCORE_THRESHOLD,
    pattern_only: bool | None = None,
    keep_public_places: bool = False,
) -> str:
    """`text` with each detected PII value replaced by `<ENTITY_TYPE>`. Synchronous and CPU-bound (call it
    through `asyncio.to_thread` from async code). `keep_public_places`: a LOCATION that is a public place (a city,
    country or state of the bundled list, a named facility: `guardrail_invariants.pii.places`) stays readable.

    Uses the analyzer already loaded in this process (the one `pii_boundary` loaded) when `pattern_only` is
    None, loading the spaCy one if none is; `pattern_only=True/False` picks a mode explicitly.
    """
    if not text or not text.strip():
        return text
    analyzer = loaded_analyzer() if pattern_only is None else None
    if analyzer is None:
        analyzer = get_analyzer(bool(pattern_only))
    wanted = set(REDACT_ENTITIES if entities is None else entities)
    supported = set(analyzer.get_supported_entities(language="en"))
    if not _has_ner(analyzer):
        supported -= NER_TYPES
    results = analyze(analyzer, text, wanted & supported, {}, score_threshold)
    if keep_public_places:
        results = [r for r in results
                   if not (r.entity_type == "LOCATION" and is_public_place(text, r.start, r.end))]
    operators = {"DEFAULT": OperatorConfig("replace")}
    return _anonymizer().anonymize(text=text, analyzer_results=results, operators=operators).text


def _has_ner(analyzer: object) -> bool:
    return getattr(analyzer.nlp_engine, "engine_name", "") != "no_op"  # type: ignore[attr-defined]
