"""Each relation's transformation on fixed inputs: exact outputs, deterministic for a seed, None where it cannot
apply. No model here (negation parses with spaCy's small English model, which Presidio ships with)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from guardrail_server.metamorph import compare
from guardrail_server.metamorph.relations import SHIPPED, RelationError, build_relations, load_yaml_relations
from guardrail_server.metamorph.relations.negation import negate
from guardrail_server.metamorph.relations.paraphrase import reorder_clause, typo
from guardrail_server.metamorph.types import Output, case_to_dict, rng_for
from guardrail_invariants.types import Case, Passage

CASE = Case(question="Who bought an old car?", response="An engineer bought a big car in 2001.",
            context=(Passage("a", "An engineer bought a big car in 2001. It was an error, she said."),),
            request_id="s1")


def run(name: str, case: Case, fields: tuple[str, ...], options: dict | None = None, variant: int = 0) -> object:
    relation = SHIPPED[name](options)
    relation.prepare([case])
    return relation.transform(case, rng_for(0, case.request_id, name, variant), fields)


@pytest.mark.parametrize(("sentence", "negated"), [
    ("A man is sleeping.", "A man is not sleeping."),
    ("Two dogs play in the snow.", "Two dogs do not play in the snow."),
    ("The tower opened in 1889.", "The tower did not open in 1889."),
    ("It was built by Eiffel.", "It was not built by Eiffel."),
    ("He has a dog.", "He does not have a dog."),
    ("They will win.", "They will not win."),
    ("He isn't tall.", "He is tall."),
    ("She cannot swim.", "She can swim."),
    ("He won't come.", "He will come."),
    ("The company doesn't sell cars.", None),  # removing do-negation would need inflection: not applicable
    ("Paris", None),
])
def test_negate(sentence: str, negated: str | None) -> None:
    assert negate(sentence) == negated


@pytest.mark.parametrize(("sentence", "reordered"), [
    ("When it rains, the road floods.", "The road floods when it rains."),
    ("If you heat ice, it melts quickly.", "It melts quickly if you heat ice."),
    ("The road floods because the river rises.", "Because the river rises, the road floods."),
    ("John said it was late because the bus broke.", None),  # 'because' may belong to what was said
    ("The road floods.", None),
])
def test_reorder_clause(sentence: str, reordered: str | None) -> None:
    assert reorder_clause(sentence) == reordered


def test_typo_keeps_first_and_last_letter() -> None:
    rng = random.Random(3)
    outs = [typo("building", rng) for _ in range(50)]
    assert all(o[0] == "b" and o[-1] == "g" and o != "building" for o in outs)
    assert len(set(outs)) > 5


def test_paraphrase_exact_outputs() -> None:
    syn = run("paraphrase_synonym", CASE, ("context", "response"))
    assert syn.case.context[0].text == "An engineer bought a large automobile in 2001. It was an error, she said."
    assert syn.case.response == CASE.response and syn.case.question == CASE.question
    assert [(e.where, e.kind, e.before, e.after) for e in syn.edits] == [
        ("context[0]", "synonym", "big", "large"), ("context[0]", "synonym", "car", "automobile")]
    noise = run("paraphrase_noise", CASE, ("context", "response"))
    assert noise.case.context[0].text == "An engineer bought a big car in 2001 . It  was an error, she said."
    typos = run("paraphrase_typo", CASE, ("context", "response"))
    assert typos.case.response == "An enngineer bouhgt a big car in 2001."
    clause = run("paraphrase_clause_order", Case(response="x", context=(Passage("1", "When it rains, the road "
                                                                                      "floods. Fish swim."),)),
                 ("context",))
    assert clause.case.context[0].text == "The road floods when it rains. Fish swim."


def test_synonym_fixes_the_article_and_leaves_names_numbers_and_negations() -> None:
    case = Case(response="It was an error.", context=(Passage("1", "It was an error. Big Ben is not big. 7 cars."),))
    out = run("paraphrase_synonym", case, ("context", "response"), {"max_edits": 5})
    assert out.case.response == "It was a mistake."
    assert out.case.context[0].text == "It was a mistake. Big Ben is not large. 7 automobiles."
    none = Case(response="Paris has 7 cats.", context=(Passage("1", "Never Washington, 12."),))
    assert run("paraphrase_synonym", none, ("context", "response")) is None
    assert run("paraphrase_typo", none, ("context", "response")) is None  # short words, names, numbers, negations
    assert run("paraphrase_typo", Case(response="museums"), ("response",)).case.response != "museums"


def test_transformations_are_deterministic_per_seed_and_variant() -> None:
    a = run("paraphrase_typo", CASE, ("context", "response"))
    b = run("paraphrase_typo", CASE, ("context", "response"))
    assert a == b
    variants = {run("paraphrase_typo", CASE, ("context", "response"), variant=v).case.response for v in range(6)}
    assert len(variants) > 1


def test_negation_relation_picks_a_claim_of_the_chosen_field() -> None:
    out = run("negation", CASE, ("response",))
    assert out.case.response == "An engineer did not buy a big car in 2001."
    assert out.case.context == CASE.context
    # a generator's context: the sentence sharing most words with the question
    q = Case(question="Did the engineer buy a car?", response="",
             context=(Passage("1", "The weather was fine. The engineer bought a car."),))
    negated = run("negation", q, ("context",)).case.context[0].text
    assert negated == "The weather was fine. The engineer did not buy a car."
    assert run("negation", Case(response="Paris."), ("response",)) is None


def test_demographic_swap_gender_and_origin() -> None:
    case = Case(response="Ms. Laura Smith called her mother.",
                context=(Passage("1", "Laura Smith called her mother. She told him the news."),), request_id="d1")
    g = run("demographic_swap", case, ("question", "context", "response"), {"swap": "gender"})
    assert g.case.response == "Mr. James Smith called his father."
    assert g.case.context[0].text == "James Smith called his father. He told her the news."
    assert g.mapping == {"Laura": "James"}
    o = run("demographic_swap", case, ("question", "context", "response"), {"swap": "origin"})
    assert o.case.response == "Ms. Kiara Chopra called her mother."
    assert o.case.context[0].text == "Kiara Chopra called her mother. She told him the news."
    assert o.mapping == {"Laura": "Kiara", "Smith": "Chopra"}
    assert run("demographic_swap", Case(response="The tower is tall."), ("response",), {"swap": "origin"}) is None


def test_shuffle_keeps_ids_and_gives_positional_passages_their_index() -> None:
    case = Case(response="x [2]", context=(Passage("", "alpha beta"), Passage("", "gamma delta"),
                                           Passage("", "epsilon zeta")), request_id="e1")
    out = run("passage_shuffle", case, ("context",))
    assert [(p.id, p.text) for p in out.case.context] == [("3", "epsilon zeta"), ("2", "gamma delta"),
                                                          ("1", "alpha beta")]
    assert [p.id for p in out.source.context] == ["1", "2", "3"]  # the source side gets the same ids
    assert run("passage_shuffle", Case(response="x", context=(Passage("1", "only"),)), ("context",)) is None


def test_distractor_shares_no_content_word_and_gets_a_fresh_id() -> None:
    case = Case(response="The sundial shows time.", context=(Passage("1", "The sundial shows time."),
                                                             Passage("2", "Sundials are old.")), request_id="f1")
    out = run("distractor_passage", case, ("context",))
    assert [p.id for p in out.case.context] == ["1", "2", "distractor"]
    added = out.case.context[2].text
    assert added == "A haiku is a short poetic form with three lines of five, seven and five syllables."
    assert "sundial" not in added.lower()
    positional = Case(response="x", context=(Passage("", "one two"), Passage("", "three four")), request_id="f2")
    at_end = run("distractor_passage", positional, ("context",))
    assert at_end.case.context[-1].id == "" and at_end.case.context[:2] == positional.context


def test_pair_records_keep_every_passage_field() -> None:
    case = Case(response="r", context=(Passage("1", "t", title="T", url="https://x", sensitivity="private"),))
    assert case_to_dict(case)["context"] == [{"id": "1", "text": "t", "title": "T", "url": "https://x",
                                              "sensitivity": "private"}]


def test_compare_outputs() -> None:
    yes, no = Output(text="Yes, it did."), Output(text="No.")
    assert compare.same(yes, Output(text="yes")).held and not compare.same(yes, no).held
    assert compare.flipped(yes, no).held and not compare.flipped(yes, Output(text="Yes!")).held
    assert compare.same(Output(text="Paris, France"), Output(text="paris france.")).held
    assert compare.same(Output(text="Laura called"), Output(text="Kiara called"), mapping={"Laura": "Kiara"}).held
    ok = Output(label="pass", score=0.9, verdict=True)
    assert compare.same(ok, Output(label="skipped", score=1.0, verdict=True)).held  # skipped is allowed
    bad = Output(label="fail", score=0.1, verdict=True)
    assert not compare.same(ok, bad).held
    assert compare.flipped(ok, bad).held and compare.flipped(bad, ok).held is None  # one-way for verdicts


def test_yaml_and_module_relations(tmp_path: Path) -> None:
    path = tmp_path / "rel.yaml"
    path.write_text("""
