"""Recognizers Presidio lacks or gets wrong for us.

- Street addresses (the most common PII in support and CRM documents). Generic formats only: a house number before
  an English street suffix, a continental street word before a house number, a house number before a Romance street
  word ("17 Rue des Lilas", "3, via Roma"), unit numbers, post-office and military boxes. Scores stay below the
  checksummed types.
- Dates of birth: a date right after "born", "date of birth", "DOB", "né le", "geboren am" (the date alone is a
  DATE_TIME, which fires on every text and is not redacted; the cue makes it personal data).
- UK National Insurance numbers in the format HMRC prints (`QQ 12 34 56 C`; Presidio's own recognizer refuses the
  reserved prefixes its examples use), Aadhaar numbers (Presidio's recognizer, Verhoeff-checked, for English too),
  secrets in URLs (`?token=…`, token-like path segments) and auth headers.
- Public places: names of countries, capitals, US states, continents and cities of 100,000+ people
  (`places.txt`), and "the <Proper Noun>" facilities ("the Louvre"), as LOCATION above the NER model's score, so the
  small spaCy model's "Lyon" or "Louvre" as PERSON is relabelled (spaCy mode only).
- E-mail addresses on any top-level domain. Presidio's recognizer validates the domain against the public-suffix
  list, so `jane@hr.internal`, `ops@corp` hosts and `admin@printer.local` — exactly the addresses of a company's own
  documents — were not detected at all (not flagged as leaks, not redacted in the review store).
"""

from __future__ import annotations

import re

from presidio_analyzer import LocalRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer, InAadhaarRecognizer

from guardrail_invariants.pii import places
from guardrail_invariants.pii.scrub import url_secret_spans

# The last label of a host name: letters (any script) or an IDNA `xn--` label, 2-63 characters. Digits-only last
# labels (`a@1.2.3.4`) are not host names.
_TLD = re.compile(r"^(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})$", re.IGNORECASE)


class AnyTldEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail pattern, valid on any top-level domain (public suffix or internal: .internal, .corp, .local,
    .lan, .example). Same entity, same name in results, so thresholds and overlap rules are unchanged."""

    def __init__(self) -> None:
        super().__init__(name="AnyTldEmailRecognizer")

    def validate_result(self, pattern_text: str) -> bool:
        domain = pattern_text.rpartition("@")[2]
        labels = domain.split(".")
        return len(labels) >= 2 and all(labels) and _TLD.match(labels[-1]) is not None

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

_ROMANCE_LINK = r"(?-i:d[eu]s?|la|le|les|del|della|dei|di|da|do|dos|das|du)"  # "Rue des Lilas", "Via della Spiga"
ADDRESS_PATTERNS = [
    Pattern("house number + street suffix", rf"\b\d{{1,5}}[a-z]?,?\s+(?:{_CAP}\s+){{1,3}}{_SUFFIX_EN}\b\.?", 0.6),
    Pattern("street word + house number", rf"\b[^\W\d_]{{2,}}{_STREET_WORD}\.?\s+\d{{1,5}}[a-z]?\b", 0.6),
    Pattern("romance street + house number", rf"\b{_ROMANCE}\s+(?:[\w'’.\-]+\s+){{1,4}}\d{{1,5}}\b", 0.5),
    Pattern("house number + romance street",
            rf"\b\d{{1,5}}(?:\s?(?:bis|ter)|[a-z])?,?\s+{_ROMANCE}\s+(?:{_ROMANCE_LINK}\s+|(?-i:[dl])['’])*"
            rf"{_CAP}(?:\s+{_CAP}){{0,2}}", 0.6),
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


_MONTH = (r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
          r"jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?")
_DATE = (rf"(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"  # 12 March 1987
         rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"  # March 12, 1987
         r"|\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})"  # 12/03/1987
         r"|\d{4}-\d{2}-\d{2})")  # 1987-03-12
_BIRTH_CUE = (r"(?:born(?:\s+on)?|birth\s?date|date\s+of\s+birth|d\.?\s?o\.?\s?b\.?|birthday|"
              r"n[ée]e?\s+le|geb(?:oren|\.)(?:\s+am)?)")
DATE_OF_BIRTH = re.compile(rf"(?i)\b{_BIRTH_CUE}\s*[:\-]?\s*(?:is\s+|was\s+)?(?P<date>{_DATE})(?!\d)")


class DateOfBirthRecognizer(LocalRecognizer):
    """DATE_OF_BIRTH: the date after a birth cue (only the date is the entity: "born <DATE_OF_BIRTH>")."""

    ENTITY = "DATE_OF_BIRTH"

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="DateOfBirthRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list[RecognizerResult]:
        if self.ENTITY not in entities:
            return []
        return [RecognizerResult(self.ENTITY, m.start("date"), m.end("date"), 0.85)
                for m in DATE_OF_BIRTH.finditer(text)]


def uk_nino_recognizer() -> PatternRecognizer:
    """UK_NINO as printed (two letters, three pairs of digits, A-D), upper case only; "national insurance" nearby
    raises the score."""
    return PatternRecognizer(
        supported_entity="UK_NINO",
        name="UkNinoFormatRecognizer",
        patterns=[Pattern("nino", r"\b(?-i:[A-Z]{2}) ?\d{2} ?\d{2} ?\d{2} ?(?-i:[A-D])\b", 0.5)],
        context=["national insurance", "insurance", "ni", "nino"],
        supported_language="en",
    )


def aadhaar_recognizer() -> InAadhaarRecognizer:
    return InAadhaarRecognizer(supported_language="en")


class UrlSecretRecognizer(LocalRecognizer):
    """URL_SECRET: the value of a secret-named query parameter (`?token=…`, `&api_key=…`, `&sig=…`), a token-like
    path segment (`/s3cr3tT0k3nABCDEF/`: 12+ characters, 2+ digits and 2+ letters) or a Bearer/Basic credential —
    the same rules as the log scrubber (`guardrail_invariants.pii.scrub`)."""

    ENTITY = "URL_SECRET"

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], name="UrlSecretRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list[RecognizerResult]:
        if self.ENTITY not in entities:
            return []
        return [RecognizerResult(self.ENTITY, s, e, 0.7) for s, e in url_secret_spans(text)]


class PublicPlaceRecognizer(LocalRecognizer):
    """LOCATION for public places (module docstring), scored above spaCy's 0.85 so it wins an overlap with a PERSON
    the small model guessed. Needs spaCy's tokens (the facility rule reads part-of-speech tags)."""

    SCORE = 0.9

    def __init__(self) -> None:
        super().__init__(supported_entities=["LOCATION"], name="PublicPlaceRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list[RecognizerResult]:
        if "LOCATION" not in entities:
            return []
        spans = set(places.gazetteer_spans(text))
        tokens = getattr(nlp_artifacts, "tokens", None)
        if tokens is not None:
            spans |= set(places.facility_spans(list(tokens)))
        return [RecognizerResult("LOCATION", s, e, self.SCORE) for s, e in sorted(spans)]
