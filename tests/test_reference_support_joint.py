"""reference_integrity's support check when a sentence cites several passages: the rule, without a model.

A citation supports its sentence when its passage does alone, or when the sentence's cited passages together do, with a
premise that joins this passage and another, and the others without it do not (leave one out). The fake checker below
supports a sentence exactly when the passages it is given hold every `fact-*` word of it, its premise being the
passages that hold one; an `echo-*` word counts as the fact for the score but is never in the premise — the way an
unrelated passage's vocabulary can lift the hybrid judge's lexical features without the model reading it. Each row's
verdict follows from the rule alone; tests/test_reference_support.py runs the same cases on the shipped model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from guardrail_invariants import reference_integrity
from guardrail_invariants.reference_integrity import ReferenceIntegrityInvariant
from guardrail_invariants.types import Case, Outcome, Passage

P = (
    Passage("p1", "fact-height of the tower."),
    Passage("p2", "fact-opening of the tower."),
    Passage("p3", "fact-visitors of a museum elsewhere."),
    Passage("p4", "fact-height again, a second source."),
    Passage("p5", "fact-architect."),
    Passage("p6", "echo-opening: a page that only shares a word."),
)


@dataclass(frozen=True)
class Unit:
    passage_index: int


@dataclass(frozen=True)
class Score:
    score: float
    entailment: float
    contradiction: float = 0.0
    premise: tuple[Unit, ...] = ()


class FactChecker:
    """Supports a sentence (score 1) when the passages hold all of its `fact-*` words, else 0; records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def load(self) -> None:
        pass

    async def support(self, passage: Passage | str | Sequence[Passage | str], sentence: str) -> Score:
        items = [passage] if isinstance(passage, Passage | str) else list(passage)
        self.calls.append(tuple(p.id if isinstance(p, Passage) else p for p in items))
        texts = [p.text if isinstance(p, Passage) else p for p in items]
        facts = re.findall(r"fact-\w+", sentence)
        held = " ".join(texts).replace("echo-", "fact-")
        ok = all(fact in held for fact in facts)
        premise = tuple(Unit(i) for i, t in enumerate(texts) if any(f in t for f in facts)) or (Unit(0),)
        return Score(1.0 if ok else 0.0, 1.0 if ok else 0.0, premise=premise)


def _invariant() -> tuple[ReferenceIntegrityInvariant, FactChecker]:
    inv = ReferenceIntegrityInvariant(1.0, ReferenceIntegrityInvariant.Options(support_check=True), zoo=None)
    inv.support = checker = FactChecker()
    return inv, checker


# (id, response, outcome, score, unsupported citations as passage ids, pairs supported only together)
ROWS = [
    ("one-passage-each-alone", "The tower has fact-height [1]. It has fact-opening [2].", "pass", 1.0, [], 0),
    ("two-passages-needed-together", "The tower has fact-height and fact-opening [1][2].", "pass", 1.0, [], 2),
    ("two-passages-list-marker", "The tower has fact-height and fact-opening [1, 2].", "pass", 1.0, [], 2),
    ("wrong-citation-beside-the-right-one", "The tower has fact-height [1][3].", "fail", 0.5, ["p3"], 0),
    ("wrong-citation-alone", "The tower has fact-height [3].", "fail", 0.0, ["p3"], 0),
    ("together-still-missing-a-fact", "The tower has fact-height and fact-opening [1][3].", "fail", 0.0,
     ["p1", "p3"], 0),
    ("three-cited-one-irrelevant", "The tower has fact-height and fact-opening [1][2][3].", "fail", 2 / 3, ["p3"], 2),
    ("redundant-sources-each-alone", "The tower has fact-height [1][4].", "pass", 1.0, [], 0),
    # [4] is a second source for [1]'s fact: neither is needed once the other is there, and neither supports the
    # sentence alone, so both are reported (the documented limit of leaving one out)
    ("two-needed-and-a-redundant-third", "The tower has fact-height and fact-opening [1][2][4].", "fail", 1 / 3,
     ["p1", "p4"], 1),
    # [6] only shares a word: the score together passes, but its premise is [1]'s alone - nothing is read together
    ("a-lexical-echo-is-not-support", "The tower has fact-height and fact-opening [1][6].", "fail", 0.0,
     ["p1", "p6"], 0),
    ("three-needed-together", "The tower has fact-height, fact-opening and fact-architect [1][2][5].", "pass", 1.0,
     [], 3),
]


