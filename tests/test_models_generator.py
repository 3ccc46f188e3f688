"""The synthetic groundedness generator: each perturbation does what its label claims, deterministically."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from guardrail_models.training.generator import (
    LABELS,
    Document,
    PairGenerator,
    abstract_number,
    add_detail,
    conjoin_unsupported,
    detokenize_wikitext,
    documents_from_texts,
    flip_negation,
    rewrite,
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


def test_abstract_number_is_vaguer_and_labelled_by_the_side_of_the_bound() -> None:
    seen = {}
    for seed in range(40):
        made = abstract_number("The city had 45,300 inhabitants.", random.Random(seed))
        assert made is not None
        seen[made[0]] = made[1]
    assert seen["The city had more than 40,000 inhabitants."] == "entailment"
    assert seen["The city had fewer than 40,000 inhabitants."] == "contradiction"
    assert any(label == "contradiction" and "more than 100,000" in text for text, label in seen.items())
    years = {abstract_number("In 1994 the band toured.", random.Random(s)) for s in range(30)}
    assert ("In the 1990s the band toured.", "entailment") in years
    assert {label for text, label in years if "1980s" in text or "2000s" in text} == {"contradiction"}
    assert abstract_number("He scored 12 goals.", random.Random(0)) is None  # too small to round
    assert abstract_number("No figures here.", random.Random(0)) is None


def test_conjoin_unsupported_fuses_a_supported_and_an_unsupported_fact() -> None:
    fused = conjoin_unsupported("The band toured Europe in 1994.", "Their album sold well.")
    assert fused == "The band toured Europe in 1994, and their album sold well."
    assert conjoin_unsupported("The band toured.", "Paris hosted them.") == "The band toured, and Paris hosted them."


def test_rewrite_shortens_without_adding_words() -> None:
    sentence = "In 1994, the band (then a trio) toured Europe, which was a success."
    out = rewrite(sentence, random.Random(0))
    assert out and out != sentence
    words = lambda text: set(re.findall(r"[a-z0-9]+", text.lower()))  # noqa: E731
    assert words(out) < words(sentence) and len(out) < len(sentence)
    assert rewrite("Short plain sentence here.", random.Random(0)) is None


def test_generate_is_deterministic_and_labelled() -> None:
    a = PairGenerator(docs(), seed=3).generate(300)
    b = PairGenerator(docs(), seed=3).generate(300)
    assert a == b and len(a) == 300
    assert {p.label for p in a} == set(LABELS)
    kinds = Counter(p.kind for p in a)
    assert {"verbatim", "on_topic_unsupported", "entity_swap", "number_swap", "negation", "off_topic",
            "conjoined_unsupported", "rewrite"} <= set(kinds)


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
             if p.kind in ("on_topic_unsupported", "off_topic", "number_swap", "entity_swap", "negation",
                          "conjoined_unsupported")]
    assert pairs
    assert all(p.hypothesis not in p.premise and p.label != "entailment" for p in pairs)


def test_needs_two_documents() -> None:
    with pytest.raises(ValueError):
        PairGenerator(docs()[:1])


def test_bf16_autocast_is_on_only_where_the_cpu_has_bf16(tmp_path) -> None:
    """Emulated bf16 made a training step ~50x slower on an AVX2-only EPYC: the trainer's default follows the CPU."""
    from guardrail_models.training.train import cpu_has_bf16

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    sapphire = tmp_path / "spr"
    sapphire.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not cpu_has_bf16(str(avx2))
    assert cpu_has_bf16(str(sapphire))
    assert not cpu_has_bf16(str(tmp_path / "missing"))


def test_int8_kernel_family_follows_the_cpu(tmp_path) -> None:
    from guardrail_models.runtime import int8_kernels

    zen3 = tmp_path / "zen3"
    zen3.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    icelake = tmp_path / "icx"
    icelake.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert int8_kernels(str(zen3)) == "no-vnni" and int8_kernels(str(icelake)) == "vnni"
