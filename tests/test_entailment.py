"""The entailment invariant on the real shipped model (ONNX int8)."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions, SupportChecker, check_support
from guardrail_invariants.registry import build_invariant
from guardrail_invariants.types import Case, Outcome, Passage
from guardrail_models.zoo import ModelZoo, ZooSettings

MUSEUM = ("The Pergamon Museum is located on Museum Island in Berlin. It was built between 1910 and 1930 to a design "
          "by Alfred Messel. The museum houses the Ishtar Gate of Babylon and the Pergamon Altar. About 800,000 "
          "people visited it in 2019, before it closed for a renovation that is planned to last until 2027.")
FILLER = [
    "The Danube is the second-longest river in Europe, after the Volga. It flows through Vienna, Budapest and "
    "Belgrade before reaching the Black Sea. Ships have carried grain along the river for centuries.",
    "Bread is one of the oldest prepared foods. It is usually made from a dough of flour and water, baked in an oven. "
    "Yeast is the most common leavening agent used to make the dough rise.",
    "The violin is a wooden string instrument with four strings tuned in perfect fifths. It is usually played with a "
    "bow and is the smallest member of its family. Antonio Stradivari built many of the most prized violins.",
    "Mount Kilimanjaro is a dormant volcano in Tanzania. Its summit is about 5,895 metres above sea level, which "
    "makes it the highest mountain in Africa. Thousands of climbers attempt to reach the summit every year.",
    "The printing press was developed by Johannes Gutenberg around 1440 in Mainz. It made books far cheaper and "
    "helped spread literacy across Europe during the Renaissance.",
]


@pytest.fixture(scope="module")
def zoo() -> ModelZoo:
    return ModelZoo(ZooSettings(max_batch_size=32))


@pytest.fixture(scope="module")
async def inv(zoo: ModelZoo) -> EntailmentInvariant:
    invariant = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), zoo)
    await invariant.load()
    return invariant


async def test_clear_entailment_contradiction_neutral(zoo: ModelZoo) -> None:
    model = await zoo.load_nli()
    premise = "The museum opened in 1995 and is located in the centre of Berlin."
    probs = await model.predict([
        (premise, "The museum is located in Berlin."),
        (premise, "The museum is located in Paris."),
        (premise, "The museum has a large collection of Roman coins."),
    ])
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert probs[0].argmax() == 0 and probs[0, 0] > 0.5
    assert probs[1, 0] < 0.3 and probs[1, 2] > probs[1, 1]  # contradicted, not merely unsupported
    assert probs[2, 0] < 0.3 and probs[2].argmax() != 0


def _case(response: str, *passages: str) -> Case:
    return Case(response=response, context=tuple(Passage(f"p{i + 1}", t) for i, t in enumerate(passages)))


async def test_grounded_response_passes(inv: EntailmentInvariant) -> None:
    response = ("The Pergamon Museum is in Berlin. It houses the Ishtar Gate of Babylon. "
                "About 800,000 people visited it in 2019.")
    v = await inv.check(_case(response, MUSEUM, *FILLER))
    assert v.outcome is Outcome.PASS, v
    assert not v.findings
    assert all(s["passage_id"] == "p1" for s in v.details["sentences"])


@pytest.mark.parametrize("bad", [
    "About 3,500,000 people visited it in 2019.",  # hallucinated number
    "It was designed by the architect Frank Gehry.",  # hallucinated name
    "The museum houses the Rosetta Stone.",  # hallucinated artefact
])
async def test_hallucinated_sentence_fails_with_its_span(inv: EntailmentInvariant, bad: str) -> None:
    response = f"The Pergamon Museum is in Berlin. {bad} It houses the Ishtar Gate of Babylon."
    v = await inv.check(_case(response, MUSEUM, *FILLER))
    assert v.outcome is Outcome.FAIL
    assert len(v.findings) == 1, v.findings
    f = v.findings[0]
    start = response.index(bad)
    assert (f.start, f.end) == (start, start + len(bad))
    assert f.kind in ("unsupported_claim", "contradicted_claim")
    assert f.passage_id == "p1"
    assert 0.0 <= f.score < inv.threshold and "entailment" in f.evidence


async def test_clearly_supported_claims_exit_after_one_pair_and_the_rest_get_every_window(zoo: ModelZoo) -> None:
    copied = "The Pergamon Museum is in Berlin."
    invented = "It was designed by the architect Frank Gehry."
    case = _case(f"{copied} {invented}", MUSEUM, *FILLER)
    cascade = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), zoo)
    full = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(early_exit=None), zoo)
    fast, slow = await cascade.check(case), await full.check(case)
    assert [s["pairs"] for s in fast.details["sentences"]][0] == 1  # decided by its best BM25 window
    assert fast.details["sentences"][1]["pairs"] == slow.details["sentences"][1]["pairs"] > 1
    assert fast.details["sentences"][1]["score"] == pytest.approx(slow.details["sentences"][1]["score"], abs=0.02)
    assert fast.outcome is slow.outcome is Outcome.FAIL
    assert [(f.start, f.end) for f in fast.findings] == [(f.start, f.end) for f in slow.findings]
    assert all(s["pairs"] > 1 for s in slow.details["sentences"])


async def test_support_beyond_the_model_window_is_found(inv: EntailmentInvariant) -> None:
    long_filler = [" ".join(FILLER[(i + j) % len(FILLER)] for j in range(5)) for i in range(8)]
    passages = long_filler[:6] + [MUSEUM] + long_filler[6:]
    case = _case("The Pergamon Museum houses the Pergamon Altar. The museum was built between 1910 and 1930.",
                 *passages)
    tokens = sum(inv.model.token_count(p) for p in passages)
    assert tokens > 3 * inv.model.manifest.max_length
    v = await inv.check(case)
    assert v.outcome is Outcome.PASS, v
    assert v.details["windows"] > 10
    assert {s["passage_id"] for s in v.details["sentences"]} == {"p7"}


async def test_no_context_is_skipped(inv: EntailmentInvariant) -> None:
    v = await inv.check(Case(response="The museum is in Berlin."))
    assert v.outcome is Outcome.SKIPPED


async def test_only_non_claims_is_skipped(inv: EntailmentInvariant) -> None:
    v = await inv.check(_case("Hello! I don't know. Is there anything else?", MUSEUM))
    assert v.outcome is Outcome.SKIPPED


async def test_non_claims_do_not_fail_a_grounded_response(inv: EntailmentInvariant) -> None:
    v = await inv.check(_case("Great question! The Pergamon Museum is located in Berlin. Hope this helps!", MUSEUM))
    assert v.outcome is Outcome.PASS and len(v.details["sentences"]) == 1


async def test_check_support_ranks_the_citing_passage_first(zoo: ModelZoo) -> None:
    model = await zoo.load_nli()
    sentence = "The Pergamon Museum houses the Ishtar Gate."
    good = await check_support(model, Passage("m", MUSEUM), sentence)
    bad = await check_support(model, Passage("d", FILLER[0]), sentence)
    assert good.score >= 0.5 > bad.score
    assert good.window is not None and good.window.passage_id == "m"
    checker = SupportChecker(zoo)  # hybrid judge, as reference_integrity uses it
    assert (await checker.support(Passage("m", MUSEUM), sentence)).score >= 0.5
    assert (await checker.support(FILLER[0], sentence)).score < 0.5


async def test_model_only_judge_and_registry_options(zoo: ModelZoo) -> None:
    inv = build_invariant("entailment", 0.5, {"judge": "model", "top_k": 2, "window_tokens": 96}, zoo)
    await inv.load()
    ok = await inv.check(_case("The museum houses the Pergamon Altar.", MUSEUM, *FILLER))
    bad = await inv.check(_case("The museum houses the Rosetta Stone.", MUSEUM, *FILLER))
    assert ok.score > bad.score
    with pytest.raises(ValueError):
        build_invariant("entailment", 0.5, {"top_k": 0}, zoo)


# --- issue 20 item 2: sentence premises, the scored embedding pass, no pair scored twice (fake models: exact) ------


class _Manifest:
    name, family = "fake", "fake"
    judge = {"kind": "logistic", "embedder": "fake-embed", "bias": 0.0,
             "weights": {"entailment_logit": 1.0, "embed_sim": 1.0}}


class _FakeNli:
    """Entails a claim when the premise holds the claim's text; records every pair it is asked to score."""

    manifest = _Manifest()
    name = "fake"

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def token_count(self, text: str) -> int:
        return len(text.split())

    async def predict(self, pairs):
        self.pairs += list(pairs)
        return np.array([[0.97, 0.02, 0.01] if h.rstrip(".") in p else [0.05, 0.9, 0.05] for p, h in pairs])


