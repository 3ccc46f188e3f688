"""A non-neural NLI judge: alignment of numbers, named entities, negations and content words.

Its lineage is entirely different from the neural judges (no pretrained text, no transformer): a claim is
*supported* when its content words, numbers and names are found in the passage, *contradicted* when it is on the
passage's topic but a number, name, negation or antonym in it conflicts with the sentence of the passage it aligns
best with, and *neutral* (unsupported) when it talks about something the passage does not. Hand-made features feed a
3-way logistic regression whose weights are fitted on train-side data only (SNLI train + synthetic FactCC-style pairs,
see `guardrail_invariants.judges.fit_alignment`) and ship as data (`alignment_params.json`), so its probabilities are
calibrated on that mix. Its errors are different from a transformer's - which is what a second judge is for.
There is deliberately no length feature: answer length separates some datasets (HaluEval) and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from guardrail_invariants.judges.base import Pair, check_scores, empty_scores
from guardrail_invariants.judges.config import ALIGNMENT_FAMILY

PARAMS_PATH = Path(__file__).with_name("alignment_params.json")

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[A-Za-z]+(?:['’][a-z]+)?")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_WORDNUM = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
            "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20", "hundred": "100",
            "thousand": "1000", "million": "1000000", "billion": "1000000000", "first": "1", "second": "2",
            "third": "3"}
_CAPITAL_SPAN = re.compile(r"\b[A-Z][\w'’\-]*(?:\s+(?:of|de|la|von|van|the|and|du|del)?\s*[A-Z][\w'’\-]*)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot",
                        "n't", "nowhere", "hardly", "false", "fails", "failed", "refused", "lack", "lacks"})
_STOP = frozenset("""a an the and or but if then than that this these those there here is are was were be been being am
do does did doing have has had having of in on at to for from by with as into onto about over under after before
during between through per via it its it's he she they them his her their him we us our you your i me my mine
which who whom whose what when where why how also very so such can could may might must shall should will would
just only not no nor never some any all each every both either neither more most other another same own too s t
one ones while because until up down out off again further once""".split())
_ANTONYMS = [("increase", "decrease"), ("increased", "decreased"), ("more", "less"), ("more", "fewer"),
             ("larger", "smaller"), ("largest", "smallest"), ("higher", "lower"), ("highest", "lowest"),
             ("before", "after"), ("won", "lost"), ("win", "lose"), ("true", "false"), ("male", "female"),
             ("man", "woman"), ("men", "women"), ("boy", "girl"), ("north", "south"), ("east", "west"),
             ("first", "last"), ("early", "late"), ("earlier", "later"), ("warm", "cold"), ("hot", "cold"),
             ("rise", "fall"), ("rising", "falling"), ("positive", "negative"), ("alive", "dead"), ("born", "died"),
             ("inside", "outside"), ("up", "down"), ("open", "closed"), ("begin", "end"), ("started", "ended"),
             ("major", "minor"), ("private", "public"), ("young", "old"), ("old", "new"), ("always", "never"),
             ("sitting", "standing"), ("sleeping", "awake"), ("empty", "full"), ("day", "night"),
             ("indoors", "outdoors"), ("accept", "reject"), ("accepted", "rejected"), ("support", "oppose"),
             ("supported", "opposed"), ("success", "failure"), ("strengthen", "weaken")]
_NOT_ENTITIES = frozenset({"The", "A", "An", "In", "On", "At", "He", "She", "It", "They", "This", "That", "These",
                           "Those", "His", "Her", "Its", "Their", "After", "Before", "During", "When", "While", "As",
                           "By", "For", "From", "With", "But", "And", "However", "Although", "Since", "There", "Some",
                           "Many", "Most", "One", "Two", "I", "We", "You", "If", "Also", "Other", "Both", "Each", "All",
                           "Several", "According", "Despite", "Because", "Yes", "No", "Not", "What", "Who", "Which",
                           "Where", "How", "Why", "My", "Our", "Your", "As", "So", "Then", "Thus", "Please"})

FEATURES: tuple[str, ...] = (
    "cov", "cov_best", "missing_content", "bigram", "num_h", "num_miss", "num_conflict", "ent_h", "ent_miss",
    "ent_conflict", "neg_h", "neg_mismatch", "antonym", "cov_best_x_num_conflict",
    "cov_best_x_ent_conflict", "cov_best_x_neg_mismatch", "cov_best_x_antonym", "uncovered_best",
)


def _antonym_map() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for a, b in _ANTONYMS:
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return {k: frozenset(v) for k, v in out.items()}


_ANTONYM = _antonym_map()


def stem(word: str) -> str:
    """A deliberately crude suffix stripper: it only has to map both sides of a pair the same way."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, keep in (("ies", 4), ("ing", 5), ("ed", 4), ("es", 4), ("s", 4)):
        if w.endswith(suffix) and len(w) >= keep + len(suffix) - 1 and not w.endswith("ss"):
            return w[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return w


def _norm_number(n: str) -> str:
    n = n.replace(",", "")
    try:
        v = float(n)
    except ValueError:
        return n
    return str(int(v)) if v.is_integer() else f"{v:g}"


@dataclass(frozen=True, slots=True)
class _Text:
    tokens: tuple[str, ...]
    content: frozenset[str]
    numbers: frozenset[str]
    entities: tuple[frozenset[str], ...]
    negated: bool
    lower: frozenset[str]


@lru_cache(maxsize=8192)
def _analyze(text: str) -> _Text:
    tokens = tuple(_TOKEN.findall(text))
    lower = [t.lower().replace("’", "'") for t in tokens]
    content = frozenset(stem(t) for t in lower if t not in _STOP and (len(t) > 1 or t.isdigit()))
    numbers = {_norm_number(m.group(0)) for m in _NUMBER.finditer(text)}
    numbers |= {_WORDNUM[t] for t in lower if t in _WORDNUM}
    entities = []
    for m in _CAPITAL_SPAN.finditer(text):
        words = [w for w in m.group(0).split() if w not in _NOT_ENTITIES]
        if words and (m.start() > 0 or len(words) > 1 or len(words[0]) > 3):
            entities.append(frozenset(stem(w) for w in words if w.lower() not in _STOP))
    negated = any(t in _NEGATIONS or t.endswith("n't") for t in lower)
    return _Text(tokens, content, frozenset(numbers), tuple(e for e in entities if e), negated, frozenset(lower))


@lru_cache(maxsize=2048)
def _sentences(text: str) -> tuple[str, ...]:
    parts = [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]
    return tuple(parts) or (text,)


def _coverage(h: frozenset[str], p: frozenset[str]) -> float:
    return len(h & p) / len(h) if h else 1.0


def _bigrams(tokens: Sequence[str]) -> set[tuple[str, str]]:
    low = [t.lower() for t in tokens]
    return set(zip(low, low[1:], strict=False))


def features(premise: str, hypothesis: str) -> np.ndarray:
    """The alignment feature vector of one pair, in the order of FEATURES."""
    p, h = _analyze(premise), _analyze(hypothesis)
    best, best_cov = p, -1.0
    for s in _sentences(premise):
        a = _analyze(s)
        c = _coverage(h.content, a.content)
        if c > best_cov:
            best, best_cov = a, c
    best_cov = max(best_cov, 0.0)
    cov = _coverage(h.content, p.content)
    missing = len(h.content - p.content)
    hb = _bigrams(h.tokens)
    bigram = len(hb & _bigrams(p.tokens)) / len(hb) if hb else 1.0
    num_miss = [n for n in h.numbers if n not in p.numbers]
    num_conflict = float(bool(num_miss) and bool(best.numbers - h.numbers))
    p_words = p.content | {stem(t) for t in p.lower}
    ent_miss = [e for e in h.entities if not e <= p_words]
    h_words = h.content | {stem(t) for t in h.lower}
    ent_conflict = float(bool(ent_miss) and any(not e <= h_words for e in best.entities))
    neg_mismatch = float(h.negated != best.negated)
    antonym = float(any(_ANTONYM.get(t, frozenset()) & best.lower for t in h.lower - best.lower))
    f = [
        cov,
        best_cov,
        math.log1p(missing),
        bigram,
        float(bool(h.numbers)),
        len(num_miss) / len(h.numbers) if h.numbers else 0.0,
        num_conflict,
        float(bool(h.entities)),
        len(ent_miss) / len(h.entities) if h.entities else 0.0,
        ent_conflict,
        float(h.negated),
        neg_mismatch,
        antonym,
        best_cov * num_conflict,
        best_cov * ent_conflict,
        best_cov * neg_mismatch,
        best_cov * antonym,
        1.0 - best_cov,
    ]
    return np.asarray(f, dtype=np.float64)


def feature_matrix(pairs: Sequence[Pair]) -> np.ndarray:
    if not pairs:
        return np.zeros((0, len(FEATURES)))
    return np.stack([features(p, h) for p, h in pairs])


@dataclass(frozen=True)
class AlignmentModel:
    """Standardization + multinomial logistic regression; columns (entailment, neutral, contradiction)."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray  # [len(FEATURES) + 1, 3], last row is the bias
    meta: dict

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        logits = z @ self.weights[:-1] + self.weights[-1]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, pairs: Sequence[Pair]) -> np.ndarray:
        if not pairs:
            return empty_scores()
        return self.predict_features(feature_matrix(pairs)).astype(np.float32)

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "weights": self.weights.tolist(), "columns": ["entailment", "neutral", "contradiction"],
                "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict) -> AlignmentModel:
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("alignment parameters were fitted on a different feature list; refit them "
                             "(python -m guardrail_invariants.judges.fit_alignment)")
        return cls(np.asarray(data["mean"]), np.asarray(data["std"]), np.asarray(data["weights"]), data.get("meta", {}))


def load_model(path: Path = PARAMS_PATH) -> AlignmentModel:
    return AlignmentModel.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


class AlignmentJudge:
    """The alignment judge behind the `Judge` protocol. Cheap (pure Python), but still run off the event loop."""

    family = ALIGNMENT_FAMILY

    def __init__(self, params_path: Path = PARAMS_PATH) -> None:
        self.name = "alignment"
        self.params_path = params_path
        self.model: AlignmentModel | None = None

    async def load(self) -> None:
        if self.model is None:
            self.model = await asyncio.to_thread(load_model, self.params_path)

    async def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        if self.model is None:
            await self.load()
        assert self.model is not None
        if not pairs:
            return empty_scores()
        return check_scores(await asyncio.to_thread(self.model.predict, list(pairs)), len(pairs), self.name)
