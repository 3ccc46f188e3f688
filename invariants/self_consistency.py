"""`self_consistency`: do sampled responses to the same input contradict the response? (SelfCheckGPT-NLI)

A model that knows a fact says it the same way every time it is sampled; a hallucinated detail drifts between
samples. Each response sentence is scored against every sample as premise (long samples are cut into windows and
the sentence is checked against its most relevant ones, by BM25; the most decisive window - the least neutral -
speaks for the sample). A sentence's inconsistency is its contradiction probability averaged over the samples, the
response's is the maximum over sentences (or the mean), and the score is 1 minus that. Findings point at the
inconsistent sentences and name the samples that contradict them.

Samples come with the request (or the dataset, or offline from `guardrail_server.llm_sampler`); without samples
the check is SKIPPED, never an error. The scoring runs through judges (`judges: [primary, secondary]`): the primary
gives the verdict, a secondary of another family runs on `secondary_fraction` of the cases and its disagreement is
reported for review (see `guardrail_invariants.disagreement`).

Sentences are scored front to back, a few per step, while the check's time budget lasts
(`guardrail_invariants.deadline`); the sentences it did not reach (or past `max_sentences`) are an unchecked span
from the first of them to the end, and a verdict whose checked sentences hold is `partial`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from guardrail_invariants import deadline as deadlines
from guardrail_invariants.base import skipped, verdict_from_score
from guardrail_invariants.disagreement import JudgeScore
from guardrail_invariants.judges import JudgedOptions, JudgeError, load_judges
from guardrail_invariants.judges.base import Judge
from guardrail_invariants.judges.panel import SecondaryPanel
from guardrail_invariants.runner import error_verdict
from guardrail_invariants.citations import claim_sentences, without_markers
from guardrail_invariants.text import Bm25, Span, content_words, is_non_claim, make_windows
from guardrail_invariants.types import Case, Coverage, Finding, Verdict

SENTENCES_PER_STEP = 8  # sentences scored per step (x samples x top_k pairs); the budget is looked at between steps
Prepared = list[tuple[list[str], Bm25 | None]]  # per sample: its windows, and their BM25 index when there are many


class SelfConsistencyOptions(JudgedOptions):
    aggregation: Literal["max", "mean"] = Field("max", description="sentences -> response inconsistency")
    contradiction: Literal["prob", "normalized"] = Field(
        "prob", description="prob: P(contradiction); normalized: P(c) / (P(e) + P(c)), as in SelfCheckGPT-NLI")
    top_k: int = Field(1, ge=1, le=16, description="windows of each sample scored per sentence, by BM25 relevance "
                       "(1: half the pairs of 2 on 4-5 sentence samples; chatprotect AUROC 0.595 vs 0.593 with 2)")
    window_tokens: int = Field(64, ge=16, le=480, description="long samples are cut into windows this long: short "
                               "premises like the judge's training data, so one contradicting sentence is not diluted")
    stride_tokens: int = Field(32, ge=8, le=480)
    skip_non_claims: bool = Field(True, description="questions, greetings, abstentions are not checked")
    max_sentences: int = Field(
        512, ge=1, description="sentences checked at most; past them the verdict is partial (reason limit). The time "
        "budget (timeout_s) decides how far a long response is checked")
    max_samples: int = Field(10, ge=1, description="further samples are ignored (cost is sentences x samples)")
    min_decisive: float = Field(0.5, gt=0.0, le=1.0, description="normalized: least P(e) + P(c) a sample counts for")
    evidence_min: float = Field(0.5, ge=0.0, le=1.0, description="a sample is named as evidence at this contradiction")


@dataclass(frozen=True, slots=True)
class Consistency:
    """One judge's view: `matrix[i, j]` = contradiction of response sentence i by sample j."""

    matrix: np.ndarray
    per_sentence: np.ndarray
    inconsistency: float

    @property
    def score(self) -> float:
        return 1.0 - self.inconsistency


def _approx_tokens(text: str) -> int:
    return int(len(text.split()) * 1.3) + 1


