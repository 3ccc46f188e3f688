"""`entailment`: is each claim of the response entailed by the context?

Per response sentence (claim): build premises from the context, score (premise, sentence) with the NLI cross-encoder,
keep the max entailment probability (contradiction is reported separately — real unsupported claims are mostly absent
from the context, not contradicted by it). Premises (`premise`, default `sentences`): the context sentences most
relevant to the claim by BM25, joined in document order up to `premise_tokens` (96) — cost grows with claims, not
with context length. Scoring runs in two rounds: every claim against its most relevant sentences first; a claim that
premise already entails with P >= `early_exit` is decided there (the common case for grounded answers), and only the
open claims go on to two more premises: their best sentence read in its passage's context (its neighbours: a
pronoun's antecedent), and the next most relevant sentences. (`premise: windows`, the behaviour before issue 20: the
top-k 128-token BM25 windows, the embedding's pick and the merged top-2.) The sentence score is that entailment
probability, or — with `judge: hybrid` — a logistic combination of it with lexical alignment features and the
claim's embedding similarity to the premises it was scored against (`embedding: scored`; `context` embeds every
window of the context, as before), whose weights were fitted on held-out synthetic (train-side) data and are stored
in the model's manifest. The response score is the weakest sentence's.

Measured (`python -m bench.profile_check --levers`, `python -m bench.nli_eval`): sentence premises and the scored
embedding pass keep dev AUROC (halueval_qa, wice_claims, climate_fever_pairs) within 0.005 of the windowed hybrid or
above it, for a fraction of the model work (see README, "Performance").

Claims are scored front to back, `CLAIMS_PER_STEP` at a time, while the check's time budget lasts
(`guardrail_invariants.deadline`); the claims it did not reach (or past `max_sentences`) are an unchecked span from
the first of them to the end of the response, and a verdict whose checked claims pass is `partial`.

Non-claims are skipped (documented rule, `guardrail_invariants.text.is_non_claim`): questions (end with "?"); short (<= 8 words)
greetings, thanks and offers of help; abstentions ("I don't know", "I'm not sure", "the context does not mention ..."); short
lead-ins ending with ":"; sentences without a content word.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from guardrail_invariants import deadline as deadlines
from guardrail_invariants.base import skipped, verdict_from_score
from guardrail_invariants.citations import claim_sentences
from guardrail_invariants.disagreement import JudgeScore
from guardrail_invariants.judges.adapter import JudgeAsModel
from guardrail_invariants.judges.config import JudgedOptions
from guardrail_invariants.judges.panel import SecondaryPanel
from guardrail_invariants.text import (
    Bm25,
    SentencePremises,
    Span,
    Window,
    content_words,
    coverage,
    is_non_claim,
    make_windows,
    sentence_units,
)
from guardrail_invariants.types import Case, Coverage, Finding, Passage, Verdict

# Claims scored per step of a check; the time budget is looked at between steps. 8 claims are ~8-40 NLI pairs:
# 0.1-0.5 s on two shared cores, within the budget's reserve (`guardrail_invariants.deadline`).
CLAIMS_PER_STEP = 8
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z\-]+")


def _share_present(items: list[str], haystack: str) -> float:
    if not items:
        return 1.0
    return sum(it.lower() in haystack for it in items) / len(items)


def features(entailment: float, contradiction: float, sentence: str, context_lower: str,
             context_vocab: set[str], embed_sim: float | None = None) -> dict[str, float]:
    """Alignment features of one sentence; the hybrid judge's inputs (names are part of the manifest's rule)."""
    e = min(max(entailment, 1e-4), 1 - 1e-4)
    extra = {} if embed_sim is None else {"embed_sim": embed_sim}
    return extra | {
        "entailment_logit": math.log(e / (1 - e)),
        "contradiction": contradiction,
        "coverage": coverage(sentence, context_vocab),
        "number_coverage": _share_present(_NUM.findall(sentence), context_lower),
        "name_coverage": _share_present(_CAP.findall(sentence), context_lower),
    }


# The hybrid rule's embed_sim feature without the embedding pass (`embedding: off`), unless the manifest's rule says
# otherwise (`embed_sim_prior`). A constant shifts every claim's logit alike, so claims keep their order within a
# response, but the weakest claim of one response is no longer compared with another's on its embedding: measured,
# dev AUROC halueval_qa +0.005, wice_claims -0.004, climate_fever_pairs -0.008 — over the 0.005 the speed work may
# cost, so `scored` (a handful of embeddings per check) is the default. 0.5 is a middle value, not fitted: it moves
# scores against the threshold (balanced accuracy), not their order.
EMBED_SIM_PRIOR = 0.5


def embed_sim_prior(rule: dict[str, Any] | None) -> float:
    return float((rule or {}).get("embed_sim_prior", EMBED_SIM_PRIOR))


def judge_score(feats: dict[str, float], rule: dict[str, Any] | None) -> float:
    """Sentence score: P(entailment) alone, or the fitted logistic rule from the manifest."""
    if not rule:
        return 1.0 / (1.0 + math.exp(-feats["entailment_logit"]))
    z = float(rule["bias"]) + sum(float(w) * feats[name] for name, w in rule["weights"].items())
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True, slots=True)
class ClaimScore:
    """How well one sentence is supported; `window` is the best window (None when nothing was scored)."""

    score: float
    entailment: float
    contradiction: float
    window: Window | None
    features: dict[str, float]
    pairs: int = 0  # (window, claim) pairs the NLI model scored for this claim
    premise: tuple[Window, ...] = ()  # the windows (sentences) the best-scoring premise was made of


class EntailmentOptions(JudgedOptions):
    model: str | None = Field(None, description="zoo model name; None = the shipped default")
    judge: Literal["hybrid", "model"] = Field(
        "hybrid", description="hybrid: model + lexical alignment, rule fitted on train-side data (manifest); "
        "model: max P(entailment) alone")
    top_k: int = Field(3, ge=1, le=32, description="premise: windows: windows scored per sentence, chosen by BM25")
    window_tokens: int = Field(128, ge=16, le=480)
    stride_tokens: int = Field(64, ge=8, le=480)
    merge_top2: bool = Field(True, description="also score the two best windows joined (support split across them)")
    merge_min_relevance: float = Field(
        0.0, ge=0.0, le=1.0, description="join the second window only when its BM25 score is at least this share of "
        "the best window's (an irrelevant passage joined to the premise must not lend support)")
    embed_top_k: int = Field(1, ge=0, le=8, description="hybrid judge, embedding: context: extra windows (or "
                             "sentences) chosen by embedding similarity")
    embedding: Literal["context", "scored", "off"] = Field(
        "scored", description="the hybrid judge's embedding pass. context: a claim that round 1 did not decide is "
        "compared with every window of the context (embed_sim = the highest cosine similarity; embed_top_k more "
        "windows picked by it); scored: only with the windows its premises came from (embed_sim over those, no "
        "extra windows): a few embeddings per check instead of the whole context; off: no embedding model is loaded "
        "or run, embed_sim is a constant (the manifest rule's embed_sim_prior)")
    premise: Literal["windows", "sentences"] = Field(
        "sentences", description="windows: each claim against its top_k BM25 windows of window_tokens (and the two best "
        "joined); sentences: against premises made of the context sentences most relevant to it (BM25), up to "
        "premise_tokens, in document order, then the best sentence in its passage's context and the next most "
        "relevant ones")
    premise_tokens: int = Field(96, ge=16, le=480, description="premise: sentences: tokens per premise at most")
    early_exit: float | None = Field(
        0.9, gt=0, le=1, description="a claim its best BM25 window entails with P >= this is decided by that window "
        "alone (the other windows are not scored); null = always score every window")
    skip_non_claims: bool = True
    min_claim_words: int = Field(1, ge=1, description="shorter sentences are skipped")
    aggregation: Literal["min", "mean"] = "min"
    contradiction_threshold: float = Field(0.5, ge=0, le=1, description="report `contradicted_claim` above this")
    max_sentences: int = Field(
        512, ge=1, description="claims checked at most; past them the verdict is partial (reason limit). 32,000 "
        "characters of prose hold ~250 claims: the time budget (timeout_s), not this cap, decides how far a long "
        "response is checked")

    @field_validator("embedding", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """`embedding: off` in YAML (and --set, environment values) is the boolean false."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _primary_is_the_model(self) -> EntailmentOptions:
        """judges[0] is this invariant's own NLI model (`model`/`judge` above); secondaries follow it."""
        if self.judges[0].kind != "nli":
            raise ValueError("judges[0] must be the NLI model (kind: nli); put other judges after it as secondaries")
        return self


