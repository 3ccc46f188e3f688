"""Recognizers Presidio lacks: street addresses (the most common PII in support and CRM documents).

Generic formats only: a house number before an English street suffix, a continental street word before a
house number, unit numbers, post-office and military boxes. Scores stay below the checksummed types.
"""

from __future__ import annotations

from presidio_analyzer import Pattern, PatternRecognizer

_CAP = r"(?-i:[A-ZÀ-ÖØ-Þ])[\w'’.\-]*"  # a capitalized word, even under Presidio's global IGNORECASE
_SUFFIX_EN = (
    r"(?:street|st|avenue|ave|road|rd|lane|ln|boulevard|blvd|drive|dr|court|ct|way|place|pl|square|sq|terrace|"
    r"parkway|pkwy|circle|cir|highway|hwy|crescent|close|grove|trail|plaza|alley|row|walk|mews|gardens)"
)
_STREET_WORD = (
    r"(?:straße|strasse|str|gasse|weg|allee|platz|gade|vej|vegen|veien|gata|gatan|vägen|straat|laan|gracht|"
    r"katu|tie|utca|út|ulica|ul|ulice)"
)
_ROMANCE = r"(?:rue|avenue|boulevard|chemin|via|viale|piazza|calle|avenida|paseo|plaza|rua|travessa|largo)"

ADDRESS_PATTERNS = [
    Pattern("house number + street suffix", rf"\b\d{{1,5}}[a-z]?,?\s+(?:{_CAP}\s+){{1,3}}{_SUFFIX_EN}\b\.?", 0.6),
    Pattern("street word + house number", rf"\b[^\W\d_]{{2,}}{_STREET_WORD}\.?\s+\d{{1,5}}[a-z]?\b", 0.6),
    Pattern("romance street + house number", rf"\b{_ROMANCE}\s+(?:[\w'’.\-]+\s+){{1,4}}\d{{1,5}}\b", 0.5),
    Pattern("unit", r"\b(?:apt|apartment|suite|ste|unit|flat)\.?\s*#?\d{1,5}[a-z]?\b", 0.5),
    Pattern("post box", r"\b(?:p\.?\s?o\.?\s*box|post\s?box)\s*#?\d{1,6}\b", 0.6),
    Pattern("military box", r"\b(?:psc|unit)\s+\d{3,5},?\s+box\s+\d{3,5}\b", 0.6),
]
ADDRESS_CONTEXT = ["address", "street", "live", "lives", "living", "ship", "shipping", "deliver", "delivery",
                   "mail", "apartment", "home", "residence", "located"]


def street_address_recognizer() -> PatternRecognizer:
    return PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        name="StreetAddressRecognizer",
        patterns=ADDRESS_PATTERNS,
        context=ADDRESS_CONTEXT,
        supported_language="en",
    )
