"""The generator's rewordings: each kind's output and label are right by construction (a table), deterministically."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from guardrail_models.training.everyday import TEMPLATES, everyday_pairs
from guardrail_models.training.generator import PairGenerator, documents_from_texts
from guardrail_models.training.rewordings import NEGATIVE_KINDS, POSITIVE_KINDS, reword, reword_any

# kind, sentence, every output the kind may give (over seeds), label
TABLE = [
    ("unit_abbreviation", "The Eiffel Tower is 330 metres tall.", {"The Eiffel Tower is 330 m tall."}, "entailment"),
    ("unit_abbreviation", "The river is 2,850 km long.", {"The river is 2,850 kilometres long."}, "entailment"),
    ("unit_conversion", "The trail is 1.28 km long.",
     {"The trail is 1,280 m long.", "The trail is 1,280 metres long."}, "entailment"),
    ("unit_conversion", "The flight takes 2 hours.",
     {"The flight takes 120 min.", "The flight takes 120 minutes.", "The flight takes 7,200 seconds."}, "entailment"),
    ("number_format", "The town has 12,500 inhabitants.", {"The town has 12500 inhabitants."}, "entailment"),
    ("number_format", "She had three children.", {"She had 3 children."}, "entailment"),
    ("date_format", "The ship was launched on 12 March 1987.",
     {"The ship was launched on 1987-03-12.", "The ship was launched on March 12, 1987."}, "entailment"),
    ("date_format", "It opened on July 4, 1990.", {"It opened on 1990-07-04.", "It opened on 4 July 1990."},
     "entailment"),
    ("clause_reorder", "In 1911, she won the Nobel Prize in Chemistry.",
     {"She won the Nobel Prize in Chemistry in 1911."}, "entailment"),
    ("apposition", "Marie Curie, a Polish physicist, won the prize in 1903.",
     {"Marie Curie was a Polish physicist.", "Marie Curie won the prize in 1903."}, "entailment"),
    ("relative_clause", "Hu, who was noted for his seal carving, created a seal for the Emperor.",
     {"Hu created a seal for the Emperor.", "Hu was noted for his seal carving."}, "entailment"),
    ("passive_active", "The church was built by John Smith in 1850.", {"John Smith built the church in 1850."},
     "entailment"),
    ("passive_active", "The novel was written by Jane Austen.", {"Jane Austen wrote the novel."}, "entailment"),
    ("hypernym", "He bought a dog in 1990.", {"He bought an animal in 1990."}, "entailment"),
    ("dropped_detail", "She won the Nobel Prize in Chemistry in 1911.", {"She won the Nobel Prize in Chemistry."},
     "entailment"),
    ("unit_swap", "The Eiffel Tower is 330 metres tall.", {"The Eiffel Tower is 330 feet tall."}, "contradiction"),
    ("unit_conversion_wrong", "The trail is 1.28 km long.",
     {"The trail is 12,800 metres long.", "The trail is 128 m long.", "The trail is 128 metres long.",
      "The trail is 128,000 m long.", "The trail is 128,000 metres long.", "The trail is 12,800 m long."},
     "contradiction"),
    ("date_shift", "The ship was launched on 12 March 1987.", None, "contradiction"),
    ("role_swap", "The Tower was designed by Gustave Eiffel.", {"The Tower designed Gustave Eiffel."},
     "contradiction"),
]


@pytest.mark.parametrize(("kind", "sentence", "allowed", "label"), TABLE, ids=[f"{k}-{i}" for i, (k, *_) in
                                                                              enumerate(TABLE)])
def test_each_kind_gives_what_its_label_claims(kind: str, sentence: str, allowed: set[str] | None, label: str) -> None:
    assert (kind in POSITIVE_KINDS) == (label == "entailment") and (kind in NEGATIVE_KINDS) == (label != "entailment")
    outs = {reword(sentence, kind, random.Random(seed)) for seed in range(12)}
    outs.discard(None)
    assert outs, f"{kind} did not apply to {sentence!r}"
    if allowed is not None:
        assert outs <= allowed
    else:  # a shifted date: same year, another day or month, in any of the three formats
        for out in outs:
            assert "1987" in out and out != sentence and "12 March 1987" not in out and "March 12, 1987" not in out
            assert "1987-03-12" not in out


@pytest.mark.parametrize("sentence", [
    "The rocket was 3 to 9 cm long.",  # one end of a range
    "Oxford won in 20 minutes 53 seconds.",  # one part of a compound quantity
    "The bonds were worth $30,000 in total.",  # "in" is the preposition, not inches
    "From Blaney Park, the road turns east.",  # not a time adverbial: moving it changes the attachment
    "Additionally, the entire leg sold out within hours.",  # a sentence adverb is no apposition head
])
def test_rewordings_leave_ambiguous_shapes_alone(sentence: str) -> None:
    for kind in ("unit_conversion", "unit_abbreviation", "unit_swap", "clause_reorder", "apposition"):
        for seed in range(6):
            out = reword(sentence, kind, random.Random(seed))
            assert out is None or kind == "unit_abbreviation" and "cm" not in sentence, (kind, out)


def test_reword_any_is_deterministic_and_stacks_only_positives() -> None:
    s = "On 12 March 1987, the 330 metres tall tower was opened by John Smith."
    a = [reword_any(s, random.Random(i)) for i in range(30)]
    b = [reword_any(s, random.Random(i)) for i in range(30)]
    assert a == b
    kinds = {k for made in a if made for k in made[0].split("+")}
    assert kinds <= set(POSITIVE_KINDS) and len(kinds) >= 3
    neg = {reword_any(s, random.Random(i), positive=False)[0] for i in range(30)}
    assert neg <= set(NEGATIVE_KINDS)


def test_the_generator_mixes_rewordings_in_with_their_labels() -> None:
    docs = documents_from_texts([
        ("Tower", "On 12 March 1889, the tower was opened by Gustave Eiffel. It is 330 metres tall and weighs 7,300 "
                  "tonnes. In 1930, it lost the title of tallest structure.\n\nAbout 7 million people visit it every "
                  "year. The tower was painted by a team of 25 painters in 2019."),
        ("River", "The Danube is 2,850 kilometres long. It flows through Vienna and Budapest before reaching the Black "
                  "Sea. In 1856, the European Commission of the Danube was founded.")])
    pairs = PairGenerator(docs, seed=3, reword_share=1.0).generate(200)
    kinds = Counter(p.kind.split("+")[0] for p in pairs)
    assert all(k.startswith("reword_") for k in kinds) and len(kinds) >= 5
    for p in pairs:
        base = p.kind.removeprefix("reword_").split("+")[0]
        assert p.label == ("entailment" if base in POSITIVE_KINDS else "contradiction")
        assert p.hypothesis not in p.premise
    assert PairGenerator(docs, seed=3, reword_share=1.0).generate(200) == pairs


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.__name__ for t in TEMPLATES])
def test_everyday_facts_keep_their_slots(template) -> None:
    """Supported statements use only the context's numbers and names; each wrong twin changes something."""
    for seed in range(20):
        fact = template(random.Random(seed))
        ctx_numbers = set(re.findall(r"\d+", fact.context.replace(",", "")))
        for s in fact.supported:
            assert s != fact.context
            numbers = set(re.findall(r"\d+", s.replace(",", "")))
            derived = {n for n in numbers if n not in ctx_numbers}
            # 24-hour clock, conversions and products are derived from the context's own numbers
            assert all(template.__name__ in {"hours", "schedule", "distance", "dose", "software"} for _ in derived), s
        for s in fact.contradicted + fact.unsupported:
            assert s not in fact.supported and s != fact.context


def test_everyday_pairs_are_balanced_and_deterministic() -> None:
    pairs = everyday_pairs(600, seed=1)
    assert pairs == everyday_pairs(600, seed=1)
    labels = Counter(p[2] for p in pairs)
    assert 0.4 < labels["entailment"] / 600 < 0.6 and labels["contradiction"] > 120 and labels["neutral"] > 60
    assert len({p[3] for p in pairs}) == len(TEMPLATES)