async def score_claims(model: Any, claims: Sequence[str], passages: Sequence[tuple[str, str]],
                       options: EntailmentOptions | None = None, windows: Sequence[Window] | None = None,
                       embedder: Any = None) -> list[ClaimScore]:
    """Scores each claim against (passage_id, text) passages: windows -> BM25 (+embedding) top-k -> NLI -> judge.

    `model` is a `guardrail_models.zoo.NliModel`; `embedder` a `guardrail_models.zoo.EmbeddingModel`, required by the hybrid judge when
    its rule uses `embed_sim`. This is also the support check other invariants reuse.
    """
    return await ClaimScorer(model, passages, options, windows, embedder).score(claims)


class ClaimScorer:
    """`score_claims` for one context, so the claims of a response can be scored a block at a time — the check's
    budget is looked at between blocks — for the cost of scoring them at once: the windows, their BM25 index, the
    context's vocabulary and the windows' embeddings are built once. A claim's score does not depend on which other
    claims share its block (each pair is scored alone: `models.max_batch_size` 1, the default)."""

    def __init__(self, model: Any, passages: Sequence[tuple[str, str]], options: EntailmentOptions | None = None,
                 windows: Sequence[Window] | None = None, embedder: Any = None) -> None:
        self.model = model
        self.opts = opts = options or EntailmentOptions()
        self.sentences = opts.premise == "sentences" and windows is None
        if windows is not None:
            self.windows = windows
        elif self.sentences:
            self.windows = sentence_units(passages, model.token_count, opts.premise_tokens)
        else:
            self.windows = make_windows(passages, model.token_count, opts.window_tokens, opts.stride_tokens)
        context = " ".join(t for _, t in passages)
        self.context_lower, self.vocab = context.lower(), set(content_words(context))
        self.rule = model.manifest.judge if opts.judge == "hybrid" else None
        uses_sim = bool(self.rule and "embed_sim" in self.rule.get("weights", {}))
        if self.windows and uses_sim and opts.embedding != "off" and embedder is None:
            raise ValueError("the hybrid judge needs the embedding model (embed_sim); pass `embedder`, or set "
                             "embedding: off")
        # judge: model with an embedder passed (fit_hybrid collecting features): embed_sim is computed, not used
        self.embedder = embedder if opts.embedding != "off" and (uses_sim or self.rule is None) else None
        self.sim_prior = embed_sim_prior(self.rule) if uses_sim and self.embedder is None else None
        self.premises = SentencePremises(self.windows, opts.premise_tokens, opts.top_k) if self.sentences else None
        self.bm25 = self.premises.bm25 if self.premises else Bm25([w.text for w in self.windows]) if self.windows \
            else None
        self._window_vecs: dict[Any, np.ndarray] = {}
        self._pairs: dict[tuple[str, str], np.ndarray] = {}  # (premise, claim) -> probabilities, for this context
        self.setup_s = 0.0  # one-time work done inside `score` calls so far (embedding the windows), in seconds

    async def score(self, claims: Sequence[str]) -> list[ClaimScore]:
        opts, windows, bm25 = self.opts, self.windows, self.bm25
        if not claims:
            return []
        if not windows or bm25 is None:
            return [ClaimScore(0.0, 0.0, 0.0, None, {}) for _ in claims]
        if self.sentences:
            return await self._score_sentences(claims)
        tops = [bm25.top_k(claim, opts.top_k) for claim in claims]
        scored: list[dict[int | None, np.ndarray]] = [{} for _ in claims]  # claim -> {window | None (merged): probs}
        merged: dict[int, tuple[int, int]] = {}  # claim -> the two windows its merged premise joined

        async def run(wanted: list[tuple[int, int | None, str]]) -> None:
            if wanted:
                probs = await self._predict([(text, claims[ci]) for ci, _, text in wanted])
                for (ci, wi, _), row in zip(wanted, probs, strict=True):
                    scored[ci][wi] = row

        # round 1: each claim against its best BM25 window; a claim that window clearly entails is decided there
        await run([(ci, top[0], windows[top[0]].text) for ci, top in enumerate(tops)])
        open_claims = [ci for ci in range(len(claims))
                       if opts.early_exit is None or scored[ci][tops[ci][0]][0] < opts.early_exit]
        sims: dict[int, np.ndarray] = {}
        if self.embedder is not None and opts.embedding == "context":
            sims = await self._similarities(claims, tops, open_claims)
        # round 2: the open claims against the rest of their top-k, the embedding's pick and the merged top-2
        wanted: list[tuple[int, int | None, str]] = []
        for ci in open_claims:
            top = list(tops[ci])
            if ci in sims:
                top += [int(i) for i in np.argsort(-sims[ci])[: opts.embed_top_k] if int(i) not in top]
            wanted += [(ci, wi, windows[wi].text) for wi in top[1:]]
            if opts.merge_top2 and len(top) >= 2 and _relevant_enough(bm25, claims[ci], top[0], top[1],
                                                                       opts.merge_min_relevance):
                a, b = sorted(top[:2], key=lambda i: (windows[i].passage_index, windows[i].start))
                if windows[a].end < windows[b].start or windows[a].passage_index != windows[b].passage_index:
                    wanted.append((ci, None, windows[a].text + " " + windows[b].text))
                    merged[ci] = (a, b)
        await run(wanted)
        if self.embedder is not None and opts.embedding == "scored":
            sims = await self._scored_similarities(claims, [[w for w in scored[ci] if w is not None]
                                                            for ci in range(len(claims))])
        out = []
        for ci, claim in enumerate(claims):
            best_wi, best = max(scored[ci].items(), key=lambda kv: kv[1][0])
            ent = float(best[0])
            con = float(max(row[2] for row in scored[ci].values()))
            wi = best_wi if best_wi is not None else tops[ci][0]
            f = features(ent, con, claim, self.context_lower, self.vocab,
                         float(sims[ci].max()) if ci in sims else self.sim_prior)
            premise = (windows[wi],) if best_wi is not None else tuple(windows[i] for i in merged[ci])
            out.append(ClaimScore(judge_score(f, self.rule), ent, con, windows[wi], f, len(scored[ci]), premise))
        return out

    async def _predict(self, pairs: list[tuple[str, str]]) -> list[np.ndarray]:
        """The model's rows for `pairs`, each distinct (premise, claim) pair scored once per context: a pair already
        scored (an earlier block, the same claim twice in a response, a round-2 premise equal to round 1's) or twice
        in this call costs nothing more. Exact: each pair is scored alone (`models.max_batch_size` 1 on the CPU)."""
        todo = list(dict.fromkeys(p for p in pairs if p not in self._pairs))
        if todo:
            self._pairs.update(zip(todo, await self.model.predict(todo), strict=True))
        return [self._pairs[p] for p in pairs]

    async def _score_sentences(self, claims: Sequence[str]) -> list[ClaimScore]:
        """The premises of `SentencePremises`, scored in two rounds (the embedding's pick first in round 2's order)."""
        opts, windows, sp = self.opts, self.windows, self.premises
        assert sp is not None
        ranked = [sp.ranked(claim) for claim in claims]
        firsts = [sp.assemble(r) for r in ranked]
        # claim -> {premise: (probs, its units, the first being the unit reported as the claim's window)}
        scored: list[dict[str, tuple[np.ndarray, tuple[int, ...]]]] = [{} for _ in claims]

        async def run(wanted: list[tuple[int, str, tuple[int, ...]]]) -> None:
            wanted = [(ci, text, units) for ci, text, units in wanted if text not in scored[ci]]
            if wanted:
                probs = await self._predict([(text, claims[ci]) for ci, text, _ in wanted])
                for (ci, text, units), row in zip(wanted, probs, strict=True):
                    scored[ci][text] = (row, units)

        # round 1: each claim against the most relevant sentences; a premise that clearly entails it decides it
        await run([(ci, sp.text(units), tuple(units)) for ci, units in enumerate(firsts)])
        open_claims = [ci for ci in range(len(claims))
                       if opts.early_exit is None or max(p[0][0] for p in scored[ci].values()) < opts.early_exit]
        sims: dict[int, np.ndarray] = {}
        if self.embedder is not None and opts.embedding == "context":
            sims = await self._similarities(claims, [[u[0]] for u in firsts], open_claims)
        # round 2: the best sentence in its passage's context, and the next most relevant sentences
        wanted: list[tuple[int, str, tuple[int, ...]]] = []
        for ci in open_claims:
            order = list(ranked[ci])
            if ci in sims:
                order = [int(i) for i in np.argsort(-sims[ci])[: opts.embed_top_k] if int(i) not in firsts[ci]] + order
            around = sp.around(firsts[ci][0])
            wanted.append((ci, sp.text(around), tuple(around)))
            rest = sp.assemble(order, set(firsts[ci]))
            if rest:
                wanted.append((ci, sp.text(rest), tuple(rest)))
        await run(wanted)
        if self.embedder is not None and opts.embedding == "scored":
            sims = await self._scored_similarities(claims, [list(scored[ci]) for ci in range(len(claims))])
        out = []
        for ci, claim in enumerate(claims):
            best_row, best_units = max(scored[ci].values(), key=lambda v: v[0][0])
            ent = float(best_row[0])
            con = float(max(row[2] for row, _ in scored[ci].values()))
            f = features(ent, con, claim, self.context_lower, self.vocab,
                         float(sims[ci].max()) if ci in sims else self.sim_prior)
            out.append(ClaimScore(judge_score(f, self.rule), ent, con, windows[best_units[0]], f, len(scored[ci]),
                                  tuple(windows[u] for u in best_units)))
        return out

    async def _scored_similarities(self, claims: Sequence[str], premises: list[list[Any]]) -> dict[int, np.ndarray]:
        """`embedding: scored`: cosine similarity of each claim to the premises it was scored against only (window
        indices, or premise texts), each embedded once per check."""
        keys = list(dict.fromkeys(k for ps in premises for k in ps))
        missing = [k for k in keys if k not in self._window_vecs]
        if missing:
            texts = [self.windows[k].text if isinstance(k, int) else k for k in missing]
            self._window_vecs.update(zip(missing, await self.embedder.embed(texts), strict=True))
        claim_vecs = await self.embedder.embed(list(claims))
        return {ci: np.array([float(self._window_vecs[k] @ claim_vecs[ci]) for k in ps])
                for ci, ps in enumerate(premises) if ps}

    async def _similarities(self, claims: Sequence[str], tops: list[list[int]],
                            open_claims: list[int]) -> dict[int, np.ndarray]:
        """Cosine similarity of claims to windows. Open claims get every window (to pick extra windows and take the
        max); decided claims only their round-1 window, so a response whose claims all exit early never embeds the
        whole context. A window is embedded once per check, whichever block first needs it."""
        windows = self.windows
        needed = list(range(len(windows))) if open_claims else sorted({top[0] for top in tops})
        missing = [i for i in needed if i not in self._window_vecs]
        if missing:  # timed apart from the claims: a step that embeds the context is not what the next step costs
            began = time.perf_counter()
            self._window_vecs.update(zip(missing, await self.embedder.embed([windows[i].text for i in missing]),
                                         strict=True))
            self.setup_s += time.perf_counter() - began
        claim_vecs = await self.embedder.embed(list(claims))
        window_vecs = np.stack([self._window_vecs[i] for i in needed])
        column = {wi: k for k, wi in enumerate(needed)}
        open_set = set(open_claims)
        return {ci: window_vecs @ claim_vecs[ci] if ci in open_set
                else np.array([float(window_vecs[column[tops[ci][0]]] @ claim_vecs[ci])])
                for ci in range(len(claims))}


