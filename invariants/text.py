"""Text helpers shared by the NLI invariants: sentence spans, token windows over context, lexical relevance.

Sentences come from pysbd (a rule-based segmenter that knows abbreviations, decimals, initials), run per line so
bullets and line-separated items stay apart; offsets are recovered against the original text so findings point at
exact character spans. Context windows are sentence-aligned and overlap, so a claim whose support straddles a window
edge still finds one window holding all of it.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

_WORD = re.compile(r"[A-Za-z0-9]+(?:[.,'][A-Za-z0-9]+)*")
# "Allende.Augusto": two passages glued without a space; split there before pysbd sees it
_GLUED = re.compile(r"(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])")
STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from as is are was were be been being am do does did
has have had having it its it's this that these those there their them they he she his her him we our us you your i me
my mine what which who whom whose when where why how not no nor so than too very can could should would will shall may
might must also just only about into over under again further once here all any both each few more most other some such
own same s t don doesn didn isn wasn weren aren hasn haven hadn won wouldn shouldn couldn up down out off through during
before after above below between because while until against among per via yes
""".split())


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Window:
    """A sentence-aligned chunk of one passage; `start`/`end` are char offsets into that passage's text."""

    passage_index: int
    passage_id: str
    text: str
    start: int
    end: int
    tokens: int


if TYPE_CHECKING:
    import pysbd

_local = threading.local()


def segmenter() -> "pysbd.Segmenter":
    """This thread's pysbd segmenter: pysbd keeps per-call state on the instance, so one shared across threads
    (checks run in worker threads) returns wrong sentence boundaries under concurrency."""
    seg = getattr(_local, "segmenter", None)
    if seg is None:
        import pysbd

        seg = _local.segmenter = pysbd.Segmenter(language="en", clean=False)
    return seg


def split_sentences(text: str, *, cache: bool = True) -> list[Span]:
    """Sentences of `text` with exact char offsets (end exclusive, surrounding whitespace excluded).

    Cached by text: pysbd costs ~1 ms a sentence (85 ms for a 2,000-token context), and retrieved passages recur
    across requests, so a passage is segmented once per process while it stays among the recent ones. `cache=False`
    for text that will not recur (a streamed response re-split as it grows), so it does not push passages out."""
    return list(_split_cached(text) if cache else _split(text))


@functools.lru_cache(maxsize=4096)
def _split_cached(text: str) -> tuple[Span, ...]:
    return _split(text)


def _split(text: str) -> tuple[Span, ...]:
    seg = segmenter()
    out: list[Span] = []
    for block in re.finditer(r"[^\n]+", text):
        cuts = [0] + [m.start() for m in _GLUED.finditer(block.group(0))] + [len(block.group(0))]
        for a, b in zip(cuts, cuts[1:], strict=False):
            base = block.start() + a
            piece = text[base:block.start() + b]
            if not piece.strip():
                continue
            cursor = 0
            for sent in seg.segment(piece):
                s = sent.strip()
                if not s:
                    continue
                i = piece.find(s, cursor)
                if i < 0:
                    continue
                out.append(Span(s, base + i, base + i + len(s)))
                cursor = i + len(s)
    return tuple(out)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _stem(w: str) -> str:
    for suf in ("'s", "ies", "es", "s"):
        if len(w) > 4 and w.endswith(suf):
            return w[: -len(suf)] + ("y" if suf == "ies" else "")
    return w


def content_words(text: str) -> list[str]:
    return [_stem(w) for w in words(text) if w not in STOPWORDS]


def coverage(sentence: str, context: str | set[str]) -> float:
    """Share of the sentence's content words that occur in the context (1.0 when it has none)."""
    cw = content_words(sentence)
    if not cw:
        return 1.0
    vocab = context if isinstance(context, set) else set(content_words(context))
    return sum(w in vocab for w in cw) / len(cw)


