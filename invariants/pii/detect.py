"""PII detection in one text: Presidio results filtered by per-type score thresholds, overlaps resolved in
favour of validated pattern types, PERSON spans trimmed to the name itself.

Presidio is imported for type hints only: importing this module (and the invariant's options, which config
validation needs) must not pay for Presidio, spaCy and the transformers stack it pulls in — seconds of start-up
for a command that only validates a config file."""

from __future__ import annotations

import re
import time

from collections.abc import Callable, Collection, Mapping
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
    return _analyze(analyzer, text, entities, thresholds, default_threshold, ner_max_tokens)[0]


def _analyze(
    analyzer: AnalyzerEngine,
    text: str,
    entities: Collection[str],
    thresholds: Mapping[str, float],
    default_threshold: float,
    ner_max_tokens: int | None = None,
) -> tuple[list[RecognizerResult], int, int]:
    """Results, the spaCy tokens read, and how many leading characters NER covered (all of `text` unless
    `ner_max_tokens` cut it short; all of it too for the pattern-only analyzer, which has no NER types)."""
    if not text.strip() or not entities:
        return [], 0, len(text)
    floor = min([default_threshold, *(thresholds.get(e, default_threshold) for e in entities)])
    artifacts = None
    tokens, covered = 0, len(text)
    if analyzer.nlp_engine.engine_name != "no_op":
        # Presidio's context enhancer walks `tokens` once per result; over a spaCy Doc every step builds a new
        # Token object, which made it cost more than NER itself on long responses. A list walks for free.
        artifacts = analyzer.nlp_engine.process_text(text, LANGUAGE, max_tokens=ner_max_tokens)
        artifacts.tokens = list(artifacts.tokens)
        tokens = len(artifacts.tokens)
        if ner_max_tokens is not None and tokens >= ner_max_tokens and tokens:
            last = artifacts.tokens[-1]
            end = last.idx + len(last.text)
            covered = len(text) if not text[end:].strip() else end
    results = analyzer.analyze(
        text, language=LANGUAGE, entities=list(entities), score_threshold=floor, nlp_artifacts=artifacts
    )
    results = [r for r in results if r.score >= thresholds.get(r.entity_type, default_threshold)]
    return resolve_overlaps(results), tokens, covered


def _detections(text: str, results: list[RecognizerResult]) -> list[Detection]:
    detections = []
    for r in results:
        if r.entity_type == "PERSON":
            name = trim_name(text, r.start, r.end)
            if name is None:
                continue
            detections.append(Detection("PERSON", name.start, name.end, float(r.score), name))
        else:
            detections.append(Detection(r.entity_type, r.start, r.end, float(r.score)))
    return detections


def detect(
    analyzer: AnalyzerEngine,
    text: str,
    entities: Collection[str],
    thresholds: Mapping[str, float],
    default_threshold: float,
    ner_max_tokens: int | None = None,
) -> list[Detection]:
    return _detections(text, analyze(analyzer, text, entities, thresholds, default_threshold, ner_max_tokens))


# ------------------------------------------------------------------------------------------------ chunked scan