def prepare_samples(samples: Sequence[str], options: SelfConsistencyOptions,
                    count_tokens: Callable[[str], int]) -> Prepared:
    """Each sample's windows (and BM25 index when it has more than `top_k`): built once per check, whatever the
    number of steps its sentences are scored in."""
    out: Prepared = []
    for sample in samples:
        windows = [w.text for w in make_windows([("", sample)], count_tokens, options.window_tokens,
                                                options.stride_tokens)] or [sample]
        out.append((windows, Bm25(windows) if len(windows) > options.top_k else None))
    return out


async def probability_tensor(judge: Judge, sentences: Sequence[str], samples: Sequence[str],
                             options: SelfConsistencyOptions,
                             count_tokens: Callable[[str], int] | None = None,
                             prepared: Prepared | None = None) -> np.ndarray:
    """[len(sentences), len(samples), 3] NLI probabilities (sample as premise), from one batched judge call."""
    count = count_tokens or getattr(judge, "token_count", None) or _approx_tokens

    def plan() -> tuple[list[tuple[str, str]], list[tuple[int, int]]]:
        pairs: list[tuple[str, str]] = []
        owners: list[tuple[int, int]] = []
        for j, (windows, bm25) in enumerate(prepared if prepared is not None
                                            else prepare_samples(samples, options, count)):
            for i, sentence in enumerate(sentences):
                chosen = bm25.top_k(sentence, options.top_k) if bm25 else range(len(windows))
                for w in chosen:
                    pairs.append((windows[w], sentence))
                    owners.append((i, j))
        return pairs, owners

    pairs, owners = await asyncio.to_thread(plan)
    probs = await judge.score(pairs)
    out = np.zeros((len(sentences), len(samples), 3), dtype=np.float64)
    best_neutral = np.full((len(sentences), len(samples)), np.inf)
    for k, (i, j) in enumerate(owners):
        if probs[k, 1] < best_neutral[i, j]:  # the least neutral window is the one that speaks to the sentence
            best_neutral[i, j] = probs[k, 1]
            out[i, j] = probs[k]
    return out


def summarize(probs: np.ndarray, options: SelfConsistencyOptions) -> Consistency:
    """Per-sentence and response inconsistency from the [sentences, samples, 3] probabilities.

    `prob`: mean P(contradiction) over samples. `normalized`: contradiction against the samples that speak to the
    sentence - sum of P(c) over sum of P(e) + P(c) (SelfCheckGPT's c / (e + c), pooled so that a sample that is
    silent on a sentence does not vote); the denominator is at least `min_decisive` per sample, so a sentence no
    sample speaks to is not called inconsistent on noise.
    """
    e, c = probs[..., 0], probs[..., 2]
    if options.contradiction == "normalized":
        floor = options.min_decisive
        matrix = c / np.maximum(e + c, floor)
        per_sentence = c.sum(axis=1) / np.maximum((e + c).sum(axis=1), floor * probs.shape[1])
    else:
        matrix = c
        per_sentence = c.mean(axis=1)
    if not len(per_sentence):  # no sentence reached within the budget: nothing contradicted (the verdict is partial)
        return Consistency(matrix, per_sentence, 0.0)
    total = float(per_sentence.max() if options.aggregation == "max" else per_sentence.mean())
    return Consistency(matrix, per_sentence, total)


def _is_claim(sentence: str) -> bool:
    return not is_non_claim(sentence)