def make_windows(passages: Sequence[tuple[str, str]], count_tokens: Callable[[str], int], window_tokens: int = 128,
                 stride_tokens: int = 64) -> list[Window]:
    """Packs each passage's sentences into windows of <= `window_tokens`, starting a new one every ~`stride_tokens`.

    A single sentence longer than a window is cut into word chunks of about `window_tokens`, overlapping by half.
    """
    windows: list[Window] = []
    for pi, (pid, text) in enumerate(passages):
        units = _units(text, count_tokens, window_tokens)
        i = 0
        while i < len(units):
            j, total = i, 0
            while j < len(units) and (j == i or total + units[j][2] <= window_tokens):
                total += units[j][2]
                j += 1
            a, b = units[i][0], units[j - 1][1]
            windows.append(Window(pi, pid, text[a:b], a, b, total))
            if j >= len(units):
                break
            advanced, k = 0, i
            while k < j - 1 and advanced < stride_tokens:
                advanced += units[k][2]
                k += 1
            i = max(k, i + 1)
    return windows


def _units(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of each sentence of `text`; a sentence longer than `max_tokens` is cut into word chunks of
    about `max_tokens`, overlapping by half."""
    units: list[tuple[int, int, int]] = []
    for s in split_sentences(text):
        n = count_tokens(s.text)
        if n <= max_tokens:
            units.append((s.start, s.end, n))
            continue
        toks = list(re.finditer(r"\S+", s.text))
        per = max(1, int(len(toks) * max_tokens / n))
        step = max(1, per // 2)
        for i in range(0, len(toks), step):
            chunk = toks[i:i + per]
            a, b = s.start + chunk[0].start(), s.start + chunk[-1].end()
            units.append((a, b, count_tokens(text[a:b])))
            if i + per >= len(toks):
                break
    return units


def sentence_units(passages: Sequence[tuple[str, str]], count_tokens: Callable[[str], int],
                   max_tokens: int = 128) -> list[Window]:
    """Each sentence of each passage as a `Window` of its own (a sentence over `max_tokens` cut into word chunks, as
    `make_windows` does): the units premises are assembled from when they are made of the most relevant sentences."""
    return [Window(pi, pid, text[a:b], a, b, n) for pi, (pid, text) in enumerate(passages)
            for a, b, n in _units(text, count_tokens, max_tokens)]


class Bm25:
    """Okapi BM25 over a handful of windows: cheap relevance to pick which windows a sentence is checked against."""

    def __init__(self, docs: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.tfs = [Counter(content_words(d)) for d in docs]
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = (sum(self.lens) / len(self.lens)) if self.lens else 0.0
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {w: math.log(1 + (n - d + 0.5) / (d + 0.5)) for w, d in df.items()}
        self.k1, self.b = k1, b

    def scores(self, query: str) -> list[float]:
        q = sorted(set(content_words(query)))  # a fixed summation order: equal scores tie the same way in every process
        out = []
        for tf, n in zip(self.tfs, self.lens, strict=True):
            s = 0.0
            for w in q:
                f = tf.get(w, 0)
                if f:
                    s += self.idf[w] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * n / (self.avg or 1)))
            out.append(s)
        return out

    def top_k(self, query: str, k: int) -> list[int]:
        sc = self.scores(query)
        return sorted(range(len(sc)), key=lambda i: (-sc[i], i))[:k]



class SentencePremises:
    """The premises a claim is read against when they are made of sentences (`premise: sentences`), as pure
    functions of the context's sentence units: the entailment check scores exactly these, and the judge's training
    groups are built from them, so the model learns on the premises it is shown in production.

    `first`: the most relevant sentences (BM25, then document order among them) that fit in `budget` tokens;
    `around`: the best sentence with its neighbours in its passage (a pronoun's antecedent, a list's heading);
    `rest`: the next most relevant sentences, none of `first`."""

    def __init__(self, units: Sequence[Window], budget: int, top_k: int = 3) -> None:
        self.units, self.budget = units, budget
        self.depth = max(4 * top_k, 12)
        self.bm25 = Bm25([u.text for u in units]) if units else None

    def ranked(self, claim: str) -> list[int]:
        return self.bm25.top_k(claim, self.depth) if self.bm25 is not None else []

    def assemble(self, ranked: Sequence[int], skip: frozenset[int] | set[int] = frozenset()) -> list[int]:
        """The units of `ranked` (in its order, none of `skip`) that fit in `budget` together; the first one always
        (a unit is at most `budget` long)."""
        budget, chosen = self.budget, []
        for i in ranked:
            if i in skip:
                continue
            if not chosen or budget - self.units[i].tokens >= 0:
                chosen.append(i)
                budget -= self.units[i].tokens
            if budget <= 0:
                break
        return chosen

    def around(self, unit: int) -> list[int]:
        """`unit` and its neighbours in its passage (before, after, before, ...) while they fit in `budget`."""
        w = self.units
        chosen, budget, lo, hi = [unit], self.budget - w[unit].tokens, unit - 1, unit + 1
        while budget > 0:
            grew = False
            for j in (lo, hi):
                if 0 <= j < len(w) and w[j].passage_index == w[unit].passage_index and w[j].tokens <= budget \
                        and j not in chosen:
                    chosen.append(j)
                    budget -= w[j].tokens
                    grew = True
            lo, hi = lo - 1, hi + 1
            if not grew:
                break
        return chosen

    def text(self, units: Sequence[int]) -> str:
        w = self.units
        return " ".join(w[i].text for i in sorted(units, key=lambda i: (w[i].passage_index, w[i].start)))

    def all_for(self, claim: str) -> list[str]:
        """Every distinct premise the check may score `claim` against without the embedding's pick: `first`, then
        (when `first` does not decide it) `around` its best sentence and `rest` — in that order."""
        order = self.ranked(claim)
        if not order:
            return []
        first = self.assemble(order)
        premises = [self.text(first), self.text(self.around(first[0]))]
        rest = self.assemble(order, set(first))
        if rest:
            premises.append(self.text(rest))
        return list(dict.fromkeys(premises))


# ----------------------------------------------------------------- non-claims (entailment, self_consistency)

_PLEASANTRY = re.compile(  # only when the whole sentence is short: "Hello Kitty was created in 1974." is a claim
    r"^\W*(?:(?:hi|hello|hey|greetings|good (?:morning|afternoon|evening))(?=\W*$|\s*[,!]|\s+there\b)"
    r"|thanks?(?! to)|thank you|you'?re welcome|sure|certainly|of course|absolutely|okay|ok|(?:great|good) question|(?:i )?hope (?:this|that|it) helps"
    r"|glad (?:i could|to) help|happy to help|(?:please )?(?:let me know|feel free)|is there anything else)\b",
    re.IGNORECASE,
)
_ABSTENTION = re.compile(
    r"^\W*(?:i(?:'m| am) (?:not sure|unsure|sorry|afraid)"
    r"|i (?:do not|don'?t|cannot|can'?t|could ?n[o']t) (?:know|find|say|tell|answer|determine|confirm|see)"
    r"|(?:the )?(?:provided )?(?:context|passages?|documents?|sources?|text) (?:does|do)(?: not|n'?t) "
    r"(?:say|mention|contain|provide|specify|state|include)"
    r"|(?:there is|there's) no (?:information|mention)|no information (?:is|was) (?:given|provided|available))",
    re.IGNORECASE,
)


def is_non_claim(sentence: str) -> bool:
    """The documented skip rule: text that asserts nothing checkable against the context."""
    s = sentence.strip()
    if not s or s.endswith("?"):
        return True
    if s.endswith(":") and len(s.split()) <= 12:
        return True
    if not content_words(s):
        return True
    if len(s.split()) <= 8 and _PLEASANTRY.match(s):
        return True
    return bool(_ABSTENTION.match(s))