def chunk_bounds(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """`(start, end)` of the chunks a long text is analysed in, front to back.

    A chunk ends at the last line break, else sentence end, else whitespace in its second half (a hard cut only in a
    run without whitespace); the next one starts at the first word at most `overlap` characters before that end. So
    every entity up to ~`overlap` characters long lies whole inside some chunk, even one that straddles a cut.
    """
    n = len(text)
    out: list[tuple[int, int]] = []
    lo = 0
    while True:
        hi = n if n - lo <= size else _cut(text, lo + size // 2, lo + size)
        out.append((lo, hi))
        if hi >= n:
            return out
        nxt = max(lo + 1, hi - overlap)
        if not text[nxt - 1].isspace():  # start at a word, not inside one
            gap = next((k for k in range(nxt, hi) if text[k].isspace()), None)
            nxt = gap + 1 if gap is not None else nxt
        lo = nxt


def _cut(text: str, lo: int, hi: int) -> int:
    k = text.rfind("\n", lo, hi)
    if k >= 0:
        return k + 1
    k = max(text.rfind(sep, lo, hi) for sep in (". ", "? ", "! ", "; "))
    if k >= 0:
        return k + 2
    k = max(text.rfind(sep, lo, hi) for sep in (" ", "\t", "\r", "\f", "\v"))
    return k + 1 if k >= 0 else hi


@dataclass(frozen=True, slots=True)
class Scan:
    """What a chunked scan found. Every configured type was looked for in `[0, full_until)`; past it, up to
    `swept_until` (normally the end), only the pattern recognizers ran (contact identifiers: e-mail, phone, card,
    SSN...). `reason` says why `full_until` stops short of the text: `deadline` or `limit` (`ner_max_tokens`)."""

    detections: list[Detection]
    full_until: int
    swept_until: int
    reason: str
    chunks: int


def scan(
    analyzer: AnalyzerEngine,
    text: str,
    entities: Collection[str],
    thresholds: Mapping[str, float],
    default_threshold: float,
    *,
    chunk_chars: int,
    overlap_chars: int,
    ner_max_tokens: int | None = None,
    patterns: AnalyzerEngine | None = None,
    stop_full: Callable[[float], bool] = lambda last_step_s: False,
    stop_sweep: Callable[[], bool] = lambda: False,
    presweep: bool = True,
) -> Scan:
    """Detections in `text`, analysed in chunks front to back (`chunk_bounds`) so the time it takes can be stopped
    between chunks.

    First, when the text has more than one chunk and `presweep` (the caller has a time budget), the pattern analyzer
    `patterns` sweeps all of it (contact identifiers: e-mail, phone, card, SSN...; ~0.1 s for 30,000 characters, about
    15% of the full analysis), so they are looked for to the end of a long text before anything can run out. Then
    the full analyzer (NER and patterns, with context) reads chunk after chunk until `stop_full(seconds the last
    chunk took)` or until NER has read `ner_max_tokens` tokens; its results stand wherever it read, the sweep's only
    beyond that. Results touching a cut between chunks may be truncated and are dropped (the overlapping neighbour
    holds them whole); the rest merge as in one call (`resolve_overlaps`), so a text read to its end gives the
    detections of one call on the whole text.
    """
    bounds = chunk_bounds(text, chunk_chars, overlap_chars)
    last = len(bounds) - 1
    sweep_entities = [e for e in entities if e not in NER_TYPES]

    def edges(found: list[RecognizerResult], i: int, out: list[RecognizerResult]) -> None:
        lo, hi = bounds[i]
        for r in found:
            r.start += lo
            r.end += lo
            if (i > 0 and r.start <= lo) or (i < last and r.end >= hi):
                continue  # may be cut off by the chunk's edge: the overlapping neighbour sees it whole
            out.append(r)

    swept: list[RecognizerResult] = []
    swept_until = 0

    def sweep(first: int) -> None:
        nonlocal swept_until
        for i in range(first, len(bounds)):
            if patterns is None or stop_sweep():
                return
            lo, hi = bounds[i]
            edges(_analyze(patterns, text[lo:hi], sweep_entities, thresholds, default_threshold)[0], i, swept)
            swept_until = hi

    presweep = presweep and patterns is not None and last > 0
    if presweep:
        sweep(0)
    full: list[RecognizerResult] = []
    ner_left = ner_max_tokens
    full_until, reason, stopped_at = 0, "", len(bounds)
    step_s = 0.0
    for i, (lo, hi) in enumerate(bounds):
        if stop_full(step_s):
            reason, stopped_at = "deadline", i
            break
        began = time.perf_counter()
        if ner_left is not None and ner_left <= 0:
            reason, stopped_at = "limit", i
            break
        found, tokens, covered = _analyze(analyzer, text[lo:hi], entities, thresholds, default_threshold, ner_left)
        edges(found, i, full)
        step_s = time.perf_counter() - began
        if ner_left is not None:
            ner_left -= tokens
        if covered < hi - lo:
            reason, stopped_at, full_until = "limit", i, lo + covered
            break
        # up to where the next chunk starts: an entity across this chunk's end belongs to the next chunk
        full_until = bounds[i + 1][0] if i < last else hi
    if not presweep and full_until < len(text):
        sweep(stopped_at)  # a single chunk the budget did not reach: its contact identifiers at least
    merged = full + [r for r in swept if r.end > full_until]
    return Scan(_detections(text, resolve_overlaps(merged)), full_until, max(swept_until, full_until),
                reason if full_until < len(text) else "", len(bounds))