def _relevant_enough(bm25: Bm25, claim: str, best: int, second: int, share: float) -> bool:
    if share <= 0:
        return True
    scores = bm25.scores(claim)
    return scores[best] > 0 and scores[second] >= share * scores[best]


async def check_support(model: Any, passage: Passage | str | Sequence[Passage | str], sentence: str,
                        options: EntailmentOptions | None = None, embedder: Any = None) -> ClaimScore:
    """Does passage P — or passages P1..Pn *together* — support sentence S? For reference_integrity's support check
    (score in [0,1], higher = more).

    Several passages are one context: `ClaimScorer` over them alone, so the premises are `SentencePremises` built from
    their sentences only (the most relevant sentences of all of them, joined), and the hybrid judge's lexical features
    read their words together — a claim that needs two cited passages ("X is 330 m tall and opened in 1889", one fact
    in each) is scored against both at once. Without `embedder` (or with options.judge="model") the score is the max
    P(entailment) over the premises.
    """
    items = [passage] if isinstance(passage, Passage | str) else list(passage)
    passages = [(p.id, p.text) if isinstance(p, Passage) else ("", p) for p in items]
    opts = options or EntailmentOptions(judge="hybrid" if embedder is not None else "model")
    return (await score_claims(model, [sentence], passages, opts, embedder=embedder))[0]


