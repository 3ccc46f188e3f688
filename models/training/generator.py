"""FactCC-style synthetic groundedness pairs: (passage window, claim) with mechanically made hard negatives.

Why: short caption pairs (SNLI) do not teach "is this claim supported by this passage"; a model trained on them alone
is at chance on groundedness. From any plain documents we make
  - supported claims (entailment): a window sentence verbatim, trimmed to a clause, stripped of parentheticals and
    leading adverbials, two window sentences merged, or a short answer span copied from the window;
  - contradicted claims: a number/date or a named entity swapped for a type-matched one from the same document,
    a negation inserted or removed, two entities of the sentence swapped;
  - unsupported claims (neutral): an on-topic sentence of the same document outside the window, a sentence of another
    document, a window sentence with an added detail from elsewhere, a short span the window does not contain.
Users run the same generator on their own documents (`documents_from_texts`). Pure Python + pysbd; no torch.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from guardrail_models.training.rewordings import reword_any

LABELS: tuple[str, str, str] = ("entailment", "neutral", "contradiction")

_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])")
_YEAR = re.compile(r"^(1[5-9]\d\d|20[0-4]\d)$")
_ENTITY = re.compile(r"\b[A-Z][\w'\-]*(?:\s+(?:of|de|la|von|van|the|and)?\s*[A-Z][\w'\-]*)*")
_PAREN = re.compile(r"\s*\([^()]*\)")
_LEAD_ADVERBIAL = re.compile(r"^(?:In|On|During|By|After|Before|Since|From|At)\s[^,]{2,40},\s+(?P<rest>[a-zA-Z].*)$")
_DETAIL = re.compile(r"\b(?:in|at|during|near|from)\s+(?:the\s+)?(?:[A-Z][\w\-]+(?:\s+[A-Z][\w\-]+)*|1[5-9]\d\d|20[0-4]\d)")
_NEGATABLE = [(" is not ", " is "), (" was not ", " was "), (" were not ", " were "), (" are not ", " are "),
              (" did not ", " "), (" does not ", " "), (" has not ", " has "), (" had not ", " had "),
              (" cannot ", " can "), (" never ", " ")]
_AFFIRMATIVE = [(" is ", " is not "), (" was ", " was not "), (" were ", " were not "), (" are ", " are not "),
                (" has ", " has not "), (" had ", " had not "), (" can ", " cannot "), (" will ", " will not ")]
_NOT_ENTITIES = {"The", "A", "An", "In", "On", "At", "He", "She", "It", "They", "This", "That", "These", "Those", "His",
                 "Her", "Its", "Their", "After", "Before", "During", "When", "While", "As", "By", "For", "From", "With",
                 "But", "And", "However", "Although", "Since", "There", "Some", "Many", "Most", "One", "Two", "I", "We",
                 "Following", "According", "Despite", "Because", "If", "Also", "Other", "Both", "Each", "All", "Several"}


@dataclass(frozen=True, slots=True)
class Pair:
    premise: str
    hypothesis: str
    label: str
    kind: str


@dataclass(slots=True)
class Document:
    """A document as paragraphs of sentences; windows never cross a paragraph."""

    title: str
    paragraphs: list[list[str]] = field(default_factory=list)

    def sentences(self) -> list[str]:
        return [s for p in self.paragraphs for s in p]


def detokenize_wikitext(line: str) -> str:
    """WikiText is space-tokenized with @-@ style joins; undo it so training text looks like real text."""
    s = line.strip()
    s = s.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    s = re.sub(r" ([.,;:!?%)\]])", r"\1", s)
    s = re.sub(r"([(\[$]) ", r"\1", s)
    s = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s)
    s = re.sub(r'" ([^"]*?) "', r'"\1"', s)
    s = re.sub(r"\s{2,}", " ", s)
    return s


def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def _good_sentence(s: str) -> bool:
    words = s.split()
    return 5 <= len(words) <= 60 and "<unk>" not in s and s[:1].isupper() and s.rstrip()[-1:] in ".!?\""


def load_wikitext(path: Path | str) -> list[Document]:
    """Parses a WikiText-2 token file into documents (articles); drops sentences with <unk> or odd shapes."""
    seg = _segmenter()
    docs: list[Document] = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        if re.fullmatch(r"= [^=].*[^=] =", line):
            docs.append(Document(title=line.strip("= ").strip()))
            continue
        if line.startswith("="):
            continue
        if not docs:
            docs.append(Document(title=""))
        text = detokenize_wikitext(line)
        sents = [s.strip() for s in seg.segment(text)]
        para = [s for s in sents if _good_sentence(s)]
        if para:
            docs[-1].paragraphs.append(para)
    return [d for d in docs if len(d.sentences()) >= 4]


def documents_from_texts(texts: Iterable[tuple[str, str]]) -> list[Document]:
    """(title, text) documents -> Documents; blank lines separate paragraphs."""
    seg = _segmenter()
    docs = []
    for title, text in texts:
        paras = []
        for block in re.split(r"\n\s*\n", text):
            sents = [s.strip() for s in seg.segment(" ".join(block.split()))]
            para = [s for s in sents if _good_sentence(s)]
            if para:
                paras.append(para)
        docs.append(Document(title=title, paragraphs=paras))
    return [d for d in docs if len(d.sentences()) >= 2]


def _entities(s: str) -> list[str]:
    out = []
    for m in _ENTITY.finditer(s):
        ent = m.group(0).strip()
        words = ent.split()
        while words and words[0] in _NOT_ENTITIES:
            words = words[1:]
        ent = " ".join(words)
        if ent and len(ent) > 2 and ent not in _NOT_ENTITIES:
            out.append(ent)
    return out


def _numbers(s: str) -> list[str]:
    return [m.group(1) for m in _NUMBER.finditer(s)]


def _replace_once(s: str, old: str, new: str) -> str:
    return re.sub(r"(?<![\w])" + re.escape(old) + r"(?![\w])", lambda _m: new, s, count=1)


def swap_number(sentence: str, pool: Sequence[str], rng: random.Random) -> str | None:
    """Replaces one number with a type-matched different one: years with years (from the pool or +-1..30)."""
    nums = _numbers(sentence)
    if not nums:
        return None
    old = rng.choice(nums)
    if _YEAR.match(old):
        cands = [p for p in pool if _YEAR.match(p) and p != old]
        new = rng.choice(cands) if cands and rng.random() < 0.6 else str(int(old) + rng.choice([-1, 1]) * rng.randint(1, 30))
    else:
        cands = [p for p in pool if not _YEAR.match(p) and p != old]
        if cands and rng.random() < 0.5:
            new = rng.choice(cands)
        else:
            try:
                value = float(old.replace(",", ""))
            except ValueError:
                return None
            factor = rng.choice([0.5, 0.7, 1.3, 1.5, 2, 3, 10])
            v = value * factor if value > 3 else value + rng.randint(1, 5)
            new = f"{v:,.0f}" if "," in old else (f"{v:.1f}" if "." in old else str(int(round(v))))
    if new == old:
        return None
    out = _replace_once(sentence, old, new)
    return out if out != sentence else None


def swap_entity(sentence: str, pool: Sequence[str], rng: random.Random) -> str | None:
    ents = [e for e in _entities(sentence) if not sentence.startswith(e) or rng.random() < 0.5]
    if not ents:
        return None
    old = rng.choice(ents)
    cands = [p for p in pool if p != old and p not in old and old not in p and p not in sentence]
    if not cands:
        return None
    out = _replace_once(sentence, old, rng.choice(cands))
    return out if out != sentence else None


def swap_within(sentence: str, rng: random.Random) -> str | None:
    """Swaps two distinct entities of one sentence (subject/object swap)."""
    ents = list(dict.fromkeys(_entities(sentence)))
    if len(ents) < 2:
        return None
    a, b = rng.sample(ents, 2)
    if a in b or b in a:
        return None
    out = _replace_once(_replace_once(sentence, a, "\x00"), b, a).replace("\x00", b)
    return out if out != sentence else None


def flip_negation(sentence: str, rng: random.Random) -> str | None:
    for old, new in _NEGATABLE:
        if old in sentence:
            return sentence.replace(old, new, 1)
    options = [(o, n) for o, n in _AFFIRMATIVE if o in sentence]
    if not options:
        return None
    old, new = rng.choice(options)
    return sentence.replace(old, new, 1)


def trim_clause(sentence: str) -> str | None:
    """Keeps the main clause before the first comma, when it is a sentence on its own."""
    head = sentence.split(", ")[0].rstrip(".")
    if len(head.split()) < 5 or head == sentence.rstrip("."):
        return None
    if not any(f" {v} " in f" {head} " for v in ("is", "was", "were", "are", "has", "had")):
        return None
    return head + "."


def strip_parentheticals(sentence: str) -> str | None:
    out = _PAREN.sub("", sentence)
    return out if out != sentence and len(out.split()) >= 4 else None


def drop_lead_adverbial(sentence: str) -> str | None:
    m = _LEAD_ADVERBIAL.match(sentence)
    if not m:
        return None
    rest = m.group("rest")
    return rest[0].upper() + rest[1:]


def add_detail(sentence: str, donor: str, rng: random.Random) -> str | None:
    details = [m.group(0) for m in _DETAIL.finditer(donor) if m.group(0) not in sentence]
    if not details or not sentence.endswith("."):
        return None
    return sentence[:-1] + " " + rng.choice(details) + "."


def _round_down(value: float) -> int:
    """The largest 'round' number below value (45,300 -> 40,000; 87 -> 80)."""
    mag = 10 ** max(len(str(int(value))) - 1, 1)
    low = int(value // mag * mag)
    return low if low < value else low - mag


def abstract_number(sentence: str, rng: random.Random) -> tuple[str, str] | None:
    """A vaguer restatement of one number: entailed ("in 1994" -> "in the 1990s", 45,300 -> "more than 40,000") or,
    with the bound on the wrong side, contradicted — real claims paraphrase figures instead of copying them."""
    nums = [n for n in _numbers(sentence) if "." not in n]
    if not nums:
        return None
    old = rng.choice(nums)
    value = int(old.replace(",", ""))
    wrong = rng.random() < 0.4
    if _YEAR.match(old):
        decade = value // 10 * 10 + (rng.choice([-10, 10]) if wrong else 0)
        out = re.sub(r"\b(?:in|In) " + re.escape(old) + r"\b", lambda m: f"{m.group(0)[:2]} the {decade}s", sentence,
                     count=1)
        return (out, "contradiction" if wrong else "entailment") if out != sentence else None
    if value < 20:
        return None
    low = _round_down(value)
    if low <= 0:
        return None
    if not wrong:
        phrase = f"more than {_round_to_fmt(low, old)}"
    elif rng.random() < 0.5:
        phrase = f"more than {_round_to_fmt(_round_down(value * 2.4), old)}"
    else:
        phrase = f"fewer than {_round_to_fmt(low, old)}"
    out = _replace_once(sentence, old, phrase)
    return (out, "contradiction" if wrong else "entailment") if out != sentence else None


def _round_to_fmt(value: int, like: str) -> str:
    return f"{value:,}" if "," in like else str(value)


def conjoin_unsupported(sentence: str, other: str) -> str | None:
    """A supported sentence and an unsupported one fused into a single claim: mostly grounded words, one
    unsupported fact — the partial support that whole-claim lexical overlap misses."""
    if not sentence.endswith(".") or len(other) < 2:
        return None
    tail = other.rstrip(".")
    first = tail.split()[0]
    if first in _NOT_ENTITIES or first.lower() == first:
        tail = tail[0].lower() + tail[1:]
    return f"{sentence[:-1]}, and {tail}."


def rewrite(sentence: str, rng: random.Random) -> str | None:
    """Applies every applicable meaning-preserving shortening, in random order: compressed, not copied."""
    steps = [trim_clause, strip_parentheticals, drop_lead_adverbial]
    rng.shuffle(steps)
    out = sentence
    for step in steps:
        out = step(out) or out
    return out if out != sentence else None


class PairGenerator:
    """Draws (window, claim, label) pairs from documents; deterministic for a seed."""

    def __init__(self, docs: Sequence[Document], seed: int = 0, max_window_sentences: int = 4,
                 max_window_words: int = 110, reword_share: float = 0.3) -> None:
        if len(docs) < 2:
            raise ValueError("need at least two documents (off-topic negatives come from another document)")
        self.docs = list(docs)
        self.rng = random.Random(seed)
        self.max_window_sentences = max_window_sentences
        self.max_window_words = max_window_words
        self.reword_share = reword_share
        self._numbers = [sorted({n for s in d.sentences() for n in _numbers(s)}) for d in self.docs]
        self._entities = [sorted({e for s in d.sentences() for e in _entities(s)}) for d in self.docs]
        self._all_entities = sorted({e for es in self._entities for e in es})

    def _window(self, di: int) -> tuple[list[str], int, int, int]:
        doc = self.docs[di]
        pi = self.rng.randrange(len(doc.paragraphs))
        para = doc.paragraphs[pi]
        size = self.rng.randint(1, min(self.max_window_sentences, len(para)))
        start = self.rng.randrange(len(para) - size + 1)
        window = para[start:start + size]
        while len(window) > 1 and sum(len(s.split()) for s in window) > self.max_window_words:
            window = window[:-1]
        return window, pi, start, start + len(window)

    def _outside(self, di: int, window: list[str]) -> list[str]:
        inside = set(window)
        return [s for s in self.docs[di].sentences() if s not in inside]

    def one(self) -> Pair | None:
        rng = self.rng
        di = rng.randrange(len(self.docs))
        window, *_ = self._window(di)
        premise = " ".join(window)
        target = rng.choice(window)
        other_di = rng.choice([i for i in range(len(self.docs)) if i != di]) if len(self.docs) > 1 else di
        if rng.random() < self.reword_share:
            return self._reworded(premise, window, rng)
        roll = rng.random()
        kind, label, hyp = "", "", None
        if roll < 0.10:
            kind, label, hyp = "verbatim", "entailment", target
        elif roll < 0.24:
            kind, label, hyp = "rewrite", "entailment", rewrite(target, rng)
        elif roll < 0.32:
            if len(window) >= 2:
                a, b = rng.sample(window, 2)
                kind, label, hyp = "merged", "entailment", a + " " + b
        elif roll < 0.39:
            spans = [e for e in _entities(target) if len(e.split()) <= 4] + _numbers(target)
            if spans:
                kind, label, hyp = "short_answer", "entailment", rng.choice(spans)
        elif roll < 0.47:
            made = abstract_number(target, rng)
            if made:
                kind, (hyp, label) = "number_abstraction", made
        elif roll < 0.54:
            kind, label = "number_swap", "contradiction"
            hyp = swap_number(target, self._numbers[di], rng)
        elif roll < 0.62:
            kind, label = "entity_swap", "contradiction"
            pool = self._entities[di] if rng.random() < 0.7 else self._all_entities
            hyp = swap_entity(target, pool, rng)
        elif roll < 0.66:
            kind, label, hyp = "negation", "contradiction", flip_negation(target, rng)
        elif roll < 0.69:
            kind, label, hyp = "entity_order_swap", "contradiction", swap_within(target, rng)
        elif roll < 0.81:
            outside = self._outside(di, window)
            if outside:
                kind, label, hyp = "on_topic_unsupported", "neutral", rng.choice(outside)
        elif roll < 0.84:
            kind, label, hyp = "off_topic", "neutral", rng.choice(self.docs[other_di].sentences())
        elif roll < 0.90:
            outside = self._outside(di, window) or self.docs[other_di].sentences()
            kind, label, hyp = "added_detail", "neutral", add_detail(target, rng.choice(outside), rng)
        elif roll < 0.96:
            outside = self._outside(di, window) or self.docs[other_di].sentences()
            kind, label, hyp = "conjoined_unsupported", "neutral", conjoin_unsupported(target, rng.choice(outside))
        else:
            present = set(_entities(premise))
            spans = [e for e in self._entities[di] if e not in present and e not in premise and len(e.split()) <= 4]
            if spans:
                kind, label, hyp = "short_unsupported", "neutral", rng.choice(spans)
        if not hyp:
            return None
        return Pair(premise=premise, hypothesis=hyp, label=label, kind=kind)

    def _reworded(self, premise: str, window: list[str], rng: random.Random) -> Pair | None:
        """A window sentence reworded (entailment) or given a minimal wrong twin of the same surface change
        (contradiction): see `rewordings`. Two in three are positives — rewordings are what the judge must learn."""
        positive = rng.random() < 0.67
        for target in rng.sample(window, len(window)):
            made = reword_any(target, rng, positive=positive)
            if made:
                kind, hyp = made
                return Pair(premise=premise, hypothesis=hyp, label="entailment" if positive else "contradiction",
                            kind=f"reword_{kind}")
        return None

    def generate(self, n: int) -> list[Pair]:
        out: list[Pair] = []
        tries = 0
        while len(out) < n and tries < n * 20:
            tries += 1
            pair = self.one()
            if pair is not None:
                out.append(pair)
        return out
