"""How two outputs of a system are compared without a label: verdicts by decision, labels by equality, free text by
yes/no polarity when both answers have one, else by token F1 of the normalized answers (SQuAD-style)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping

from guardrail_server.metamorph.types import Check, Output

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_YES = frozenset({"yes", "yeah", "yep", "true", "correct", "right"})
_NO = frozenset({"no", "nope", "false", "incorrect", "wrong"})


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(a: str, b: str) -> float:
    ta, tb = normalize_answer(a).split(), normalize_answer(b).split()
    if not ta and not tb:
        return 1.0
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(tb), common / len(ta)
    return 2 * precision * recall / (precision + recall)


def polarity(text: str) -> bool | None:
    """True/False for an answer that starts with yes/no (or true/false), None otherwise."""
    words = normalize_answer(text).split()
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    return None


def apply_mapping(text: str, mapping: Mapping[str, str]) -> str:
    """Whole-word, case-sensitive replacement of every key at once (a swap of A<->B does not undo itself)."""
    if not mapping:
        return text
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)) + r")\b")
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def _describe(o: Output) -> str:
    if o.verdict:
        return f"{o.label} ({o.score:.3f})" if o.score is not None else str(o.label)
    if o.label is not None:
        return repr(o.label)
    text = " ".join(o.text.split())
    return repr(text if len(text) <= 60 else text[:57] + "...")


def same(source: Output, followup: Output, *, min_f1: float = 0.8, mapping: Mapping[str, str] | None = None) -> Check:
    """The follow-up must mean the same as the source. Score: 1 - |score change| for verdicts, F1 for text."""
    if source.verdict and followup.verdict:
        held = source.allowed == followup.allowed
        delta = abs((source.score or 0.0) - (followup.score or 0.0))
        return Check(held, 1.0 - min(1.0, delta), f"{_describe(source)} -> {_describe(followup)}")
    if source.label is not None and followup.label is not None:
        held = source.label == followup.label
        return Check(held, 1.0 if held else 0.0, f"{_describe(source)} -> {_describe(followup)}")
    expected = apply_mapping(source.text, mapping or {})
    pa, pb = polarity(expected), polarity(followup.text)
    if pa is not None and pb is not None:
        return Check(pa == pb, 1.0 if pa == pb else 0.0,
                     f"answer {'yes' if pa else 'no'} -> {'yes' if pb else 'no'}")
    f1 = token_f1(expected, followup.text)
    return Check(f1 >= min_f1, f1, f"{_describe(source)} -> {_describe(followup)} (token F1 {f1:.2f})")


def flipped(source: Output, followup: Output, *, min_f1: float = 0.8) -> Check:
    """The follow-up must NOT mean the same. For verdicts it is one-way: an allowed source must become a failure
    (negating an unsupported claim may leave it unsupported, so a failing source constrains nothing)."""
    if source.verdict and followup.verdict:
        if not source.allowed:
            return Check(None, 1.0, f"{_describe(source)}: source not allowed, negation constrains nothing")
        held = followup.allowed is False
        drop = max(0.0, (source.score or 0.0) - (followup.score or 0.0))
        return Check(held, min(1.0, drop), f"{_describe(source)} -> {_describe(followup)}")
    if source.label is not None and followup.label is not None:
        held = source.label != followup.label
        return Check(held, 1.0 if held else 0.0, f"{_describe(source)} -> {_describe(followup)}")
    pa, pb = polarity(source.text), polarity(followup.text)
    if pa is not None and pb is not None:
        return Check(pa != pb, 1.0 if pa != pb else 0.0, f"answer {'yes' if pa else 'no'} -> {'yes' if pb else 'no'}")
    f1 = token_f1(source.text, followup.text)
    return Check(f1 < min_f1, 1.0 - f1, f"{_describe(source)} -> {_describe(followup)} (token F1 {f1:.2f})")