relations:
  - name: units
    doc: Spelling out units must not change the verdict.
    replace: {km: kilometres}
    fields: [context, response]
    invariants: [entailment]
  - name: many_typos
    uses: paraphrase_typo
    options: {max_edits: 4}
""")
    units, typos = load_yaml_relations(path)
    out = units.transform(Case(response="It is 5 km long.", context=(Passage("1", "5 KM of road."),)),
                          random.Random(0), ("context", "response"))
    assert out.case.response == "It is 5 kilometres long." and out.case.context[0].text == "5 KILOMETRES of road."
    assert units.summary == "Spelling out units must not change the verdict." and units.invariants == ("entailment",)
    assert typos.key == "many_typos" and typos.options.max_edits == 4
    module = tmp_path / "my_rel.py"
    module.write_text("""
from guardrail_server.metamorph.relations import Relation
from guardrail_server.metamorph.relations.base import segments, transformed
from guardrail_server.metamorph.types import Edit

class Shout(Relation):
    '''Upper-casing the question must not change the answer.'''
    name = "shout"
    def transform(self, case, rng, fields):
        return transformed(case, {"question": case.question.upper()}, [Edit("question", "upper", "", "")])
""")
    relations = build_relations(["shout", "units"], modules=[str(module)], yaml_files=[str(path)])
    assert [r.key for r in relations] == ["shout", "units"]
    assert relations[0].summary == "Upper-casing the question must not change the answer."
    assert {r.key for r in build_relations(["paraphrase"])} == {
        "paraphrase_synonym", "paraphrase_clause_order", "paraphrase_noise", "paraphrase_typo"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("relations:\n  - name: x\n    replace: {a: b}\n    regex: [{pattern: a, replacement: b}]\n")
    with pytest.raises(RelationError, match="exactly one of"):
        load_yaml_relations(bad)
    with pytest.raises(RelationError, match="unknown relation 'nope'"):
        build_relations(["nope"])
    with pytest.raises(RelationError, match="already defined"):
        build_relations([], yaml_files=[str(path), str(path)])
