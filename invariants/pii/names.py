"""Person names beyond exact matching: partial names confirmed by NER on small context windows, and
attribution ("… said Jane Doe") used by the policy that treats quoted people as public figures.

NER runs only on a window around each capitalized occurrence of a name token, never on a whole passage,
and each window's entities are cached by content hash: the cost is bounded by the budget, not by the
context length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from guardrail_invariants.pii.detect import spacy_view
from guardrail_invariants.pii.index import LruCache, content_key
from guardrail_invariants.pii.normalize import ROLE_WORDS, TITLES, Name

WINDOW_RADIUS = 150
MAX_OCCURRENCES_PER_TOKEN = 3
_ATTRIBUTION = re.compile(
    r"\b(said|says|say|wrote|writes|told|tells|stated|states|declared|argued|tweeted|posted|remarked|added|"
    r"according to|quoted|quoting|famously|once)\b",
    re.IGNORECASE,
)
_QUOTES = ('"', "“", "”", "«", "»", "„")

Spans = tuple[tuple[int, int], ...]
PersonTagger = Callable[[str], Spans]


@dataclass(slots=True)
class Budget:
    """NER windows one check may still run (cache hits are free)."""

    windows: int


def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)


def occurrences(text: str, words: tuple[str, ...], *, capitalized: bool, limit: int) -> Iterator[tuple[int, int]]:
    found = 0
    for m in _word_pattern(words).finditer(text):
        if capitalized and not text[m.start()].isupper():
            continue
        yield m.start(), m.end()
        found += 1
        if found >= limit:
            return


def _window(text: str, start: int, end: int) -> tuple[int, str]:
    lo = max(0, start - WINDOW_RADIUS)
    hi = min(len(text), end + WINDOW_RADIUS)
    if lo > 0:
        space = text.find(" ", lo, start)
        lo = space + 1 if space != -1 else lo
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space != -1 else hi
    return lo, text[lo:hi]


def spacy_person_tagger(nlp: object) -> PersonTagger:
    """Adapts a spaCy pipeline (the one inside the shared analyzer) to a PERSON span tagger."""

    def tag(text: str) -> Spans:
        doc = nlp(spacy_view(text))  # type: ignore[operator]
        return tuple((e.start_char, e.end_char) for e in doc.ents if e.label_ in ("PERSON", "PER"))

    return tag


def _name_tokens(name: Name) -> list[str]:
    """The tokens that identify a person: no initials, titles or role words."""
    return [t for t in name.surface if len(t.rstrip(".")) > 1 and t.casefold().rstrip(".") not in TITLES | ROLE_WORDS]


def _token_in_person(
    text: str, token: str, tagger: PersonTagger, cache: LruCache[bytes, Spans], budget: Budget
) -> bool | None:
    """`token` occurs (capitalized) in `text` inside a PERSON entity; None when the NER budget ran out first."""
    for start, end in occurrences(text, (token,), capitalized=True, limit=MAX_OCCURRENCES_PER_TOKEN):
        w_start, w_text = _window(text, start, end)
        key = content_key(w_text)
        if budget.windows <= 0 and key not in cache:
            return None
        spans = cache.get_or_build(key, lambda: _tag_counted(tagger, w_text, budget))
        rel_start, rel_end = start - w_start, end - w_start
        if any(s <= rel_start and rel_end <= e for s, e in spans):
            return True
    return False


def partial_name_in(
    text: str, name: Name, tagger: PersonTagger, cache: LruCache[bytes, Spans], budget: Budget
) -> bool:
    """Some token of `name` occurs in `text` inside a PERSON entity ("Ms. Doe" vs "Jane Q. Doe")."""
    for token in _name_tokens(name):
        found = _token_in_person(text, token, tagger, cache, budget)
        if found is None:
            return False
        if found:
            return True
    return False


def name_covered_in(
    text: str, name: Name, tagger: PersonTagger, cache: LruCache[bytes, Spans], budget: Budget
) -> bool:
    """Every token of `name` occurs in `text` inside a PERSON entity: the name is made of names `text` gives.

    The question's side of the partial-name fallback. NER sometimes joins two adjacent people into one span
    ("… Marta Kowalczyk Jan Nowak …"); neither full form is then in the question, though the user wrote both names.
    Every token must be accounted for — one shared first name is not enough to call someone else's name the user's own.
    """
    tokens = _name_tokens(name)
    return bool(tokens) and all(_token_in_person(text, t, tagger, cache, budget) for t in tokens)


def _tag_counted(tagger: PersonTagger, text: str, budget: Budget) -> Spans:
    budget.windows -= 1
    return tagger(text)


def attributed(text: str, start: int, end: int) -> bool:
    """The name at text[start:end] is quoted as a speaker or author: an attribution word and a quotation
    mark both within a sentence-sized neighbourhood."""
    lo, hi = max(0, start - 120), min(len(text), end + 120)
    around = text[lo:start] + " " + text[end:hi]
    return any(q in around for q in _QUOTES) and _ATTRIBUTION.search(around) is not None


def attributed_anywhere(text: str, name: Name) -> bool:
    """Some occurrence of the full name in `text` is attributed."""
    words = tuple(name.surface)
    return any(attributed(text, s, e) for s, e in occurrences(text, words, capitalized=False, limit=10))
