"""Sentences of a response that arrives in pieces: the splitter behind the server's `CheckGeneration`.

`SentenceStream.feed(delta)` returns the sentences that became final with that piece of text, `close()` the rest.
Together they are the sentences `claim_sentences(full_text, passages)` gives the unary checks — the same spans, the
same claim text up to whitespace — wherever the pieces were cut: mid-word, mid-marker (``[1`` + ``2]``), mid-number
(``3.`` + ``5``), mid-e-mail (``jane@exa`` + ``mple.com``). It is the unary splitter itself, run again on the part of
the response whose sentences are not final yet (the *open region*) as text arrives.

**Hold-back rule.** A sentence is final only when the text after it proves where it ends:

- a line break after it (sentences never cross a line; the unary rule too);
- a certain boundary: ``.``, ``!`` or ``?`` after a plain word (not an abbreviation, an initial or a number; quotes
  and brackets closed), then whitespace and the first two letters of a capitalised word (``in 1889. Th``): the cases
  the citation segmenter decides without pysbd;
- or two complete words of the text after it, each followed by whitespace: pysbd looks no further ahead.
Only a line break proves a sentence that does not end with an end mark (pysbd ends some there, "(meta data) TITLE",
and takes it back when more text comes), or one while a quote or bracket opened in the region is still open (pysbd
keeps quoted sentences together).

Citation markers are read with the context of their line (its start, an open code fence or maths block, a "Sources:"
heading above it), as `strip_markers` reads them in the whole response.

Cost: the region is split again only when the new text could prove something (an end mark, closing quote or bracket,
or line break near the end); a region longer than `max_region_chars` (a line of thousands of characters with no
provable end) waits for its line break or the close: its sentences come late, never different.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from guardrail_invariants.citations import _ABBREVIATIONS as ABBREVIATIONS
from guardrail_invariants.citations import (
    _RE_FENCE_LINE,
    _RE_SECTION_HEADER,
    CitationOptions,
    claim_text,
    link_bounds,
    strip_markers,
)
from guardrail_invariants.text import Span, split_sentences
from guardrail_invariants.types import Passage

_TRIGGER = re.compile(r"[.!?\u2026\n\"\u201d)\]]")
_TRIGGER_LOOKBACK = 48  # chars before a new piece where an end mark may still be waiting for its proof
_COMPLETE_WORD = re.compile(r"[^\s]*[^\W_][^\s]*\s")
_LAST_WORD = re.compile(r"([^\W\d_]+)[\"')\]\u201d\u2019*_]*$")
_MULTILINE = ("```", "~~~", "$$", "\\[", "\\(")


class SentenceStream:
    """Incremental `claim_sentences` over a response given in pieces (see the module doc)."""

    def __init__(self, passages: Sequence[Passage] = (), options: CitationOptions | None = None, *,
                 max_region_chars: int = 4000) -> None:
        self.passages = tuple(passages)
        self.options = options
        self.max_region_chars = max_region_chars
        self.text = ""
        self.region = 0  # start of the open region: every sentence before it has been given out
        self.count = 0  # sentences given out
        self.following = 0  # where the text that belongs to the last sentence given out ends (its trailing markers):
        # the next sentence's start, the line break, or the end of the response
        self.closed = False
        self._base_state: tuple[int, str] = (0, "")  # (line start, the prefix that restores its marker context)

    # -------------------------------------------------------------------------------------------------- API

    def feed(self, delta: str) -> list[Span]:
        """Appends a piece of the response; returns the sentences it made final, in order."""
        if self.closed:
            raise RuntimeError("the response was closed")
        if not delta:
            return []
        before = len(self.text)
        self.text += delta
        out = self._complete_lines()
        start = max(self.region, before - _TRIGGER_LOOKBACK)
        if len(self.text) - self.region <= self.max_region_chars and _TRIGGER.search(self.text, start):
            out += self._open_line(final=False)
        return out

    def close(self) -> list[Span]:
        """The response is complete: every sentence not given out yet."""
        if self.closed:
            return []
        self.closed = True
        return self._complete_lines() + self._open_line(final=True)

    def pending_start(self) -> int:
        """Where the first sentence not given out yet may start (the open region)."""
        return self.region

    def tentative(self) -> Span | None:
        """The sentence the next piece will most likely make final: the text ends with an end mark after a plain
        word ("... 330 m tall.") and it is the only sentence not given out yet. Not a promise ("3." may become "3.5",
        "[1]" may follow): a caller may start work on it early and must check it against what `feed` gives out."""
        text = self.text
        if self.closed or not text or len(text) - self.region > self.max_region_chars:
            return None
        body = text.rstrip("\"')]\u201d\u2019*_")
        if not body or body[-1] not in ".!?" or not _plain_end(text[self.region :]):
            return None
        spans = self._split(self.region, len(text))
        if len(spans) != 1 or spans[0].end != len(text):
            return None
        return spans[0]

    # -------------------------------------------------------------------------------------------------- splitting

    def _complete_lines(self) -> list[Span]:
        """Every sentence of the lines that a line break has closed: final whatever comes next."""
        cut = self.text.rfind("\n", self.region)
        if cut < 0:
            return []
        out = self._split(self.region, cut)
        self.region = cut + 1
        if out:
            self.following = cut
        return self._emit(out)

    def _open_line(self, final: bool) -> list[Span]:
        end = len(self.text)
        spans = self._split(self.region, end)
        if final:
            if spans:
                self.region = self.following = end
            return self._emit(spans)
        view_end = end
        done = 0
        for i in range(len(spans) - 1):
            if not self._proven(spans[i], spans[i + 1], view_end):
                break
            done = i + 1
        if done:
            self.region = spans[done - 1].end
            self.following = spans[done].start
        return self._emit(spans[:done])

    def _emit(self, spans: list[Span]) -> list[Span]:
        self.count += len(spans)
        return spans

    def _split(self, start: int, end: int) -> list[Span]:
        """`claim_sentences` of text[start:end], markers read in the context of the whole line."""
        base = self.text.rfind("\n", 0, start) + 1
        prefix = self._prefix(base)
        context = prefix + self.text[base:end]
        view = strip_markers(context, self.passages, self.options)
        self._view = (view, len(prefix) - base)  # the view and the shift from response offsets into it
        skip = len(prefix) + start - base
        spans = split_sentences(view[skip:], cache=False)
        marked = view is not context
        out = []
        for s in spans:
            if not s.text.strip():
                continue
            if not marked:
                out.append(Span(s.text, start + s.start, start + s.end))
                continue
            a, b = link_bounds(context, view, skip + s.start, skip + s.end)
            out.append(Span(claim_text(s.text), start + a - skip, start + b - skip))
        return out

    def _proven(self, sentence: Span, following: Span, end: int) -> bool:
        """Whether the text after `sentence` proves it ends where the split says (see the module doc)."""
        view, shift = self._view
        gap = view[sentence.end + shift : following.start + shift]
        if "\n" in gap:
            return True
        body = view[sentence.start + shift : sentence.end + shift].rstrip("\"')]\u201d\u2019*_")
        if not body or body[-1] not in ".!?\u2026":
            return False  # pysbd also ends sentences elsewhere ("(meta data) TITLE"), and takes them back later
        region = view[self.region + shift : following.start + shift]
        if region.count('"') % 2 or region.count("(") > region.count(")") or (
                region.count("\u201c") > region.count("\u201d")):
            return False
        after = view[following.start + shift : end + shift]
        if gap and gap.isspace() and _certain(view[sentence.start + shift : sentence.end + shift], after):
            return True
        return len(_COMPLETE_WORD.findall(after, 0)) >= 2

    def _prefix(self, base: int) -> str:
        """Lines that put a line starting at `base` in the marker context it has in the whole response: an open code
        fence or maths block, a "Sources:" heading it sits under. Empty for plain prose (the usual case)."""
        if self._base_state[0] == base:
            return self._base_state[1]
        before = self.text[:base]
        prefix = ""
        if any(token in before for token in _MULTILINE):
            prefix = _open_blocks(before)
        if ":" in before:
            prefix += _section_heading(before)
        self._base_state = (base, prefix)
        return prefix


def _certain(sentence: str, after: str) -> bool:
    """An end nothing after it can undo: [.!?] after a plain word, then a capitalised word ("1889. Th")."""
    if len(after) < 2 or not (after[0].isupper() and after[1].islower()):
        return False
    return _plain_end(sentence)


def _plain_end(sentence: str) -> bool:
    """The sentence ends with one end mark after a plain word (not an abbreviation, initial or number), quotes and
    brackets closed."""
    body = sentence.rstrip("\"')]\u201d\u2019*_")
    if len(body) < 2 or body[-1] not in ".!?" or body[-2] in ".!?\u2026":
        return False
    if sentence.count('"') % 2 or sentence.count("(") != sentence.count(")"):
        return False
    if body[-1] != ".":
        return True
    word = _LAST_WORD.search(body[:-1])
    if word is None or word.end() != len(body) - 1:
        return False
    w = word.group(1)
    return len(w) >= 2 and w.lower() not in ABBREVIATIONS and not (w.isupper() and len(w) <= 4)


def _open_blocks(text: str) -> str:
    """Opening lines of the code fence / maths blocks still open at the end of `text`."""
    out = ""
    opened: str | None = None
    for m in _RE_FENCE_LINE.finditer(text):
        fence = m.group(1)
        if opened is None:
            opened = fence
        elif fence[0] == opened[0] and len(fence) >= len(opened) and not m.group(2).strip():
            opened = None
    if opened is not None:
        return opened + "\n"
    for opener, closer in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)")):
        pos, open_at = text.find(opener), -1
        while pos >= 0:
            close = text.find(closer, pos + len(opener))
            if close < 0:
                open_at = pos
                break
            pos = text.find(opener, close + len(closer))
        if open_at >= 0:
            out += opener + "\n"
    return out


def _section_heading(text: str) -> str:
    """A "Sources:" heading line when the line after `text` still sits under one (reference-list entries)."""
    in_section = False
    for line in text.split("\n"):
        stripped = line.strip()
        header = _RE_SECTION_HEADER.match(line)
        if header and not line[header.end() :].strip():
            in_section = True
        elif stripped and not (stripped[0] in "[-*+" or stripped[0].isdigit() or "://" in stripped):
            in_section = False
    return "Sources:\n" if in_section else ""
