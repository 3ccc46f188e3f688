"""The synthetic groundedness generator: each perturbation does what its label claims, deterministically."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from models.training.generator import (
    LABELS,
    Document,
    PairGenerator,
    add_detail,
    detokenize_wikitext,
    documents_from_texts,
    flip_negation,
    swap_entity,
    swap_number,
    swap_within,
    trim_clause,
)

DOC_A = """The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It is 330 metres tall and was designed by
the engineering firm of Gustave Eiffel. The tower was the tallest man-made structure in the world until 1930.

About 7 million people visit the tower every year. Maurice Koechlin and Emile Nouguier drew the first sketches in 1884.
The city of Paris owns the tower, which is operated by a public company."""
DOC_B = """The Danube is the second-longest river in Europe, after the Volga. It flows through Vienna, Budapest and
Belgrade before reaching the Black Sea. The river is 2,850 kilometres long and drains a basin of 801,000 square
kilometres.

In 1856 the European Commission of the Danube was founded to manage navigation. Ships carried grain from Romania to
Germany along the river for centuries."""


def docs() -> list[Document]:
    return documents_from_texts([("Eiffel Tower", DOC_A), ("Danube", DOC_B)])


def test_documents_keep_paragraphs_and_sentences() -> None:
    d = docs()
    assert [len(x.paragraphs) for x in d] == [2, 2]
    assert d[0].paragraphs[0][0] == "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."


def test_detokenize_wikitext() -> None:
    raw = " The tower is 330 @,@ 000 m ( 1 @.@ 5 in ) tall , and it 's well @-@ known . "
    assert detokenize_wikitext(raw) == "The tower is 330,000 m (1.5 in) tall, and it's well-known."


def test_swap_number_is_type_matched() -> None:
    rng = random.Random(0)
    s = "The Eiffel Tower was completed in 1889 for the World's Fair."
    for _ in range(20):
        out = swap_number(s, ["1930", "330", "7"], rng)
        assert out is not None and out != s
        year = re.search(r"\b(\d+)\b", out).group(1)
        assert len(year) == 4 and year != "1889"


def test_swap_number_without_numbers_is_none() -> None:
    assert swap_number("No numbers in this sentence at all.", ["12"], random.Random(0)) is None


def test_swap_entity_takes_a_name_from_the_pool() -> None:
    out = swap_entity("The tower was designed by Gustave Eiffel in Paris.", ["Budapest", "Vienna"], random.Random(1))
    assert out is not None and ("Budapest" in out or "Vienna" in out)


def test_negation_flips_both_ways() -> None:
    rng = random.Random(0)
    assert flip_negation("The river was not navigable in winter.", rng) == "The river was navigable in winter."
    assert flip_negation("The river was navigable in winter.", rng) == "The river was not navigable in winter."


def test_swap_within_exchanges_two_names() -> None:
    out = swap_within("Ships carried grain from Romania to Germany.", random.Random(0))
    assert out == "Ships carried grain from Germany to Romania."


def test_trim_clause_keeps_a_supported_main_clause() -> None:
    assert trim_clause("The Danube is the second-longest river in Europe, after the Volga.") == (
        "The Danube is the second-longest river in Europe.")


def test_add_detail_appends_unsupported_information() -> None:
    out = add_detail("The tower is operated by a public company.", "A bridge was built in Vienna.", random.Random(0))
    assert out == "The tower is operated by a public company in Vienna."
    assert add_detail("The tower is operated by a public company.", "No detail here.", random.Random(0)) is None


def test_generate_is_deterministic_and_labelled() -> None:
    a = PairGenerator(docs(), seed=3).generate(300)
    b = PairGenerator(docs(), seed=3).generate(300)
    assert a == b and len(a) == 300
    assert {p.label for p in a} == set(LABELS)
    kinds = Counter(p.kind for p in a)
    assert {"verbatim", "on_topic_unsupported", "entity_swap", "number_swap", "negation", "off_topic"} <= set(kinds)


@pytest.mark.parametrize("kind", ["verbatim", "merged", "short_answer"])
def test_supported_claims_are_in_the_window(kind: str) -> None:
    pairs = [p for p in PairGenerator(docs(), seed=5).generate(600) if p.kind == kind]
    assert pairs
    for p in pairs:
        assert p.label == "entailment"
        for part in ([p.hypothesis] if kind != "merged" else re.split(r"(?<=\.) ", p.hypothesis)):
            assert part in p.premise


def test_unsupported_claims_are_not_in_the_window() -> None:
    pairs = [p for p in PairGenerator(docs(), seed=5).generate(600)
             if p.kind in ("on_topic_unsupported", "off_topic", "number_swap", "entity_swap", "negation")]
    assert pairs
    assert all(p.hypothesis not in p.premise and p.label != "entailment" for p in pairs)


def test_needs_two_documents() -> None:
    with pytest.raises(ValueError):
        PairGenerator(docs()[:1])