class SupportChecker:
    """Reusable "does passage P (or P1..Pn together) support sentence S?" (reference_integrity's support check) on the
    shared zoo."""

    def __init__(self, zoo: Any, options: EntailmentOptions | None = None) -> None:
        self.zoo = zoo
        self.options = options or EntailmentOptions()
        self.model: Any = None
        self.embedder: Any = None

    async def load(self) -> None:
        self.model = await self.zoo.load_nli(self.options.model)
        rule = self.model.manifest.judge if self.options.judge == "hybrid" else {}
        if self.options.judge == "hybrid" and not rule:
            raise ValueError(f"model {self.model.name!r} has no fitted hybrid judge; use judge: model")
        if rule and rule.get("embedder") and self.options.embedding != "off":
            self.embedder = await self.zoo.load_embedder(rule["embedder"])

    async def support(self, passage: Passage | str | Sequence[Passage | str], sentence: str) -> ClaimScore:
        """`.score` in [0, 1] (>= 0.5 ~ supported), plus entailment/contradiction and the best window. A sequence of
        passages is scored as one context (see `check_support`)."""
        if self.model is None:
            await self.load()
        return await check_support(self.model, passage, sentence, self.options, self.embedder)


class EntailmentInvariant:
    name: ClassVar[str] = "entailment"
    # chosen on dev: the one global threshold maximizing mean balanced accuracy over halueval_qa, wice_claims and
    # climate_fever_pairs for the shipped hybrid judge (bench.nli_eval); hybrid scores are P(supported)
    default_threshold: ClassVar[float] = 0.85
    Options = EntailmentOptions

    def __init__(self, threshold: float, options: EntailmentOptions, zoo: Any) -> None:
        self.threshold = threshold
        self.options = options
        self.zoo = zoo
        self.model: Any = None
        self.embedder: Any = None
        self.panel = SecondaryPanel([], [], options.secondary_fraction, options.disagreement_margin)

    @property
    def judge(self) -> str:
        return f"{self.model.name}:{self.options.judge}" if self.model is not None else ""

    async def load(self) -> None:
        self.model = await self.zoo.load_nli(self.options.judges[0].model or self.options.model)
        o = self.options
        self.panel = await SecondaryPanel.load(o.judges[1:], self.zoo, self.name, self.threshold, o.secondary_fraction,
                                               o.disagreement_margin, (self.model.name, self.model.manifest.family))
        if self.options.judge == "hybrid":
            rule = self.model.manifest.judge
            if not rule:
                raise ValueError(f"model {self.model.name!r} has no fitted hybrid judge in its manifest; use judge: model")
            if rule.get("embedder") and self.options.embedding != "off":
                self.embedder = await self.zoo.load_embedder(rule["embedder"])
                await self.embedder.embed(["warm-up"])
        await self.model.predict([("The sky is blue today.", "The sky is blue.")])

    def claims(self, response: str, passages: Sequence[Passage] = ()) -> list[Span]:
        """Claim sentences: spans into `response`, text without citation markers (see `citations.strip_markers`)."""
        return self._claims(response, passages)[: self.options.max_sentences]

    def _claims(self, response: str, passages: Sequence[Passage] = ()) -> list[Span]:
        spans = claim_sentences(response, passages)
        return [s for s in spans
                if len(s.text.split()) >= self.options.min_claim_words
                and not (self.options.skip_non_claims and is_non_claim(s.text))]

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        if self.model is None:
            await self.load()
        passages = [(p.id or str(i + 1), p.text) for i, p in enumerate(case.context) if p.text.strip()]
        if not passages:
            return skipped(self.name, self.threshold, "no context to check the response against", started=started)
        budget = deadlines.current()
        every_claim = self._claims(case.response, case.context)
        if not every_claim:
            return skipped(self.name, self.threshold, "no checkable claims in the response", started=started)
        claims = every_claim[: self.options.max_sentences]
        scorer = await asyncio.to_thread(ClaimScorer, self.model, passages, self.options, None, self.embedder)
        windows = scorer.windows
        texts = [c.text for c in claims]
        secondary = self.panel.start(case, lambda judge: self._judge_score(judge, texts, passages, windows))
        scores: list[ClaimScore] = []
        last = 0.0
        for at in range(0, len(texts), CLAIMS_PER_STEP):  # claim by claim, front to back, a few per step
            if budget.expired(last):
                break
            began, setup = time.perf_counter(), scorer.setup_s
            scores += await scorer.score(texts[at : at + CLAIMS_PER_STEP])
            last = time.perf_counter() - began - (scorer.setup_s - setup)  # what the next step will cost
        claims = claims[: len(scores)]
        coverage = None
        if len(claims) < len(every_claim):
            reason = "deadline" if len(claims) < min(len(every_claim), self.options.max_sentences) else "limit"
            coverage = Coverage.prefix(len(case.response), every_claim[len(claims)].start, reason)
        values = np.array([s.score for s in scores])
        total = (float(values.min() if self.options.aggregation == "min" else values.mean()) if len(values)
                 else 1.0)  # nothing checked: no evidence either way; the verdict is partial
        findings = []
        for span, sc in zip(claims, scores, strict=True):
            if sc.score >= self.threshold:
                continue
            contradicted = sc.contradiction >= self.options.contradiction_threshold and sc.contradiction > sc.entailment
            findings.append(Finding(
                kind="contradicted_claim" if contradicted else "unsupported_claim",
                message=("sentence contradicts the context" if contradicted
                         else "sentence is not supported by the context"),
                start=span.start, end=span.end,
                passage_id=sc.window.passage_id if sc.window else "",
                score=sc.score,
                evidence={"entailment": round(sc.entailment, 4), "contradiction": round(sc.contradiction, 4),
                          "coverage": round(sc.features.get("coverage", 0.0), 4),
                          "window": [sc.window.start, sc.window.end] if sc.window else None},
            ))
        details = {"sentences": [
            {"start": c.start, "end": c.end, "score": round(s.score, 4), "entailment": round(s.entailment, 4),
             "contradiction": round(s.contradiction, 4), "passage_id": s.window.passage_id if s.window else "",
             "pairs": s.pairs}
            for c, s in zip(claims, scores, strict=True)], "windows": len(windows),
            "claims": len(every_claim), "claims_checked": len(claims)}
        primary = JudgeScore(self.judge, self.model.manifest.family, total, self.threshold)
        if coverage is not None:  # the secondaries judged every claim, the primary not: not comparable, not awaited
            self.panel.cancel(secondary)
            secondary = []
        details.update(await self.panel.details(primary, secondary))
        return verdict_from_score(self.name, total, self.threshold, findings, started=started, judge=self.judge,
                                  details=details, coverage=coverage)

    async def _judge_score(self, judge: Any, claims: list[str], passages: list[tuple[str, str]],
                           windows: Sequence[Window]) -> float:
        """A secondary judge on the same claims and windows, scored by its max P(entailment) (no hybrid rule)."""
        opts = self.options.model_copy(update={"judge": "model"})
        scored = await score_claims(JudgeAsModel(judge, self.model.token_count), claims, passages, opts, windows)
        values = [s.score for s in scored]
        return min(values) if self.options.aggregation == "min" else sum(values) / len(values)