class _FakeEmbedder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def embed(self, texts):
        self.texts += list(texts)
        return np.array([[1.0, 0.0] if "Berlin" in t else [0.6, 0.8] for t in texts])


SENTS = ["The Pergamon Museum is in Berlin.", "It was built between 1910 and 1930.",
         "Alfred Messel designed the museum.", "The museum closed in 2023 for a renovation.",
         "The river Spree flows past the island.", "Bread is made from flour and water."]


async def test_sentence_premises_are_the_most_relevant_sentences_and_a_decided_claim_costs_one_pair() -> None:
    from guardrail_invariants.entailment import ClaimScorer

    model = _FakeNli()
    opts = EntailmentOptions(premise="sentences", premise_tokens=16, embedding="off")
    passages = [("p1", " ".join(SENTS[:3])), ("p2", " ".join(SENTS[3:]))]
    scorer = ClaimScorer(model, passages, opts)
    assert [w.text for w in scorer.windows] == SENTS  # one unit per sentence
    (decided,) = await scorer.score(["The museum closed in 2023 for a renovation."])
    assert decided.pairs == 1 and decided.window.passage_id == "p2" and decided.window.text == SENTS[3]
    assert SENTS[3] in model.pairs[0][0] and len(model.pairs[0][0].split()) <= 16
    model.pairs.clear()
    (open_claim,) = await scorer.score(["Messel also designed a department store in Berlin."])
    premises = [p for p, _ in model.pairs]
    assert open_claim.pairs == 3 and len(set(premises)) == 3  # round 1, then two more premises
    assert all(len(p.split()) <= 16 for p in premises)
    first, around, _rest = premises
    top = open_claim.window.text  # its most relevant sentence (every premise is neutral: round 1's wins the tie)
    assert top in first and top in around
    own = passages[int(open_claim.window.passage_id[1]) - 1][1]
    read = [s for s in SENTS if s in around]
    assert len(read) >= 2 and all(s in own for s in read)  # the best sentence read with its neighbours
    assert [own.index(s) for s in read] == sorted(own.index(s) for s in read)  # in document order



