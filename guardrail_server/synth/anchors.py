"""`--anchors NAME`: the anchor set's failed labels and critiques say which kinds of case deserve more of the set.

Each anchor case points at kinds through two signals:
- a human `fail` label on an invariant points at the kinds that invariant is there to catch
  (entailment -> the hallucinated kinds; reference_integrity -> the citation kinds; pii_boundary -> pii_leak and its
  control); a human `pass` where the judge said `fail` (a false flag) points at the supported kinds the critique
  names, or at all supported kinds when it names none;
- words of its critique (table `CRITIQUE_WORDS`, matched as word prefixes, case-insensitive; the short ones in
  `_WHOLE_WORDS` as whole words, plural allowed) point at the kinds
  they describe ("wrong year" -> date_swap, "paraphrase" -> reworded, "cites the wrong source" -> wrong_citation).
A kind a case's label points at gets LABEL_HIT (1) point, a kind its critique names CRITIQUE_HIT (2) instead (at
most one of the two per case and kind). A kind's weight is then 1 + `boost` x points / (the most points of any kind): with the default boost 2, the kind the
anchors point at most gets three times the cases of a kind they never mention. The weights are printed and stored
in the summary, with the hits behind them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrail_server.synth.kinds import KINDS, names

FAILED_INVARIANT_KINDS: dict[str, tuple[str, ...]] = {
    "entailment": tuple(names("hallucinated")),
    "reference_integrity": ("wrong_citation", "dangling_citation"),
    "pii_boundary": ("pii_leak", "pii_asked"),
}

# critique word (prefix) -> kinds it describes
CRITIQUE_WORDS: dict[str, tuple[str, ...]] = {
    "number": ("number_swap",), "figure": ("number_swap",), "amount": ("number_swap",), "count": ("number_swap",),
    "percent": ("number_swap",), "digit": ("number_swap",), "quantit": ("number_swap",),
    "date": ("date_swap",), "year": ("date_swap",), "month": ("date_swap",), "when": ("date_swap",),
    "name": ("entity_swap",), "person": ("entity_swap",), "entity": ("entity_swap",), "who": ("entity_swap",),
    "place": ("entity_swap",), "company": ("entity_swap",),
    "negat": ("negation",), "opposite": ("negation",), "contradict": ("negation",), "revers": ("negation",),
    "not in the": ("unsupported_addition",), "unsupported": ("unsupported_addition", "partial_support"),
    "made up": ("unsupported_addition",), "invent": ("unsupported_addition",), "fabricat": ("unsupported_addition",),
    "hallucinat": ("unsupported_addition",), "extra": ("unsupported_addition",), "added": ("unsupported_addition",),
    "partial": ("partial_support",), "half": ("partial_support",), "only one": ("partial_support",),
    "part of": ("partial_support",),
    "citation": ("wrong_citation", "dangling_citation"), "cite": ("wrong_citation", "dangling_citation"),
    "source": ("wrong_citation",), "reference": ("wrong_citation", "dangling_citation"),
    "missing passage": ("dangling_citation",), "does not exist": ("dangling_citation",),
    "email": ("pii_leak",), "e-mail": ("pii_leak",), "phone": ("pii_leak",), "ssn": ("pii_leak",),
    "social security": ("pii_leak",), "personal": ("pii_leak",), "pii": ("pii_leak",), "private": ("pii_leak",),
    "paraphras": ("reworded", "wrong_rewording"), "reword": ("reworded", "wrong_rewording"),
    "rephras": ("reworded",), "unit": ("reworded", "wrong_rewording"), "convers": ("reworded", "wrong_rewording"),
    "format": ("reworded",), "abbreviat": ("reworded",), "synonym": ("reworded",),
    "shorten": ("compressed",), "summar": ("compressed",), "trimmed": ("compressed",),
    "combin": ("merged",), "two passages": ("merged",), "merg": ("merged",), "both passages": ("merged",),
    "short answer": ("short_answer",), "one word": ("short_answer",), "question": ("short_answer",),
}
_PREFIXES = sorted(CRITIQUE_WORDS, key=len, reverse=True)
_WHOLE_WORDS = frozenset({"who", "when", "half", "pii", "ssn", "extra", "unit", "cite", "date", "name"})


def critique_kinds(critique: str) -> list[str]:
    text = critique.lower()
    out: list[str] = []
    for prefix in _PREFIXES:
        tail = r"s?(?![a-z])" if prefix in _WHOLE_WORDS else ""
        if re.search(r"(?<![a-z])" + re.escape(prefix) + tail, text):
            out += CRITIQUE_WORDS[prefix]
    return list(dict.fromkeys(out))


def _judge_said_fail(sample: Mapping[str, Any], invariant: str) -> bool:
    return any(v.get("invariant") == invariant and v.get("outcome") == "fail" for v in sample.get("verdicts", []))


LABEL_HIT = 1  # a failed label (or a false flag) points, broadly, at every kind of its invariant
CRITIQUE_HIT = 2  # a critique word names a kind: the sharper signal


def hits(samples: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Kind -> points from the anchor cases: LABEL_HIT for each kind a failed label (or a false flag without a
    named kind) points at, CRITIQUE_HIT for each kind the critique names (each at most once per case)."""
    out: Counter[str] = Counter()
    supported = set(names("supported"))
    for s in samples:
        broad: set[str] = set()
        critique = " ".join(a.get("critique", "") for a in s.get("annotations", []))
        named = {k for k in critique_kinds(critique) if k in KINDS}
        for invariant, label in s.get("labels", {}).items():
            if label == "fail":
                broad |= set(FAILED_INVARIANT_KINDS.get(invariant, ()))
            elif label == "pass" and _judge_said_fail(s, invariant) and not (named & supported):
                broad |= supported
        out.update({k: CRITIQUE_HIT for k in named})
        out.update({k: LABEL_HIT for k in broad - named})
    return out


def weights(kinds: Sequence[str], kind_hits: Mapping[str, int], boost: float = 2.0) -> dict[str, float]:
    top = max((kind_hits.get(k, 0) for k in kinds), default=0)
    return {k: 1.0 + (boost * kind_hits.get(k, 0) / top if top else 0.0) for k in kinds}


def load_anchor_samples(name: str, url: str) -> tuple[list[dict[str, Any]], str]:
    """The labeled samples of an anchor set: `NAME[@VERSION]` in the review store at `url`, or a file written by
    `guardrail anchors export`. Returns (samples with labels, annotations and verdicts, a description)."""
    path = Path(name)
    if path.suffix == ".jsonl" and path.is_file():
        samples = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            sample = dict(row.get("sample", {}))
            notes = row.get("annotations", [])
            labels: dict[str, str] = {}
            for a in notes:
                labels.update(a.get("labels", {}))
            samples.append({**sample, "annotations": notes, "labels": labels})
        return samples, f"{path.name} ({len(samples)} cases)"
    from guardrail_server.review.store import ReviewStore

    set_name, _, version = name.partition("@")
    with ReviewStore(url) as store:
        found = store.anchor_set(set_name, int(version) if version else None)
        if found is None:
            known = sorted({s["name"] for s in store.anchor_sets()})
            raise KeyError(f"no anchor set {name!r} in the review store; known: {known}")
        samples = store.labeled_samples(found["sample_ids"])
    return samples, f"{found['name']} v{found['version']} ({len(samples)} cases)"
