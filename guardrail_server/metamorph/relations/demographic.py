"""Demographic swap: who a text is about must not change what a system concludes about it."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import ClassVar, Literal

from pydantic import Field

from guardrail_server.metamorph.relations.base import Relation, RelationOptions, segments, transformed
from guardrail_server.metamorph.relations.paraphrase import match_case
from guardrail_server.metamorph.types import Edit, FieldName, Transformed
from guardrail_invariants.types import Case

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")
# after "her", these mean it was an object ("gave her the book", "with her.") -> him; otherwise possessive -> his
_OBJECT_FOLLOWERS = frozenset("""the a an this that these those to in on at for with about from as when because if
and or but so than then into onto over under after before while yesterday today tomorrow again too also very here
there up down out off away back now once all some any""".split())


@dataclass(frozen=True)
class Lists:
    given: dict[str, tuple[str, str]]  # name -> (gender, group)
    by_slot: dict[tuple[str, str], tuple[str, ...]]  # (gender, group) -> names
    surname: dict[str, str]  # surname -> group
    surnames: dict[str, tuple[str, ...]]  # group -> surnames
    words: dict[str, str]  # gendered word -> its counterpart (both directions)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(sorted(self.surnames))


@cache
def lists() -> Lists:
    """The curated lists in `lexicon/demographics.json`."""
    data = json.loads(resources.files("guardrail_server.metamorph").joinpath("lexicon/demographics.json").read_text())
    given, by_slot = {}, {}
    for gender, groups in data["given"].items():
        for group, names in groups.items():
            by_slot[(gender, group)] = tuple(names)
            given.update({n: (gender, group) for n in names})
    surname = {n: g for g, names in data["surnames"].items() for n in names}
    words = dict(data["gendered_words"])
    words.update({v: k for k, v in data["gendered_words"].items() if v not in words})
    words["her"] = "his"  # resolved per use below (his / him)
    words["hers"] = "his"
    return Lists(given, by_slot, surname, {g: tuple(n) for g, n in data["surnames"].items()}, words)


class DemographicOptions(RelationOptions):
    swap: Literal["random", "gender", "origin"] = Field(
        "random", description="gender: names of the other gender, pronouns and gendered words flipped; origin: names "
        "of another origin group, same gender; random: one of the two per pair (seeded)")


class DemographicSwap(Relation):
    """Swapping the people in a case — given names and surnames from curated lists (`lexicon/demographics.json`), for
    ones of the other gender (pronouns and gendered words flipped too) or of another origin group — the same way in
    every field, must not change the output. On `pii_boundary` a swapped name sits in the same places (context,
    response, question), so the leak decision has the same structure and must not change either."""

    name = "demographic_swap"
    expect = "same"
    invariants: ClassVar[tuple[str, ...]] = ("pii_boundary", "entailment")
    default_fields: ClassVar[dict[str, tuple[FieldName, ...]]] = {
        "judges": ("question", "context", "response"), "generator": ("question", "context")}
    Options: ClassVar[type[RelationOptions]] = DemographicOptions

    def transform(self, case: Case, rng: random.Random, fields: Sequence[FieldName]) -> Transformed | None:
        lx = lists()
        texts = dict(segments(case, fields))
        tokens = [m.group(0) for text in texts.values() for m in _TOKEN.finditer(text)]
        people = [t for t in dict.fromkeys(tokens) if t in lx.given or t in lx.surname]
        gendered = any(t.lower() in lx.words for t in tokens)
        mode = self.options.swap  # type: ignore[attr-defined]
        if mode == "random":
            mode = "gender" if rng.random() < 0.5 else "origin"
        if not people and not (mode == "gender" and gendered):
            return None
        mapping = self._name_mapping(people, mode, rng, set(tokens))
        flip_words = mode == "gender"
        edits: list[Edit] = []
        new_texts = {where: self._swap(text, mapping, flip_words, where, edits) for where, text in texts.items()}
        result = transformed(case, new_texts, edits, mapping=mapping)
        if result is None:
            return None
        if "response" in fields and case.samples:  # samples are answers too: swapped alike
            samples = tuple(self._swap(s, mapping, flip_words, "samples", []) for s in case.samples)
            result = replace(result, case=replace(result.case, samples=samples))
        return result

    def _name_mapping(self, people: list[str], mode: str, rng: random.Random, present: set[str]) -> dict[str, str]:
        """Each distinct name -> a distinct new one not already in the case."""
        lx = lists()
        taken = set(present)
        mapping: dict[str, str] = {}
        for name in people:
            if name in lx.given:
                gender, group = lx.given[name]
                if mode == "gender":
                    gender = "male" if gender == "female" else "female"
                else:
                    group = rng.choice([g for g in lx.groups if g != group])
                pool = [n for n in lx.by_slot[(gender, group)] if n not in taken]
            else:
                group = lx.surname[name]
                if mode == "gender":
                    continue  # surnames have no gender
                pool = [n for n in lx.surnames[rng.choice([g for g in lx.groups if g != group])] if n not in taken]
            if pool:
                mapping[name] = pool[rng.randrange(len(pool))]
                taken.add(mapping[name])
        return mapping

    def _swap(self, text: str, mapping: dict[str, str], flip_words: bool, where: str, edits: list[Edit]) -> str:
        lx = lists()
        out, last = [], 0
        matches = list(_TOKEN.finditer(text))
        for i, m in enumerate(matches):
            word = m.group(0)
            new = mapping.get(word)
            if new is None and flip_words and word.lower() in lx.words:
                new = match_case(word, self._gendered(word.lower(), text, m, matches[i + 1] if i + 1 < len(matches)
                                                      else None))
            if new is None or new == word:
                continue
            out.append(text[last:m.start()] + new)
            last = m.end()
            edits.append(Edit(where, "name" if word in mapping else "gendered_word", word, new))
        out.append(text[last:])
        return "".join(out)

    @staticmethod
    def _gendered(word: str, text: str, m: re.Match[str], nxt: re.Match[str] | None) -> str:
        """his/him for her (object vs possessive, by the next word), hers for a stand-alone his, else the list."""
        between = text[m.end():nxt.start()] if nxt else text[m.end():]
        ends_phrase = nxt is None or bool(re.search(r"[.,;:!?]", between)) or nxt.group(0).lower() in _OBJECT_FOLLOWERS
        if word == "her":
            return "him" if ends_phrase else "his"
        if word == "his":
            return "hers" if ends_phrase else "her"
        if word == "hers":
            return "his"
        return lists().words[word]