async def test_the_judge_trains_on_the_premises_the_check_scores() -> None:
    """training_mix's `sentences` groups are cut by the check's own SentencePremises: for a claim no premise decides,
    the group's pairs are exactly the (premise, claim) pairs the check scores, in its order; the older `windows`
    shape is not (every sentence its own window, a two-sentence fact never seen whole)."""
    from guardrail_invariants.entailment import ClaimScorer
    from guardrail_invariants.judges.training_mix import group

    context, claim = " ".join(SENTS), "Messel also designed a department store in Berlin."
    model = _FakeNli()
    await ClaimScorer(model, [("1", context)], EntailmentOptions(premise="sentences", premise_tokens=16,
                                                                 embedding="off")).score([claim])
    g = group(context, claim, "neutral", shape="sentences", premise_tokens=16, count_tokens=model.token_count)
    assert g["mode"] == "mil" and g["label"] == "not_entailment" and g["claim"] == [0, 0, 0]
    assert [tuple(p) for p in g["pairs"]] == model.pairs
    short = group(" ".join(SENTS[:2]), "The Pergamon Museum in Berlin was built from 1910.", "entailment",
                  shape="sentences", count_tokens=model.token_count)
    assert short == {"mode": "single", "pairs": [[" ".join(SENTS[:2]), "The Pergamon Museum in Berlin was built from "
                                                  "1910."]], "claim": [0], "label": "entailment"}
    windowed = group(" ".join(SENTS[:2]), "The Pergamon Museum in Berlin was built from 1910.", "entailment")
    assert windowed["mode"] == "mil" and all(p in SENTS for p, _ in windowed["pairs"])


