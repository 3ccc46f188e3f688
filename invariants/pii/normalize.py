"""Per-type canonical forms, so the same value written differently compares equal.

Phone numbers become E.164, e-mails are lower-cased, card/account numbers keep their digits, IBANs and other
identifiers their upper-cased letters and digits, names and places are case- and whitespace-folded.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import phonenumbers

DIGIT_TYPES = frozenset({"CREDIT_CARD", "US_SSN", "US_ITIN", "US_BANK_NUMBER", "ABA_ROUTING_NUMBER", "UK_NHS",
                         "IN_AADHAAR"})
ALNUM_TYPES = frozenset({"IBAN_CODE", "US_DRIVER_LICENSE", "US_PASSPORT", "CRYPTO", "MEDICAL_LICENSE", "MAC_ADDRESS",
                         "UK_NINO"})

_NON_DIGIT = re.compile(r"\D+")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_EDGE_PUNCT = " \t\n\"'“”‘’()[]{}<>,.;:!?"


def fold(text: str) -> str:
    """Case- and whitespace-folding shared by values and the texts they are searched in."""
    return " ".join(text.casefold().split())


def phone_e164(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_key(value: str) -> str:
    """The digits that identify a number wherever it is written: the national significant number for
    E.164 values (so `+44 7700 …` matches `07700 …`), else all digits without trunk zeros."""
    if value.startswith("+"):
        try:
            return phonenumbers.national_significant_number(phonenumbers.parse(value, None))
        except phonenumbers.NumberParseException:
            pass
    return _NON_DIGIT.sub("", value).lstrip("0")


_ADDRESS_WORDS = {
    "street": "st", "avenue": "ave", "road": "rd", "lane": "ln", "boulevard": "blvd", "drive": "dr",
    "court": "ct", "place": "pl", "square": "sq", "parkway": "pkwy", "circle": "cir", "highway": "hwy",
    "apartment": "apt", "suite": "ste", "strasse": "str", "straße": "str",
}
_ADDRESS_PUNCT = re.compile(r"[.,#;:()]")


def address_fold(text: str) -> str:
    """Addresses compare without punctuation and with street words abbreviated ("Baker Street" = "Baker St.")."""
    return " ".join(_ADDRESS_WORDS.get(w, w) for w in _ADDRESS_PUNCT.sub(" ", text.casefold()).split())


def normalize(entity_type: str, text: str, region: str = "US") -> str | None:
    """Canonical form of a detected value, or None when nothing comparable is left."""
    if entity_type == "EMAIL_ADDRESS":
        value = fold(text).removeprefix("mailto:").strip(_EDGE_PUNCT)
    elif entity_type == "PHONE_NUMBER":
        value = phone_e164(text, region) or _NON_DIGIT.sub("", text)
    elif entity_type in DIGIT_TYPES:
        value = _NON_DIGIT.sub("", text)
    elif entity_type in ALNUM_TYPES:
        value = _NON_ALNUM.sub("", text).upper()
    elif entity_type == "STREET_ADDRESS":
        value = address_fold(text)
    elif entity_type == "IP_ADDRESS":
        value = ip_canonical(text.strip(_EDGE_PUNCT)) or fold(text)
    else:
        value = fold(text).strip(_EDGE_PUNCT)
    return value or None


def ip_canonical(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        # IPv4 with leading zeros ("010.001.002.003") is rejected by ipaddress but is the same host.
        parts = text.split(".")
        if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
            return ".".join(str(int(p)) for p in parts)
        return None


# --- person names ---------------------------------------------------------------------------------

TITLES = frozenset(
    "mr mrs ms miss mx dr prof sir madam madame mister doctor professor rev fr hon lady lord mme mlle herr frau "
    "sr jr".split()
)
# Words spaCy glues onto a name ("Customer Jane Doe", "Dear Jane Doe"): never part of the identity.
ROLE_WORDS = frozenset(
    """customer client patient user member employee agent contact applicant tenant holder caller account
    owner buyer seller subscriber guest visitor candidate student teacher manager officer nurse dear hi hello hey
    thanks thank regards cc attn attention name from to by with and or the a an""".split()
)
_WORD = re.compile(r"[^\W\d_][\w'’.\-]*")


@dataclass(frozen=True, slots=True)
class Name:
    """A person's name as it appears in the response: the trimmed span and its folded tokens."""

    start: int
    end: int
    tokens: tuple[str, ...]
    surface: tuple[str, ...]  # the tokens as written, for case-sensitive partial search

    @property
    def value(self) -> str:
        return " ".join(self.tokens)

    def forms(self) -> list[str]:
        """Folded forms to look for, most specific first: with and without middle initials."""
        forms = [self.value]
        no_initials = [t for t in self.tokens if len(t.rstrip(".")) > 1]
        if no_initials and len(no_initials) != len(self.tokens):
            forms.append(" ".join(no_initials))
        return forms


def _bare(token: str) -> str:
    return token.casefold().rstrip(".").removesuffix("'s").removesuffix("’s")


def trim_name(text: str, start: int, end: int) -> Name | None:
    """Cuts a PERSON span down to the name: drops titles, role words and lower-case neighbours at its
    edges and a trailing possessive. None when no name is left."""
    words = [(m.start() + start, m.end() + start, m.group()) for m in _WORD.finditer(text[start:end])]

    # Lower-case edge words are neighbours swallowed by the span, unless the whole name is written lower-case.
    cased = any(word[0].isupper() for _, _, word in words)

    def noise(word: str) -> bool:
        bare = _bare(word)
        return (cased and not word[0].isupper()) or bare in TITLES or bare in ROLE_WORDS or len(bare) == 0

    while words and noise(words[0][2]):
        words.pop(0)
    while words and noise(words[-1][2]):
        words.pop()
    if not words:
        return None
    surface: list[str] = []
    end = words[-1][1]
    for _, w_end, word in words:
        bare = word
        for suffix in ("'s", "’s"):
            bare = bare.removesuffix(suffix)
        bare = bare.rstrip("-'’")
        surface.append(bare)
        end = w_end - (len(word) - len(bare))
    tokens = tuple(t.casefold() for t in surface)
    return Name(start=words[0][0], end=end, tokens=tokens, surface=tuple(surface))