class SelfConsistencyInvariant:
    name: ClassVar[str] = "self_consistency"
    default_threshold: ClassVar[float] = 0.5
    Options = SelfConsistencyOptions

    def __init__(self, threshold: float, options: SelfConsistencyOptions, zoo: Any) -> None:
        self.threshold = threshold
        self.options = options
        self.zoo = zoo
        self.primary: Judge | None = None
        self.panel = SecondaryPanel([], [], options.secondary_fraction, options.disagreement_margin)

    @property
    def judge(self) -> str:
        return self.primary.name if self.primary else ""

    async def load(self) -> None:
        if self.primary is None:
            (self.primary,) = await load_judges(self.options.judges[:1], self.zoo, self.name)
            o = self.options
            self.panel = await SecondaryPanel.load(o.judges[1:], self.zoo, self.name, self.threshold,
                                                   o.secondary_fraction, o.disagreement_margin,
                                                   primary=(self.primary.name, self.primary.family))

    def sentences(self, response: str) -> list[Span]:
        return self._sentences(response)[: self.options.max_sentences]

    def _sentences(self, response: str) -> list[Span]:
        spans = [s for s in claim_sentences(response) if content_words(s.text)]
        if self.options.skip_non_claims:
            spans = [s for s in spans if _is_claim(s.text)]
        return spans

    async def consistency(self, judge: Judge, sentences: Sequence[str], samples: Sequence[str],
                          budget: deadlines.Deadline = deadlines.NO_DEADLINE) -> tuple[Consistency, int]:
        """The judge's view of the first sentences it reached within `budget`, and how many that was (all of them
        without a budget). Stepwise, front to back: a step's pairs are scored as they would be all at once."""
        count = getattr(judge, "token_count", None) or _approx_tokens
        prepared = await asyncio.to_thread(prepare_samples, samples, self.options, count)
        blocks: list[np.ndarray] = []
        done, last = 0, 0.0
        for at in range(0, len(sentences), SENTENCES_PER_STEP):
            if budget.expired(last):
                break
            began = time.perf_counter()
            step = sentences[at : at + SENTENCES_PER_STEP]
            blocks.append(await probability_tensor(judge, step, samples, self.options, count, prepared))
            done += len(step)
            last = time.perf_counter() - began
        probs = np.concatenate(blocks) if blocks else np.zeros((0, len(samples), 3))
        return summarize(probs, self.options), done

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        if self.primary is None:
            await self.load()
        assert self.primary is not None
        indexed = [(j, s) for j, s in enumerate(case.samples) if s.strip()][: self.options.max_samples]
        if not indexed:
            return skipped(self.name, self.threshold, "no samples to compare the response with", started=started)
        every = self._sentences(case.response)
        spans = every[: self.options.max_sentences]
        if not spans:
            return skipped(self.name, self.threshold, "no checkable sentences in the response", started=started)
        sentences = [s.text for s in spans]
        samples = [without_markers(s) for _, s in indexed]

        async def score_with(judge: Judge) -> float:
            return (await self.consistency(judge, sentences, samples))[0].score

        secondary = self.panel.start(case, score_with)
        try:
            result, done = await self.consistency(self.primary, sentences, samples, deadlines.current())
        except JudgeError as exc:
            self.panel.cancel(secondary)
            return error_verdict(self.name, self.threshold, "judge_error", str(exc)[:500], started)
        coverage = None
        if done < len(every):
            reason = "deadline" if done < len(spans) else "limit"
            coverage = Coverage.prefix(len(case.response), every[done].start, reason)
            spans = spans[:done]
            self.panel.cancel(secondary)  # they judged every sentence, the primary not: not comparable
            secondary = []
        primary = JudgeScore(self.judge, self.primary.family, result.score, self.threshold,
                             time.perf_counter() - started)
        details: dict[str, Any] = {
            "samples": len(samples),
            "sentences": [{"start": s.start, "end": s.end, "score": round(1.0 - float(c), 4)}
                          for s, c in zip(spans, result.per_sentence, strict=True)],
            **(await self.panel.details(primary, secondary)),
        }
        findings = self._findings(spans, result, [j for j, _ in indexed])
        return verdict_from_score(self.name, result.score, self.threshold, findings, started=started,
                                  judge=self.judge, details=details, coverage=coverage)

    def _findings(self, spans: Sequence[Span], result: Consistency, sample_ids: Sequence[int]) -> list[Finding]:
        findings = []
        for i, span in enumerate(spans):
            score = 1.0 - float(result.per_sentence[i])
            if score >= self.threshold:
                continue
            row = result.matrix[i]
            order = np.argsort(-row)
            evidence = [{"sample": int(sample_ids[j]), "contradiction": round(float(row[j]), 4)}
                        for j in order if row[j] >= self.options.evidence_min]
            named = ", ".join(str(e["sample"]) for e in evidence) or "none individually"
            findings.append(Finding(
                kind="inconsistent_sentence",
                message=f"sentence is contradicted by the sampled responses (samples {named})",
                start=span.start, end=span.end, score=score,
                evidence={"mean_contradiction": round(float(result.per_sentence[i]), 4), "contradicting_samples":
                          evidence, "samples_checked": len(sample_ids)}))
        return findings
