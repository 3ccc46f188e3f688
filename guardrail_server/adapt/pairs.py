"""Contrastive training pairs from the user's documents, and the label-noise filter.

Pairs come from the judge's own training generator (`guardrail_models.training.generator.PairGenerator`): a window
of 1-4 sentences of one paragraph is the premise; the claim is a sentence of it verbatim, trimmed, merged with
another, a short answer span, or reworded (`rewordings`: units, number and date formats, clause order, ...) — all
`entailment` — or the same with a number, date or name swapped, a negation flipped, a wrong conversion
(`contradiction`), or a sentence outside the window, from another document, a detail added (`neutral`). Labels are
right by construction, up to the generator's mistakes on text it was not written for (a "swap" that swaps nothing
visible, a rewording that mangles the sentence). Those are what `label_noise` drops: pairs whose label the current
judge **and** the lexical features both confidently contradict —

- labelled supported, but the judge gives it P(entailment) <= `JUDGE_SURE_NO` and fewer than `LEXICAL_SURE_NO` of the
  claim's content words occur in the premise;
- labelled unsupported, but the judge gives it P(entailment) >= `JUDGE_SURE_YES` and the claim is, word for word, a
  contiguous part of the premise (lexical features are sure of support only for a verbatim copy: a flipped negation
  or swapped roles keep every word, so word overlap never vouches for them).

One signal alone never drops a pair: the judge is wrong exactly where adaptation should teach it, and overlap is
blind to negation and role swaps.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from guardrail_invariants.text import coverage
from guardrail_server.synth.documents import SourceDoc

JUDGE_SURE_NO = 0.05
JUDGE_SURE_YES = 0.95
LEXICAL_SURE_NO = 0.5
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class DocPair:
    premise: str
    claim: str
    label: str  # entailment | neutral | contradiction
    kind: str  # the generator's kind (verbatim, number_swap, reword_unit_conversion, ...)

    @property
    def supported(self) -> bool:
        return self.label == "entailment"


def documents_sha256(docs: Sequence[SourceDoc]) -> str:
    """One hash of the documents' ids, titles and text, in id order (the order of the folder walk never matters)."""
    h = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.id):
        for part in (d.id, d.title, d.text):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
    return h.hexdigest()


def split_documents(docs: Sequence[SourceDoc], holdout: float, seed: int) -> tuple[list[SourceDoc], list[SourceDoc]]:
    """(adapt on, held out): a seeded share of the documents kept out of training for the synth eval set. With fewer
    than four documents nothing is held out (two documents are the least the generator needs)."""
    if holdout <= 0 or len(docs) < 4:
        return list(docs), []
    order = sorted(docs, key=lambda d: hashlib.sha256(f"{seed}:{d.id}".encode()).hexdigest())
    k = min(max(1, round(len(docs) * holdout)), len(docs) - 2)
    held = {d.id for d in order[:k]}
    return [d for d in docs if d.id not in held], [d for d in docs if d.id in held]


def make_pairs(docs: Sequence[SourceDoc], n: int, seed: int) -> list[DocPair]:
    """Up to `n` distinct pairs; premises are windows of at most 95 words (as the general mix's synthetic pairs), so
    a pair is one window of the invariant's 128 tokens."""
    from guardrail_models.training.generator import PairGenerator, documents_from_texts

    segmented = documents_from_texts([(d.title, d.text) for d in docs])
    if len(segmented) < 2:
        raise ValueError(f"{len(segmented)} usable document(s); adapt needs at least two documents with two or more "
                         "sentences of 5-60 words each (off-topic negatives come from another document)")
    gen = PairGenerator(segmented, seed=seed, max_window_words=95)
    seen: set[tuple[str, str]] = set()
    out: list[DocPair] = []
    tries = 0
    while len(out) < n and tries < 4:
        batch = gen.generate(n - len(out))
        tries += 1
        for p in batch:
            key = (p.premise, p.hypothesis)
            if key in seen or not p.hypothesis.strip():
                continue
            seen.add(key)
            out.append(DocPair(p.premise, p.hypothesis, p.label, p.kind))
    return out


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(text)]


def verbatim(premise: str, claim: str) -> bool:
    """The claim's words appear in the premise contiguously and in order (punctuation and case ignored)."""
    c = _words(claim)
    if not c:
        return False
    return f" {' '.join(c)} " in f" {' '.join(_words(premise))} "


def noise_reason(pair: DocPair, p_entail: float) -> str | None:
    """Why the pair looks mislabelled (both signals confidently against its label), or None."""
    if pair.supported:
        cov = coverage(pair.claim, pair.premise)
        if p_entail <= JUDGE_SURE_NO and cov < LEXICAL_SURE_NO:
            return (f"labelled supported; judge P(entailment) {p_entail:.3f}, {cov:.0%} of its content words in the "
                    "premise")
        return None
    if p_entail >= JUDGE_SURE_YES and verbatim(pair.premise, pair.claim):
        return (f"labelled {pair.label}; judge P(entailment) {p_entail:.3f} and the claim is a verbatim part of the "
                "premise")
    return None


@dataclass(slots=True)
class Filtered:
    kept: list[DocPair]
    dropped: list[tuple[DocPair, str]]

    def dropped_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p, _ in self.dropped).items()))


def label_noise(pairs: Sequence[DocPair], p_entail: Sequence[float]) -> Filtered:
    kept: list[DocPair] = []
    dropped: list[tuple[DocPair, str]] = []
    for pair, p in zip(pairs, p_entail, strict=True):
        reason = noise_reason(pair, float(p))
        if reason is None:
            kept.append(pair)
        else:
            dropped.append((pair, reason))
    return Filtered(kept, dropped)


def wrong(pairs: Sequence[DocPair], p_entail: Sequence[float], threshold: float = 0.5) -> list[int]:
    """Indices of the pairs the model gets wrong at P(entailment) `threshold` (the second round trains on them); an
    unscored pair (NaN) is not wrong."""
    return [i for i, (pair, p) in enumerate(zip(pairs, p_entail, strict=True))
            if p == p and (p >= threshold) != pair.supported]


def sample(items: Sequence, k: int, seed: int) -> list:
    items = list(items)
    if k >= len(items):
        return items
    return random.Random(seed).sample(items, k)
