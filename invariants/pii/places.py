"""Public places: names that point at a place everyone can visit, not at a person.

Two signals, no model of their own:
- the gazetteer `places.txt` (countries, capitals, US states, continents, cities of 100,000+ people; GeoNames via
  scripts/build_places.py): a capitalized name standing alone ("Lyon", "Lansing, Michigan"), not part of a longer
  name ("Sherry Lansing", "Paris Hilton" are people);
- a facility: "the" + proper noun(s) not followed by a noun ("the Louvre", "the Eiffel Tower"; not "the Obama
  administration"), from spaCy's part-of-speech tags.

`pii_boundary` does not count a public place as a leak (a private address is a STREET_ADDRESS, checked on its own), and
the review store keeps public places readable in a record whose context holds a public passage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from guardrail_invariants.pii.normalize import fold

_CAP_WORD = r"[A-ZÀ-ÖØ-Þ][\w'’\-]*"
_LINK = r"(?:de|del|la|le|du|da|do|dos|das|am|an|of|upon|sur|en|on)"
# a run of capitalized words, with the lower-case links place names use ("Rio de Janeiro", "Frankfurt am Main")
_CAP_RUN = re.compile(rf"(?<![\w'’\-]){_CAP_WORD}(?:[ \-](?:{_LINK}[ \-])?{_CAP_WORD})*")
_POSSESSIVE = re.compile(r"['’]s$")
_THE_BEFORE = re.compile(r"(?<![\w'’\-])[Tt]he\s+$")
_NOUNS = frozenset({"NOUN", "PROPN", "NUM"})
# sentence-initial words that are capitalized only because they start the sentence
_OPENERS = frozenset({"in", "at", "to", "from", "near", "visit", "visiting", "welcome", "the", "of", "for", "and", "but",
                      "via", "between", "outside", "inside", "around", "across", "like", "unlike", "about", "since",
                      "during", "after", "before", "downtown", "central", "northern", "southern", "eastern",
                      "western", "greater"})


@lru_cache(maxsize=1)
def gazetteer() -> frozenset[str]:
    path = Path(__file__).with_name("places.txt")
    names = {fold(line) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")}
    return frozenset(names | {n.removeprefix("the ") for n in names})  # "The Netherlands" and "Netherlands"


def is_place_name(text: str) -> bool:
    """`text` (a "the" and a possessive "'s" aside) is a name in the gazetteer."""
    value = fold(_POSSESSIVE.sub("", text.strip()))
    value = value.removeprefix("the ")
    return bool(value) and value in gazetteer()


def gazetteer_spans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of gazetteer names that stand alone: a whole run of capitalized words, or that run without a
    sentence-opening preposition ("In Lyon")."""
    for m in _CAP_RUN.finditer(text):
        start, end = m.start(), m.end()
        run = _POSSESSIVE.sub("", m.group())
        if is_place_name(run):
            yield start, start + len(run)
            continue
        first, _, rest = run.partition(" ")
        if rest and first.casefold() in _OPENERS and is_place_name(rest):
            yield end - len(m.group()) + len(first) + 1, start + len(run)


def facility_spans(tokens: Sequence[Any]) -> Iterator[tuple[int, int]]:
    """Spans of "the" + proper nouns not followed by a noun, from spaCy tokens (`.lower_`, `.pos_`, `.idx`, `.text`)."""
    i, n = 0, len(tokens)
    while i < n - 1:
        if tokens[i].lower_ != "the" or tokens[i + 1].pos_ != "PROPN" or not tokens[i + 1].text[:1].isupper():
            i += 1
            continue
        j = i + 1
        while j + 1 < n and tokens[j + 1].pos_ == "PROPN" and tokens[j + 1].text[:1].isupper():
            j += 1
        following = tokens[j + 1] if j + 1 < n else None
        after = tokens[j + 2] if j + 2 < n else None
        longer = following is not None and following.lower_ == "of" and after is not None and after.pos_ == "PROPN"
        if (following is None or following.pos_ not in _NOUNS) and not longer:  # not "the Department of Energy"
            last = tokens[j]
            yield tokens[i + 1].idx, last.idx + len(last.text)
        i = j + 1


def is_public_place(text: str, start: int, end: int) -> bool:
    """The LOCATION at text[start:end] is a public place: a gazetteer name, or a named facility ("the …")."""
    value = text[start:end]
    if is_place_name(value):
        return True
    if fold(value).startswith("the "):
        return True
    return _THE_BEFORE.search(text, max(0, start - 12), start) is not None
