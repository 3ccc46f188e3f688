"""Paraphrase invariance: meaning-preserving, rule-based rewrites must not change the output.

Four relations, one per kind of rewrite, so the report shows which one a system is sensitive to. Each picks up to
`max_edits` edit sites over the chosen fields with the pair's rng. Words that carry the facts a check depends on are
never touched: numbers, capitalized words other than a sentence's first (names), negations.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import ClassVar

from pydantic import Field

from guardrail_server.metamorph.relations.base import Relation, RelationOptions, segments, transformed
from guardrail_server.metamorph.types import Edit, FieldName, Transformed
from guardrail_invariants.text import split_sentences
from guardrail_invariants.types import Case

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")
NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "nowhere", "cannot",
                       "without", "hardly", "barely", "scarcely"})
_SENTENCE_START = re.compile(r"(?:^|[.!?]['\")\]]*\s+)$")


@cache
def synonyms() -> dict[str, list[str]]:
    """The curated lexicon (`lexicon/synonyms.json`): exact word forms -> same-inflection substitutes."""
    data = json.loads(resources.files("guardrail_server.metamorph").joinpath("lexicon/synonyms.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@dataclass(frozen=True, slots=True)
class Site:
    """A candidate edit: the span [start, end) of segment `where`, rewritten by `make(original, rng)`."""

    where: str
    start: int
    end: int
    kind: str
    make: Callable[[str, random.Random], str]


def at_sentence_start(text: str, start: int) -> bool:
    return bool(_SENTENCE_START.search(text[:start]))


def match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _fix_article(text: str, start: int, new_word: str) -> tuple[str, int]:
    """'a error' -> 'an error' (and back) when the word after an article changed its first sound (vowel letter rule)."""
    m = re.search(r"\b(a|an|A|An)(\s+)$", text[:start])
    if not m:
        return text, start
    vowel = new_word[:1].lower() in "aeiou"
    article = m.group(1)
    want = ("an" if vowel else "a")
    want = want.capitalize() if article[0].isupper() else want
    if want == article:
        return text, start
    return text[:m.start(1)] + want + text[m.end(1):], start + len(want) - len(article)


class ParaphraseOptions(RelationOptions):
    max_edits: int = Field(2, ge=1, le=20, description="edit sites per pair, over all chosen fields")


class _Paraphrase(Relation):
    family: ClassVar[str] = "paraphrase"
    expect = "same"
    invariants: ClassVar[tuple[str, ...]] = ("entailment", "reference_integrity", "pii_boundary")
    Options: ClassVar[type[RelationOptions]] = ParaphraseOptions

    def sites(self, where: str, text: str) -> list[Site]:
        raise NotImplementedError

    def transform(self, case: Case, rng: random.Random, fields: Sequence[FieldName]) -> Transformed | None:
        candidates = [s for where, text in segments(case, fields) for s in self.sites(where, text)]
        if not candidates:
            return None
        k = min(self.options.max_edits, len(candidates))  # type: ignore[attr-defined]
        chosen = sorted(rng.sample(candidates, k), key=lambda s: (s.where, s.start))
        texts = dict(segments(case, fields))
        edits: list[Edit] = []
        for where in dict.fromkeys(s.where for s in chosen):
            text = texts[where]
            done: list[Edit] = []
            for site in sorted((s for s in chosen if s.where == where), key=lambda s: -s.start):  # right to left
                before = text[site.start:site.end]
                after = site.make(before, rng)
                if after == before:
                    continue
                text = text[:site.start] + after + text[site.end:]
                if site.kind == "synonym":
                    text, _ = _fix_article(text, site.start, after)
                done.append(Edit(where, site.kind, before, after))
            texts[where] = text
            edits += reversed(done)  # in reading order
        return transformed(case, texts, edits)


def _protected(word: str, text: str, start: int) -> bool:
    """Numbers, names (capitalized mid-sentence) and negations carry the facts: never rewritten."""
    if word.lower() in NEGATIONS or any(ch.isdigit() for ch in word):
        return True
    return word[:1].isupper() and not at_sentence_start(text, start)


class ParaphraseSynonym(_Paraphrase):
    """Replacing words with same-meaning synonyms from a curated lexicon (`lexicon/synonyms.json`, exact word forms,
    the article a/an adjusted) must not change the output."""

    name = "paraphrase_synonym"

    def sites(self, where: str, text: str) -> list[Site]:
        lexicon = synonyms()
        out = []
        for m in _WORD.finditer(text):
            word = m.group(0)
            subs = lexicon.get(word.lower())
            if not subs or _protected(word, text, m.start()):
                continue
            if word[:1].isupper() and re.match(r"\s+[A-Z]", text[m.end():]):  # 'Big Ben': a name's first word
                continue
            out.append(Site(where, m.start(), m.end(), "synonym",
                            lambda w, rng, subs=subs: match_case(w, subs[rng.randrange(len(subs))])))
        return out


_FRONT = re.compile(r"^(When|If|Although|Though|Because|After|Before|While|Since|Unless|As soon as|Whenever)\s+"
                    r"([^,;:]+?),\s+([^;:]+?)([.!?]?)$")
_BACK = re.compile(r"^([^,;:]+?)\s+(because|although|though|unless|after|before|since|while|whenever)\s+"
                   r"([^,;:]+?)([.!?])$")
# "X said it was late because Y": the clause may belong to the reported statement; moving it changes the reading
_REPORTING = re.compile(r"\b(said|says|say|stated|states|claimed|claims|reported|reports|thinks|thought|believes|"
                        r"believed|argued|argues|wrote|writes|told|tells|that|which|who)\b", re.IGNORECASE)
_LOWERABLE = frozenset("""the a an it this that these those there they he she we you his her its their our my your
some many most all each every one two three several no both such""".split())


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if first.lower() in _LOWERABLE else text


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def reorder_clause(sentence: str) -> str | None:
    """'When it rains, the road floods.' <-> 'The road floods when it rains.'; None when no rule applies."""
    m = _FRONT.match(sentence)
    if m and len(m.group(3).split()) >= 3:
        conj, sub, main, end = m.groups()
        return f"{_upper_first(main)} {conj.lower()} {sub}{end or '.'}"
    m = _BACK.match(sentence)
    if m and len(m.group(1).split()) >= 3 and len(m.group(3).split()) >= 2 and not _REPORTING.search(m.group(1)):
        main, conj, sub, end = m.groups()
        return f"{conj.capitalize()} {sub}, {_lower_first(main)}{end}"
    return None


class ParaphraseClauseOrder(_Paraphrase):
    """Moving an adverbial clause to the other end of its sentence ('When it rains, the road floods.' <->
    'The road floods when it rains.') must not change the output."""

    name = "paraphrase_clause_order"

    def sites(self, where: str, text: str) -> list[Site]:
        out = []
        for s in split_sentences(text):
            new = reorder_clause(s.text)
            if new is not None:
                out.append(Site(where, s.start, s.end, "clause_order", lambda _w, _rng, new=new: new))
        return out


_PUNCT = re.compile(r"(?<=\w)([,.;:!?])(?=\s|$)")


class ParaphraseNoise(_Paraphrase):
    """Casing and punctuation noise — a lower-cased sentence start, a dropped final period, a space before
    punctuation, a doubled space — must not change the output."""

    name = "paraphrase_noise"

    def sites(self, where: str, text: str) -> list[Site]:
        out: list[Site] = []
        for s in split_sentences(text):
            first = _WORD.match(s.text)
            if first and first.group(0).lower() in _LOWERABLE and first.group(0)[:1].isupper():
                out.append(Site(where, s.start, s.start + first.end(), "lowercase", lambda w, _r: w.lower()))
        for m in _PUNCT.finditer(text):
            if m.group(1) == "." and m.end() == len(text.rstrip()):
                out.append(Site(where, m.start(), m.end(), "drop_period", lambda _w, _r: ""))
            else:
                out.append(Site(where, m.start(), m.end(), "space_before_punct", lambda w, _r: " " + w))
        for s in split_sentences(text):  # one per sentence, or spaces would crowd out every other kind
            m = re.search(r"(?<=\w) (?=\w)", s.text)
            if m:
                out.append(Site(where, s.start + m.start(), s.start + m.end(), "double_space", lambda _w, _r: "  "))
        return _non_overlapping(out)


def _non_overlapping(sites: list[Site]) -> list[Site]:
    out: list[Site] = []
    last_end = -1
    for s in sorted(sites, key=lambda s: (s.start, s.end)):
        if s.start >= last_end:
            out.append(s)
            last_end = max(s.end, s.start + 1)
    return out


_KEYBOARD = {
    "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij", "i": "uok", "o": "ipl",
    "p": "ol", "a": "qsz", "s": "awdz", "d": "sefx", "f": "drgc", "g": "fthv", "h": "gyjb", "j": "hukn", "k": "jilm",
    "l": "kop", "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
}


def typo(word: str, rng: random.Random) -> str:
    """One typo inside the word (first and last letters kept): swap, drop, double or hit a neighbouring key."""
    i = rng.randrange(1, len(word) - 2)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    near = _KEYBOARD.get(word[i].lower(), word[i])
    return word[:i] + near[rng.randrange(len(near))] + word[i + 1:]


class ParaphraseTypo(_Paraphrase):
    """Typing errors in longer words (swapped, dropped, doubled or neighbouring-key letters; never in numbers, names or
    negations) must not change the output.

    Not run on `pii_boundary` by default: a typo inside a lower-case personal value ('rhyta' -> 'ryyta' in the
    context only) changes which value the context holds, so the leak decision rightly changes — the relation would
    not preserve the decision's structure (seen on presidio_pii)."""

    name = "paraphrase_typo"
    invariants: ClassVar[tuple[str, ...]] = ("entailment", "reference_integrity")

    def sites(self, where: str, text: str) -> list[Site]:
        return [Site(where, m.start(), m.end(), "typo", typo) for m in _WORD.finditer(text)
                if len(m.group(0)) >= 5 and m.group(0).isalpha() and m.group(0).islower()
                and not _protected(m.group(0), text, m.start())]