async def test_training_pairs_are_written_in_the_models_input_normalization() -> None:
    from guardrail_invariants.judges.training_mix import group
    from guardrail_models.canonical import canonicalize

    g = group("The tower is 330 m tall.", "The tower is 330 metres tall.", "entailment", shape="sentences",
              normalize=canonicalize)
    assert g["pairs"] == [["The tower is 330 metres tall.", "The tower is 330 metres tall."]]


async def test_no_pair_is_scored_twice_across_claims_blocks_and_rounds() -> None:
    from guardrail_invariants.entailment import ClaimScorer

    model = _FakeNli()
    opts = EntailmentOptions(premise="sentences", embedding="off")
    one_sentence = ClaimScorer(model, [("p", SENTS[5])], opts)  # every premise of every round is that sentence
    await one_sentence.score(["Bread is made of rice.", "Bread is made of rice."])
    await one_sentence.score(["Bread is made of rice."])  # a later block of the same check
    assert model.pairs == [(SENTS[5], "Bread is made of rice.")]
    model.pairs.clear()
    windows = ClaimScorer(model, [("p", " ".join(SENTS))], EntailmentOptions(premise="windows", embedding="off",
                                                                              window_tokens=16, stride_tokens=8))
    await windows.score(["Messel designed a store.", "Messel designed a store."])
    assert len(model.pairs) == len(set(model.pairs)) > 0


async def test_embedding_scored_embeds_only_the_premises_a_claim_was_scored_against() -> None:
    from guardrail_invariants.entailment import ClaimScorer, EMBED_SIM_PRIOR

    passages = [("p1", " ".join(SENTS[:3])), ("p2", " ".join(SENTS[3:]))]
    claims = ["The Pergamon Museum is in Berlin.", "Messel also designed a department store."]
    results = {}
    for mode in ("context", "scored", "off"):
        model, embedder = _FakeNli(), _FakeEmbedder()
        scorer = ClaimScorer(model, passages, EntailmentOptions(premise="windows", embedding=mode, window_tokens=16,
                                                                stride_tokens=8), embedder=embedder)
        results[mode] = (await scorer.score(claims), set(embedder.texts) - set(claims), len(scorer.windows),
                         {p for p, _ in model.pairs})
    context_texts, n_windows = results["context"][1], results["context"][2]
    assert len(context_texts) == n_windows  # an open claim: every window of the context embedded
    scored_texts, scored_premises = results["scored"][1], results["scored"][3]
    assert scored_texts and scored_texts <= scored_premises and len(scored_texts) < n_windows
    assert results["off"][1] == set()  # nothing embedded
    assert all(s.features["embed_sim"] == EMBED_SIM_PRIOR for s in results["off"][0])
    for s in results["scored"][0]:  # the highest similarity among its own premises
        assert 0.0 < s.features["embed_sim"] <= 1.0


async def test_embedding_off_loads_no_embedding_model(zoo: ModelZoo) -> None:
    inv = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(embedding="off"), zoo)
    await inv.load()
    assert inv.embedder is None
    verdict = await inv.check(_case("The Pergamon Museum is in Berlin.", MUSEUM, *FILLER))
    assert verdict.outcome is Outcome.PASS