@pytest.mark.parametrize(("response", "outcome", "score", "unsupported", "together"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
async def test_support_rule(response: str, outcome: str, score: float, unsupported: list[str], together: int) -> None:
    inv, _ = _invariant()
    verdict = await inv.check(Case(response=response, context=P))
    assert verdict.outcome is Outcome(outcome), verdict.findings
    assert verdict.score == pytest.approx(score)
    found = [f for f in verdict.findings if f.kind == "unsupported_citation"]
    assert [f.passage_id for f in found] == unsupported
    assert verdict.details["supported_together"] == together
    for f in found:  # each finding spans the citing sentence in the original response, markers and all
        assert response[f.start:f.end].startswith("The tower has") and response[f.start:f.end].endswith("].")


async def test_findings_say_whether_the_citations_support_the_sentence_together() -> None:
    inv, _ = _invariant()
    response = "The tower has fact-height [1][3]. The tower has fact-height and fact-opening [1][3]."
    verdict = await inv.check(Case(response=response, context=P))
    first, *rest = verdict.findings
    assert first.passage_id == "p3" and first.evidence["cited_together"] == 1.0
    assert first.message.endswith("its 2 citations together: 1.00, from a premise without this passage")
    assert {f.passage_id for f in rest} == {"p1", "p3"}
    assert all(f.evidence["cited_together"] == 0.0 and f.message.endswith("together: 0.00") for f in rest)
    echo = await inv.check(Case(response="The tower has fact-height and fact-opening [1][6].", context=P))
    assert {f.passage_id: f.message.split("; ")[1] for f in echo.findings} == {
        "p1": "its 2 citations together: 1.00, from a premise of this passage's sentences only",
        "p6": "its 2 citations together: 1.00, from a premise without this passage"}
    redundant = await inv.check(Case(response="The tower has fact-height and fact-opening [1][2][4].", context=P))
    assert {f.passage_id: f.message.split("; ")[1] for f in redundant.findings} == {
        "p1": "its 3 citations together: 1.00, and as much without this one",
        "p4": "its 3 citations together: 1.00, and as much without this one"}


async def test_passages_together_are_scored_only_when_one_alone_fails() -> None:
    inv, checker = _invariant()
    await inv.check(Case(response="The tower has fact-height [1][4]. It has fact-opening [2].", context=P))
    assert sorted(checker.calls) == [("p1",), ("p2",), ("p4",)]
    checker.calls.clear()
    await inv.check(Case(response="The tower has fact-height and fact-opening [1][2][3].", context=P))
    # each alone, the three together, then without p1 and without p2 (p3 is not in the premise: never needed)
    assert sorted(checker.calls) == sorted([("p1",), ("p2",), ("p3",), ("p1", "p2", "p3"), ("p2", "p3"),
                                            ("p1", "p3")])
    checker.calls.clear()
    await inv.check(Case(response="The tower has fact-height and fact-opening [1][3].", context=P))
    assert sorted(checker.calls) == [("p1",), ("p1", "p3"), ("p3",)]  # together they fail: no groups to look at


async def test_a_sentence_citing_many_passages_is_checked_passage_by_passage(monkeypatch) -> None:
    monkeypatch.setattr(reference_integrity, "MAX_JOINT_CITATIONS", 2)
    inv, checker = _invariant()
    verdict = await inv.check(Case(response="The tower has fact-height and fact-opening [1][2][3].", context=P))
    assert [f.passage_id for f in verdict.findings] == ["p1", "p2", "p3"]
    assert all(len(call) == 1 for call in checker.calls)


async def test_markdown_title_citations_reach_the_checker_without_their_titles() -> None:
    inv, _ = _invariant()
    passages = tuple(Passage(p.id, p.text, title=f"The {p.id} page", url=f"https://docs.invalid/{p.id}") for p in P)
    response = ("The tower has fact-height and fact-opening ([The p1 page](https://docs.invalid/p1), "
                "[The p2 page](https://docs.invalid/p2)).")
    seen: list[str] = []
    support = inv.support.support

    async def spy(passage, sentence):
        seen.append(sentence)
        return await support(passage, sentence)

    inv.support.support = spy
    verdict = await inv.check(Case(response=response, context=passages))
    assert verdict.outcome is Outcome.PASS
    assert set(seen) == {"The tower has fact-height and fact-opening."}
