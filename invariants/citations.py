"""Citation markers in an LLM response: parse them, resolve them against the context, attach them to sentences.

Pure functions (no I/O, no models), so the online invariant, the offline evals and the NLI support check
("a cited passage must entail the sentence that cites it") all read citations the same way.

Deliberate decisions (each one is tested in tests/test_citations.py):

- Markers inside code (fenced blocks, inline code spans), math (``$x[1]$``, ``\\[...\\]``) and images are ignored:
  there ``a[1]`` is an index, not a citation. In prose, ``word[1]`` *is* a citation (Perplexity writes ``France[1]``),
  but a list literal after ``=``, ``(``, ``{`` or a quoted key (``x = [1, 2]``, ``{"ids": [3]}``) is data.
- ``<sup>1</sup>`` / ``<sup>[1]</sup>`` (HTML superscripts) count as numeric markers; Unicode superscripts do not
  (``x²`` is maths).
- Bracketed words are citations only when they look like references: numbers and ranges (``[1]``, ``[1, 3]``,
  ``[1-3]``), an explicit prefix (``[source: doc-7]``), an exact passage id, or ``<label><number>`` where the label
  is a source word (doc, source, passage, ref, ...) or the alphabetic prefix of a passage id (``kb-12`` when ids
  look like ``kb-N``). So ``[x]`` checkboxes, ``[sic]`` and ``[COVID-19]`` are not citations.
- Link *text* is never a citation: ``[1](https://a.org)`` is one citation, of the URL. Images are not citations.
- What a judge reads of a sentence (`strip_markers`, `claim_sentences`) has no markers, and a citation link's words go
  with it where they only cite: text that only names a source (``[1](url)``, ``[doc-7](url)``), a parenthesis of
  nothing but citations (``... tall ([Eiffel Tower](url)).``), a link after the sentence's end. Link words that are
  content stay (``[the Louvre](https://...) is in Paris``); see `marker_spans`.
- Ranges expand to one citation per index; a reversed range or one wider than ``max_range`` is a single citation
  that does not resolve (it is never expanded, so ``[1-100000]`` costs nothing).
- A reference list (``[1]: https://...``, ``[^1]: ...``, ``[1] https://...`` at a line start, or numbered entries
  under a "Sources:" heading) *defines* its labels: each entry is one citation of its URL (or title), and body
  markers with that label resolve through the entry. An entry whose URL matches a passage never dangles, whatever
  its label; an entry without URL or matching title defines nothing and is resolved like a plain marker.
- Indices are 1-based, for every numeric format (including ``【3:0†source】``: the first number).
- Resolution order for a label: reference-list entry, exact passage id (case-insensitive; then ignoring separators,
  so ``[Doc 1]`` finds ``doc-1``), 1-based index, for
  ``<label><number>`` the index *only* when no passage id has that label (``doc-7`` is an id when ids are ``doc-N``),
  and last an exact passage title (``[source: Paris - Wikipedia]``).
- URLs match ``Passage.url`` after normalization: scheme, ``www.``, default ports, trailing slash, fragment,
  percent-encoding, query order and tracking parameters (``utm_*``, ``fbclid``, ...) are ignored.
- A citation belongs to the sentence that contains it; a marker between two sentences belongs to the one before
  (``France.[1] It ...``); a sentence span never starts or ends with a marker. A marker alone on its line belongs to
  the sentence before, except a link or URL: a line of bare links supports nothing (span -1, -1). ``<cite>`` tags
  belong to the text they wrap. Reference-list entries belong to no sentence (-1, -1): they support nothing alone.
- Sentences never cross a line break (pysbd's rule too); markdown bullets, numbers and ``#`` are not part of them.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from pysbd.lang.english import English
from pydantic import Field, field_serializer, field_validator

from guardrail_invariants.base import InvariantOptions
from guardrail_invariants.text import Span, segmenter, split_sentences
from guardrail_invariants.types import Passage

Format = Literal["numeric", "ids", "footnotes", "oai", "cite_tags", "markdown_links", "bare_urls"]
ALL_FORMATS: frozenset[str] = frozenset(Format.__args__)  # type: ignore[attr-defined]

SOURCE_LABELS = frozenset(
    "source sources src ref refs reference references doc docs document documents passage passages context "
    "chunk chunks result results snippet snippets citation citations cite".split()
)
TRACKING_PARAMS = frozenset(
    "fbclid gclid dclid gbraid wbraid msclkid yclid twclid igshid mc_cid mc_eid _hsenc _hsmi ref ref_src "
    "spm si srsltid".split()
)


class CitationOptions(InvariantOptions):
    """How citations are recognised and what counts as a claim. Every field has a safe default."""

    formats: frozenset[Format] = Field(default=ALL_FORMATS, description="built-in marker formats that are on")
    extra_patterns: tuple[str, ...] = Field(
        default=(),
        description="extra regexes; each needs a named group `ref` (one reference, or several split on , or ;)",
    )
    max_range: int = Field(default=20, ge=1, le=1000, description="widest [a-b] range that is expanded")
    reference_lists: bool = Field(default=True, description="treat 'Sources: [1] https://...' entries as definitions")
    require_citations: bool = Field(default=False, description="every claim sentence must carry a citation")
    citation_scope: Literal["sentence", "paragraph"] = Field(
        default="sentence",
        description="where a claim's citation may sit when require_citations is on (paragraph = the same line)",
    )
    min_claim_words: int = Field(default=4, ge=1, description="sentences with fewer words are not claims")

    @field_serializer("formats")
    def _sorted(self, formats: frozenset[Format]) -> list[str]:
        """A stable order, so `guardrail config` prints the same file every run."""
        return sorted(formats)

    @field_validator("extra_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"extra_patterns: {pattern!r} does not compile: {exc}") from None
            if "ref" not in compiled.groupindex:
                raise ValueError(f"extra_patterns: {pattern!r} has no named group (?P<ref>...)")
        return patterns


@dataclass(frozen=True, slots=True)
class Citation:
    """One reference in the response. A marker like ``[1, 3]`` yields one Citation per reference, same span.

    `passage_index` is 0-based into ``Case.context`` (None when the citation dangles, and then `problem` says
    why). `sentence_start/end` is the span of the claim the citation supports, or -1/-1 for reference-list entries.
    """

    marker: str
    start: int
    end: int
    ref: str
    format: str
    sentence_start: int
    sentence_end: int
    passage_index: int | None
    passage_id: str | None
    via: str
    problem: str

    @property
    def resolved(self) -> bool:
        return self.passage_index is not None


@dataclass(frozen=True, slots=True)
class Sentence:
    start: int
    end: int
    block: int
    claim: bool


@dataclass(frozen=True, slots=True)
class Analysis:
    citations: tuple[Citation, ...]
    sentences: tuple[Sentence, ...]

    def support_pairs(self) -> list[tuple[int, int, int]]:
        """Distinct (sentence start, sentence end, passage index) to check for support: "does passage P entail the
        sentence that cites it?". Dangling citations and reference-list entries have nothing to check."""
        pairs = ((c.sentence_start, c.sentence_end, c.passage_index) for c in self.citations
                 if c.passage_index is not None and c.sentence_start >= 0)
        return list(dict.fromkeys(pairs))  # type: ignore[arg-type]

    def uncited_claims(self, scope: str = "sentence") -> list[Sentence]:
        """Claim sentences no citation attaches to (overlap counts: a ``<cite>`` may wrap part of a sentence).

        With scope "paragraph", a citation anywhere in the same paragraph (line) covers the sentence.
        """
        spans = sorted({(c.sentence_start, c.sentence_end) for c in self.citations if c.sentence_start >= 0})
        cited = [s for s in self.sentences if any(a < s.end and s.start < b for a, b in spans)]
        if scope == "paragraph":
            blocks = {s.block for s in cited}
            return [s for s in self.sentences if s.claim and s.block not in blocks]
        covered = {(s.start, s.end) for s in cited}
        return [s for s in self.sentences if s.claim and (s.start, s.end) not in covered]


# --------------------------------------------------------------------------------------------------- patterns

_NUM = r"\d{1,6}(?:\s*[-\u2013\u2014]\s*\d{1,6})?"
_RE_NUMERIC = re.compile(rf"\[\s*({_NUM}(?:\s*[,;]\s*{_NUM})*)\s*\](?!\()")
_RE_SUP = re.compile(rf"<sup>\s*\[?\s*({_NUM}(?:\s*[,;]\s*{_NUM})*)\s*\]?\s*</sup>", re.IGNORECASE)
_RE_FOOTNOTE = re.compile(r"\[\^([^\]\s^]{1,64})\^?\](?!\()")
_RE_OAI = re.compile(r"\u3010(\d{1,6})(?::(\d{1,6}))?\u2020([^\u3011\n]{0,200})\u3011")
_RE_CITE_OPEN = re.compile(r"<cite\b([^<>]{0,300})>", re.IGNORECASE)
_RE_CITE_CLOSE = re.compile(r"</cite\s*>", re.IGNORECASE)
_RE_CITE_ATTR = re.compile(r"""\b(index|id|source|ref|doc)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_URL_BODY = r"[^\s()<>]*(?:\([^\s()<>]*\)[^\s()<>]*)*"
_RE_MD_LINK = re.compile(
    r"(?<!!)\[((?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]\(\s*<?((?:https?://|www\.)" + _URL_BODY + r")>?"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'))?\s*\)",
    re.IGNORECASE,
)
_RE_BARE_URL = re.compile(r"(?<![\w@/.])(?:https?://|www\.)[^\s<>\"'`\[\]{}|\\^\u3011]+", re.IGNORECASE)
_RE_BRACKET = re.compile(r"\[\s*+([^\[\]\n]{1,200}?)\s*\](?!\()")  # \s*+: no backtracking into a long blank run
_RE_EXPLICIT = re.compile(rf"^({'|'.join(sorted(SOURCE_LABELS))})\s*[:#]\s*(.+)$", re.IGNORECASE | re.DOTALL)
_RE_LABELED = re.compile(r"^([A-Za-z][A-Za-z_]*?)[\s_#:.-]*(\d{1,6})$")
_RE_RANGE = re.compile(r"^(\d+)\s*[-\u2013\u2014]\s*(\d+)$")
_RE_SPLIT_REFS = re.compile(r"\s*[,;]\s*")
_RE_ID_SEPARATORS = re.compile(r"[\s_#:.\-]+")
_RE_ID_PREFIX = re.compile(r"^([A-Za-z][A-Za-z_]*?)[\s_#:.-]*\d+$")

_RE_FENCE_LINE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})(.*)$", re.MULTILINE)
_RE_BACKTICKS = re.compile(r"`+")
_RE_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)[^$\n]*?(?<=\S)\$(?!\d)")
_RE_IMAGE = re.compile(r"!\[[^\[\]\n]*\]\([^()\n]*\)")

_RE_SECTION_HEADER = re.compile(
    r"^\s*(?:#{1,6}\s*)?[*_]{0,2}\s*(?:sources?|references?|citations?|footnotes?|bibliography|works cited|links|"
    r"learn more|read more|further reading|see also)"
    r"(?=[\s:*_]|$)\s*:?\s*[*_]{0,2}\s*:?\s*",
    re.IGNORECASE,
)
_RE_ENTRY_PREFIX = re.compile(r"^\s*(?:[-*+>]\s+|\d+[.)]\s+)?$")
_RE_NUMBERED_ENTRY = re.compile(r"^[ \t]*(?:[-*+][ \t]+)?(\d{1,6})[.)][ \t]+", re.MULTILINE)
_RE_ENTRY_SEPARATORS = re.compile(r"^[\s,;|]*$")
# stripped with str.lstrip/rstrip, not a regex: `[...]+$` is quadratic on a long run of these characters (a 40 KB title
# of dashes took 3 s of the event loop)
_TITLE_LEAD = " \t\n\r\f\v:-\u2013\u2014*_\"'\u201c\u201d()"
_TITLE_TAIL = _TITLE_LEAD + ",."

_RE_LINE_LEAD = re.compile(r"^[ \t]*(?:(?:[-*+]|\d{1,3}[.)]|#{1,6}|>)[ \t]+)+")
_RE_CANDIDATE = re.compile(r"([.!?\u2026]+)([\"')\]\u201d\u2019*_]*)\s+(?=\S)")
_MAX_AMBIGUOUS_CHARS = 500
_MAX_AMBIGUOUS = 6
_PYSBD_BUDGET_CHARS = 6000
_RE_INLINE_LIST = re.compile(r"(?:^|\s)\d{1,2}[.)]\s")
_ABBREVIATIONS = frozenset(a.strip().lower() for a in English.Abbreviation.ABBREVIATIONS)
_PREPOSITIVE = frozenset(a.strip().lower() for a in English.Abbreviation.PREPOSITIVE_ABBREVIATIONS)
_RE_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
_RE_NOT_CLAIM = re.compile(
    r"^[\W_]*(?:hi|hello|hey|greetings|thanks|thank you|you're welcome|you are welcome|sure|certainly|of course|"
    r"absolutely|great question|good question|i hope|hope this|let me know|please let me know|feel free|"
    r"happy to help|glad to help|is there anything|if you have any|if you need|as an ai|i'm an ai|i am an ai)\b",
    re.IGNORECASE,
)
_RE_URL_STRIP = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)|(?:https?://|www\.)\S+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?*_~'\"\u201d\u2019>"

_LABEL_FORMATS = frozenset({"numeric", "footnotes", "ids"})
# markdown link syntax `analyze` does not count as a citation (an anchor, a relative or non-web target): read as a
# link for the claim's text all the same (`marker_spans`)
_RE_OTHER_LINK = re.compile(r"(?<!!)\[([^\[\]\n]{0,200})\]\(\s*<?([^\s()<>]{1,500})>?\s*\)")
_RE_LINK_TAIL = re.compile(r"\]\([^\n]*?\)")  # from a link's closing bracket to its closing parenthesis
# a parenthesis that is empty once its markers are blanked, but for separators and a lead ("see", "source:")
# (atomic and possessive: linear time on a long blanked run without a closing parenthesis)
_RE_CITATION_PARENS = re.compile(
    r"\((?>\s*(?:see(?:\s+also)?|via|from|cf\.?)(?=\s))?(?>\s*(?:sources?|refs?|references?|citations?)\s*:?)?"
    r"(?>[\s,;&]|\band\b)*+\)", re.IGNORECASE)
_RE_NON_SPACE = re.compile(r"\S+")


# --------------------------------------------------------------------------------------------------- URLs


@functools.lru_cache(maxsize=4096)
def normalize_url(url: str) -> str:
    """A comparison key: same key iff two URLs name the same page for citation purposes."""
    text = url.strip().strip("<>")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = unquote(parts.path).rstrip("/")
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
    )
    return netloc + path + ("?" + urlencode(query) if query else "")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _trim_url(text: str) -> str:
    """Drops trailing punctuation and unbalanced closing brackets that belong to the prose, not the URL."""
    while text:
        last = text[-1]
        if last in _URL_TRAILING:
            text = text[:-1]
        elif last == ")" and text.count("(") < text.count(")"):
            text = text[:-1]
        else:
            break
    return text


# --------------------------------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class _Marker:
    start: int
    end: int
    format: str
    refs: list[str]
    priority: int
    claim: tuple[int, int] | None = None
    url: str = ""
    definition: bool = False
    title: str = ""
    mask_end: int = -1


@dataclass(slots=True)
class _Context:
    """Lookup tables over the passages of one case."""

    n: int
    ids: dict[str, int]
    loose_ids: dict[str, int]
    urls: dict[str, int]
    titles: dict[str, int]
    id_labels: frozenset[str]

    @classmethod
    def build(cls, passages: Sequence[Passage]) -> _Context:
        ids: dict[str, int] = {}
        loose: dict[str, int] = {}
        urls: dict[str, int] = {}
        titles: dict[str, int] = {}
        labels: set[str] = set()
        for i, p in enumerate(passages):
            if p.id:
                ids.setdefault(p.id.strip().lower(), i)
                loose.setdefault(_loose_id(p.id), i)
                ident = p.id.strip()
                # the regex needs a trailing digit; checking it first keeps a hostile id from backtracking for seconds
                m = _RE_ID_PREFIX.match(ident) if ident[-1:].isdigit() else None
                if m:
                    labels.add(m.group(1).lower())
            if p.url:
                urls.setdefault(normalize_url(p.url), i)
            if p.title.strip():
                titles.setdefault(_norm_title(p.title), i)
        return cls(len(passages), ids, loose, urls, titles, frozenset(labels))


def _labeled(text: str) -> re.Match[str] | None:
    """``doc-7`` -> (doc, 7). The trailing-digit check first: the regex backtracks quadratically on a long
    digit-less run of letters and separators."""
    return _RE_LABELED.match(text) if text[-1:].isdigit() else None


def _loose_id(text: str) -> str:
    """``Doc 1``, ``doc_1`` and ``DOC-1`` name the same passage."""
    return _RE_ID_SEPARATORS.sub("", text.lower())


def _norm_title(text: str) -> str:
    return " ".join(text.lstrip(_TITLE_LEAD).rstrip(_TITLE_TAIL).lower().split())


def _ignored_regions(text: str) -> list[tuple[int, int]]:
    """Code, maths and images, where bracketed numbers are not citations. Linear-time scanners (no backtracking)."""
    found: list[tuple[int, int]] = []
    if "```" in text or "~~~" in text:
        found += _fences(text)
    if "`" in text:
        found += _code_spans(text)
    if "$" in text:
        found += _delimited(text, "$$", "$$")
        found += [(m.start(), m.end()) for m in _RE_INLINE_MATH.finditer(text)]
    if "\\" in text:
        found += _delimited(text, "\\[", "\\]") + _delimited(text, "\\(", "\\)")
    if "![" in text:
        found += [(m.start(), m.end()) for m in _RE_IMAGE.finditer(text)]
    found.sort()
    regions: list[tuple[int, int]] = []
    for start, end in found:
        if regions and start < regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


def _fences(text: str) -> list[tuple[int, int]]:
    regions: list[tuple[int, int]] = []
    opened: tuple[int, str] | None = None
    for m in _RE_FENCE_LINE.finditer(text):
        fence = m.group(1)
        if opened is None:
            opened = (m.start(), fence)
        elif fence[0] == opened[1][0] and len(fence) >= len(opened[1]) and not m.group(2).strip():
            regions.append((opened[0], m.end()))
            opened = None
    if opened is not None:
        regions.append((opened[0], len(text)))
    return regions


def _code_spans(text: str) -> list[tuple[int, int]]:
    """Inline code: a run of n backticks up to the next run of exactly n on the same line."""
    runs = [(m.start(), m.end()) for m in _RE_BACKTICKS.finditer(text)]
    newlines = [i for i, ch in enumerate(text) if ch == "\n"] if "\n" in text else []
    line = [bisect.bisect_left(newlines, a) for a, _ in runs]
    by_length: dict[int, list[int]] = {}
    for k, (a, b) in enumerate(runs):
        by_length.setdefault(b - a, []).append(k)
    regions: list[tuple[int, int]] = []
    k = 0
    while k < len(runs):
        a, b = runs[k]
        same = by_length[b - a]
        j = bisect.bisect_right(same, k)
        if j < len(same) and line[same[j]] == line[k]:
            regions.append((a, runs[same[j]][1]))
            k = same[j] + 1
        else:
            k += 1
    return regions


def _delimited(text: str, opener: str, closer: str) -> list[tuple[int, int]]:
    regions: list[tuple[int, int]] = []
    pos = text.find(opener)
    while pos >= 0:
        end = text.find(closer, pos + len(opener))
        if end < 0:
            break
        regions.append((pos, end + len(closer)))
        pos = text.find(opener, end + len(closer))
    return regions


def _inside(regions: list[tuple[int, int]], pos: int) -> bool:
    i = bisect.bisect_right(regions, (pos, float("inf"))) - 1
    return i >= 0 and regions[i][0] <= pos < regions[i][1]


def _bracket_refs(content: str, ctx: _Context) -> list[str] | None:
    """The refs of a bracketed non-numeric marker, or None if the brackets are not a citation."""
    explicit = _RE_EXPLICIT.match(content)
    tokens = _RE_SPLIT_REFS.split(explicit.group(2) if explicit else content)
    tokens = [t for t in tokens if t]
    if not tokens:
        return None
    if explicit:
        return tokens
    for token in tokens:
        if token.lower() in ctx.ids:
            continue
        m = _labeled(token)
        if m and (m.group(1).lower() in SOURCE_LABELS or m.group(1).lower() in ctx.id_labels):
            continue
        return None
    return tokens


def _scan(text: str, options: CitationOptions, extra: tuple[re.Pattern[str], ...], ctx: _Context) -> list[_Marker]:
    on = options.formats
    found: list[_Marker] = []
    if "cite_tags" in on and "<" in text:
        for m in _RE_CITE_OPEN.finditer(text):
            refs: list[str] = []
            for attr in _RE_CITE_ATTR.finditer(m.group(1)):
                value = attr.group(2) if attr.group(2) is not None else attr.group(3)
                items = [v for v in _RE_SPLIT_REFS.split(value.strip()) if v]
                if attr.group(1).lower() == "index":
                    refs += [item.split("-")[0].strip() if re.match(r"^\d+-\d+$", item) else item for item in items]
                else:
                    refs += items
            if not refs:
                continue
            close = _RE_CITE_CLOSE.search(text, m.end())
            claim = (m.end(), close.start()) if close else None
            found.append(_Marker(m.start(), m.end(), "cite_tags", list(dict.fromkeys(refs)), 0, claim=claim))
    if "markdown_links" in on and "](" in text:
        for m in _RE_MD_LINK.finditer(text):
            found.append(_Marker(m.start(), m.end(), "markdown_links", [m.group(2)], 1, url=m.group(2)))
    if "oai" in on and "\u3010" in text:
        for m in _RE_OAI.finditer(text):
            label = m.group(3).strip()
            refs = [m.group(1)] if label.lower() in ("", "source", "sources") else [m.group(1), label]
            found.append(_Marker(m.start(), m.end(), "oai", refs, 2))
    if "footnotes" in on and "[^" in text:
        for m in _RE_FOOTNOTE.finditer(text):
            found.append(_Marker(m.start(), m.end(), "footnotes", [m.group(1)], 3))
    if "numeric" in on:
        rxs = ([_RE_NUMERIC] if "[" in text else []) + ([_RE_SUP] if "<sup" in text.lower() else [])
        for rx in rxs:
            for m in rx.finditer(text):
                if rx is _RE_NUMERIC and _looks_like_data(text, m.start()):
                    continue
                refs = [t for t in _RE_SPLIT_REFS.split(m.group(1)) if t]
                found.append(_Marker(m.start(), m.end(), "numeric", refs, 4))
    if "ids" in on and "[" in text:
        for m in _RE_BRACKET.finditer(text):
            refs = _bracket_refs(m.group(1), ctx)
            if refs is not None:
                found.append(_Marker(m.start(), m.end(), "ids", refs, 5))
    for rx in extra:
        for m in rx.finditer(text):
            refs = [t for t in _RE_SPLIT_REFS.split((m.group("ref") or "").strip()) if t]
            if refs and m.end() > m.start():
                found.append(_Marker(m.start(), m.end(), "custom", refs, 6))
    if "bare_urls" in on and ("://" in text or "www." in text.lower()):
        for m in _RE_BARE_URL.finditer(text):
            url = _trim_url(m.group(0))
            if len(url) > 8:
                found.append(_Marker(m.start(), m.start() + len(url), "bare_urls", [url], 7, url=url))
    return found


def _looks_like_data(text: str, pos: int) -> bool:
    """``x = [1, 2]``, ``f([1])``, ``{"ids": [3]}``: a list literal outside code is data, not a citation."""
    before = text[max(0, pos - 8) : pos].rstrip()
    return before.endswith(("=", "(", "{", '":', "':"))


def _sweep(found: list[_Marker], regions: list[tuple[int, int]]) -> list[_Marker]:
    """Keeps non-overlapping markers outside code/math: leftmost first, then longest, then by format priority."""
    found.sort(key=lambda mk: (mk.start, -(mk.end - mk.start), mk.priority))
    kept: list[_Marker] = []
    last_end = -1
    for mk in found:
        if mk.start < last_end or _inside(regions, mk.start):
            continue
        kept.append(mk)
        last_end = mk.end
    return kept


def _link_text(m: re.Match[str]) -> str:
    return m.group(1) or " "


def _line_bounds(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end < 0 else end


def _find_definitions(text: str, markers: list[_Marker], in_section: dict[int, bool]) -> list[_Marker]:
    """Turns reference-list entries into definition markers that absorb the URL (or title) that follows them."""
    out: list[_Marker] = []
    i = 0
    prev_def_line = -1
    prev_def_end = -1
    while i < len(markers):
        mk = markers[i]
        if mk.definition or mk.format not in _LABEL_FORMATS or len(mk.refs) != 1 or _RE_RANGE.match(mk.refs[0]):
            out.append(mk)
            i += 1
            continue
        line_start, line_end = _line_bounds(text, mk.start)
        prefix = text[line_start : mk.start]
        header = _RE_SECTION_HEADER.match(prefix)
        at_entry = (
            bool(_RE_ENTRY_PREFIX.match(prefix))
            or bool(header and _RE_ENTRY_PREFIX.match(prefix[header.end() :]))
            or (prev_def_line == line_start and _RE_ENTRY_SEPARATORS.match(text[prev_def_end : mk.start]) is not None)
        )
        if not at_entry:
            out.append(mk)
            i += 1
            continue
        j = i + 1
        body_end = line_end
        urls: list[_Marker] = []
        while j < len(markers) and markers[j].start < line_end:
            if not markers[j].url:
                body_end = markers[j].start
                break
            urls.append(markers[j])
            j += 1
        body = text[mk.end : body_end]
        colon = body.lstrip(" \t").startswith(":")
        if not (urls or colon or in_section.get(line_start, False) or header):
            out.append(mk)
            i += 1
            continue
        end = urls[0].end if urls else mk.end + len(body.rstrip())
        title = _RE_URL_STRIP.sub(_link_text, body)
        url = urls[0].url if urls else ""
        out.append(_Marker(mk.start, end, mk.format, mk.refs, mk.priority, url=url, definition=True, title=title,
                           mask_end=body_end))
        out.extend(u for u in urls[1:])
        prev_def_line, prev_def_end = line_start, end
        i = j
    return out


def _section_lines(text: str) -> dict[int, bool]:
    """Line start -> whether the line sits under a "Sources:"-style heading (until the first non-entry line)."""
    lines: dict[int, bool] = {}
    in_section = False
    pos = 0
    for line in text.split("\n"):
        stripped = line.strip()
        header = _RE_SECTION_HEADER.match(line)
        if header and not line[header.end() :].strip():
            in_section = True
        elif stripped and not (stripped[0] in "[-*+" or stripped[0].isdigit() or "://" in stripped):
            in_section = False
        lines[pos] = in_section
        pos += len(line) + 1
    return lines


def _numbered_entries(
    text: str, markers: list[_Marker], regions: list[tuple[int, int]], sections: dict[int, bool]
) -> list[_Marker]:
    """Numbered list entries ("1. [Title](url)") under a Sources heading define label 1 like "[1] url" does."""
    if not any(sections.values()):
        return markers
    by_start = {mk.start: k for k, mk in enumerate(markers)}
    starts = sorted(by_start)
    out = list(markers)
    drop: set[int] = set()
    for m in _RE_NUMBERED_ENTRY.finditer(text):
        line_start = m.start()
        if not sections.get(line_start) or _inside(regions, m.start(1)):
            continue
        _, line_end = _line_bounds(text, m.start())
        k = bisect.bisect_left(starts, m.end())
        if k >= len(starts) or starts[k] >= line_end:
            continue
        first = markers[by_start[starts[k]]]
        if not first.url:
            continue
        title = _RE_URL_STRIP.sub(_link_text, text[m.end() : line_end])
        out.append(_Marker(m.start(1), first.end, "numeric", [m.group(1)], 4, url=first.url, definition=True,
                           title=title, mask_end=line_end))
        drop.add(by_start[starts[k]])
    return sorted((mk for k, mk in enumerate(out) if k not in drop), key=lambda mk: mk.start)


# --------------------------------------------------------------------------------------------------- resolution


@dataclass(slots=True)
class _Target:
    index: int | None
    via: str
    problem: str


def _out_of_range(k: int, ctx: _Context) -> str:
    if ctx.n == 0:
        return "no context passages"
    if k == 0:
        return "index 0 is out of range (indices are 1-based)"
    return f"index {k} is out of range ({ctx.n} passage{'s' if ctx.n != 1 else ''})"


def _resolve_url(url: str, ctx: _Context) -> _Target:
    i = ctx.urls.get(normalize_url(url))
    if i is not None:
        return _Target(i, "url", "")
    return _Target(None, "", "no context passages" if ctx.n == 0 else "no passage has this URL")


def _resolve_label(ref: str, ctx: _Context, defs: dict[str, _Target] | None) -> _Target:
    key = ref.strip().lower()
    if defs is not None and key in defs:
        return defs[key]
    if key in ctx.ids:
        return _Target(ctx.ids[key], "id", "")
    # isdecimal, not isdigit: superscripts and circled digits (², ①) are digits that int() refuses
    if not key.isdecimal() and _loose_id(key) in ctx.loose_ids:
        return _Target(ctx.loose_ids[_loose_id(key)], "id", "")
    if key.isdecimal():
        k = int(key)
        return _Target(k - 1, "index", "") if 1 <= k <= ctx.n else _Target(None, "", _out_of_range(k, ctx))
    if key.startswith(("http://", "https://", "www.")):
        return _resolve_url(ref, ctx)
    m = _labeled(ref.strip())
    if m and m.group(1).lower() not in ctx.id_labels:
        k = int(m.group(2))
        return _Target(k - 1, "index", "") if 1 <= k <= ctx.n else _Target(None, "", _out_of_range(k, ctx))
    title = _norm_title(ref)
    if title in ctx.titles:
        return _Target(ctx.titles[title], "title", "")
    if ctx.n == 0:
        return _Target(None, "", "no context passages")
    return _Target(None, "", f"no passage has id {ref.strip()!r}")


def _resolve_definition(mk: _Marker, ctx: _Context) -> _Target | None:
    """What a reference-list entry points to; None when it carries neither a URL nor a known title."""
    if mk.url:
        return _resolve_url(mk.url, ctx)
    title = _norm_title(mk.title)
    if title:
        if title in ctx.titles:
            return _Target(ctx.titles[title], "title", "")
        if title in ctx.ids:
            return _Target(ctx.ids[title], "id", "")
        for known, i in ctx.titles.items():
            if len(known) >= 8 and known in title:
                return _Target(i, "title", "")
    return None


def _expand(ref: str, options: CitationOptions) -> list[str] | str:
    """A range as its members, or a problem string when it is refused."""
    m = _RE_RANGE.match(ref)
    if not m:
        return [ref]
    lo, hi = int(m.group(1)), int(m.group(2))
    if hi < lo:
        return f"range {lo}-{hi} is reversed"
    if hi - lo + 1 > options.max_range:
        return f"range {lo}-{hi} is wider than {options.max_range}"
    return [str(k) for k in range(lo, hi + 1)]


# --------------------------------------------------------------------------------------------------- sentences


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Blanks spans out (keeping newlines and offsets) so markers and code do not steer the segmenter."""
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:
            start = pos
        if end <= start:
            continue
        parts.append(text[pos:start])
        parts.append("".join("\n" if ch == "\n" else " " for ch in text[start:end]))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _lines(masked: str) -> list[tuple[int, int, bool]]:
    """(start after the markdown lead, end, is a heading) of each non-blank line.

    Sentences never cross a line break (pysbd's rule too; LLM output rarely hard-wraps), and the lead (``- ``,
    ``1. ``, ``## ``) is not part of a sentence.
    """
    lines: list[tuple[int, int, bool]] = []
    pos = 0
    for line in masked.split("\n"):
        if line.strip():
            lead = _RE_LINE_LEAD.match(line)
            lead_end = lead.end() if lead else 0
            lines.append((pos + lead_end, pos + len(line), "#" in line[:lead_end]))
        pos += len(line) + 1
    return lines


def _segment(masked: str, block: tuple[int, int], budget: list[int] | None = None) -> list[tuple[int, int]]:
    """Sentence spans of one block: cut at unambiguous boundaries, and let pysbd decide everything else.

    pysbd costs ~6 us per character; most boundaries ("... 1889. The ...") need no help, so pysbd only sees the
    stretches that hold an ambiguous one (abbreviations, initials, ellipses, list numbers, quotes). pysbd's cost grows
    faster than linearly, so a stretch longer than _MAX_AMBIGUOUS_CHARS, or holding more than _MAX_AMBIGUOUS
    ambiguous candidates, is cut at its next one; and once a response has used up its `budget` (characters of
    pysbd work, each call counted as at least 200), the rest is cut wherever an uppercase letter follows. Only
    pathological text (". . . .", "A. B. C. ..." for pages) gets there.
    tests/test_citations_segment.py checks that the result equals plain pysbd on real model output.
    """
    start, end = block
    chunk = masked[start:end]
    if len(chunk) <= _MAX_AMBIGUOUS_CHARS * 4 and len(_RE_INLINE_LIST.findall(chunk)) >= 2:
        return _ambiguous_spans(chunk, 0, len(chunk), start, budget)
    spans: list[tuple[int, int]] = []
    piece_start = 0
    ambiguous = 0
    for m in _RE_CANDIDATE.finditer(chunk):
        kind = _boundary(chunk, m, piece_start)
        if kind is None and (ambiguous >= _MAX_AMBIGUOUS or m.end(2) - piece_start > _MAX_AMBIGUOUS_CHARS):
            kind = True
        if kind is True:
            spans += (_ambiguous_spans if ambiguous else _one)(chunk, piece_start, m.end(2), start, budget)
            piece_start = m.end(2)
            ambiguous = 0
        elif kind is None:
            ambiguous += 1
    spans += (_ambiguous_spans if ambiguous else _one)(chunk, piece_start, len(chunk), start, budget)
    return spans


def _boundary(chunk: str, m: re.Match[str], piece_start: int) -> bool | None:
    """True: certainly a sentence end; False: certainly not (lowercase follows, "Dr. Smith"); None: ask pysbd.

    Inside an open quote or parenthesis nothing is certain (pysbd keeps quoted sentences together).
    """
    punct, nxt = m.group(1), chunk[m.end() : m.end() + 2]
    if not nxt:
        return None
    first = nxt[1] if nxt[0] in "\"'(\u201c[" and len(nxt) > 1 else nxt[0]
    if first.islower():
        return False
    if len(punct) > 1 or punct == "\u2026" or m.group(2) or not first.isupper():
        return None
    piece = chunk[max(piece_start, m.start() - _MAX_AMBIGUOUS_CHARS) : m.start()]
    if piece.count('"') % 2 or piece.count("(") > piece.count(")") or piece.count("\u201c") > piece.count("\u201d"):
        return None
    if punct != ".":
        return True
    word_end = m.start()
    while word_end > 0 and chunk[word_end - 1].isspace():
        word_end -= 1
    floor = max(0, word_end - 64)
    word_start = max(chunk.rfind(" ", floor, word_end), chunk.rfind("\t", floor, word_end), floor - 1) + 1
    word = chunk[word_start:word_end].lstrip("\"'(\u201c[*_").lower()
    if word in _PREPOSITIVE:
        return False
    if not word or "." in word or len(word) == 1 or word in _ABBREVIATIONS or (word.isdigit() and len(word) <= 2):
        return None
    return True


def _one(chunk: str, start: int, end: int, offset: int, budget: list[int] | None = None) -> list[tuple[int, int]]:
    piece = chunk[start:end]
    body = piece.strip()
    if not body:
        return []
    at = start + piece.find(body)
    return [(offset + at, offset + at + len(body))]


def _ambiguous_spans(
    chunk: str, start: int, end: int, offset: int, budget: list[int] | None
) -> list[tuple[int, int]]:
    if budget is not None:
        cost = max(end - start, 200)
        if budget[0] < cost:
            return _fallback_spans(chunk, start, end, offset)
        budget[0] -= cost
    return _pysbd_spans(chunk, start, end, offset)


def _fallback_spans(chunk: str, start: int, end: int, offset: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for m in _RE_CANDIDATE.finditer(chunk, start, end):
        nxt = chunk[m.end() : m.end() + 2]
        first = nxt[1:2] if nxt[:1] in "\"'(\u201c[" else nxt[:1]
        if first.isupper() and _boundary(chunk, m, start) is not False:
            spans += _one(chunk, start, m.end(2), offset)
            start = m.end(2)
    return spans + _one(chunk, start, end, offset)


def _pysbd_spans(chunk: str, start: int, end: int, offset: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = start
    for piece in segmenter().segment(chunk[start:end]):
        body = piece.strip()
        at = chunk.find(body, cursor, end) if body else -1
        if at < 0:
            continue
        spans.append((offset + at, offset + at + len(body)))
        cursor = at + len(body)
    return spans


def _is_claim(masked: str, span: tuple[int, int], min_words: int) -> bool:
    """Claims are statements: not questions, list intros ("...:"), greetings or very short lines (nor headings)."""
    sentence = masked[span[0] : span[1]].strip()
    if sentence.endswith(("?", ":")) or _RE_NOT_CLAIM.match(sentence):
        return False
    return len(_RE_WORD.findall(sentence)) >= min_words


def _sentence_for(pos: int, sentences: list[Sentence], starts: list[int], block_of: int | None) -> Sentence | None:
    """The sentence holding `pos`; else the previous one in the same block (``France.[1]``); else the next one."""
    k = bisect.bisect_right(starts, pos) - 1
    if k >= 0 and sentences[k].start <= pos < sentences[k].end:
        return sentences[k]
    if k >= 0 and (block_of is None or sentences[k].block == block_of):
        return sentences[k]
    if k + 1 < len(sentences) and (block_of is None or sentences[k + 1].block == block_of):
        return sentences[k + 1]
    return sentences[k] if k >= 0 else None


# --------------------------------------------------------------------------------------------------- API


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def analyze(response: str, passages: Sequence[Passage], options: CitationOptions | None = None) -> Analysis:
    """Citations (resolved or not, each attached to its sentence) and, when needed, the claim sentences."""
    options = options or CitationOptions()
    ctx = _Context.build(passages)
    regions = _ignored_regions(response)
    markers = _sweep(_scan(response, options, _compiled(options.extra_patterns), ctx), regions)
    if options.reference_lists and markers:
        sections = _section_lines(response)
        markers = _numbered_entries(response, markers, regions, sections)
        markers = _find_definitions(response, markers, sections)

    defs: dict[str, _Target] = {}
    for mk in markers:
        if mk.definition:
            target = _resolve_definition(mk, ctx)
            if target is not None and target.index is None:
                target = _Target(None, "", f"its reference-list entry {_short(mk.url)} matches no passage URL")
            if target is not None:
                defs.setdefault(mk.refs[0].strip().lower(), target)

    need_sentences = bool(markers) or options.require_citations
    sentences: list[Sentence] = []
    lines: list[tuple[int, int, bool]] = []
    if need_sentences:
        spans = [(mk.start, max(mk.end, mk.mask_end)) for mk in markers] + regions
        spans += [(m.start(), m.end()) for m in _RE_CITE_CLOSE.finditer(response)] if "</" in response else []
        masked = _mask(response, spans)
        lines = _lines(masked)
        budget = [_PYSBD_BUDGET_CHARS]
        for b, (start, end, heading) in enumerate(lines):
            for span in _segment(masked, (start, end), budget):
                claim = options.require_citations and not heading and _is_claim(masked, span, options.min_claim_words)
                sentences.append(Sentence(span[0], span[1], b, claim))
    starts = [s.start for s in sentences]
    line_starts = [line[0] for line in lines]
    lines_with_text = {s.block for s in sentences}

    citations: list[Citation] = []
    for mk in markers:
        if mk.definition:
            sent: tuple[int, int] = (-1, -1)
        elif mk.claim is not None:
            sent = _strip_span(response, mk.claim)
            sent = sent if sent[1] > sent[0] else (-1, -1)
        else:
            b = bisect.bisect_right(line_starts, mk.start) - 1
            alone = not (b >= 0 and mk.start <= lines[b][1] and b in lines_with_text)
            found = _sentence_for(mk.start, sentences, starts, b if b >= 0 else None)
            sent = (found.start, found.end) if found and not (alone and mk.url) else (-1, -1)
        marker_text = response[mk.start : mk.end]
        for ref, target in _targets(mk, ctx, defs, options):
            citations.append(
                Citation(
                    marker=marker_text,
                    start=mk.start,
                    end=mk.end,
                    ref=ref,
                    format="reference_list" if mk.definition else mk.format,
                    sentence_start=sent[0],
                    sentence_end=sent[1],
                    passage_index=target.index,
                    passage_id=passages[target.index].id if target.index is not None else None,
                    via=target.via,
                    problem=target.problem,
                )
            )
    return Analysis(tuple(citations), tuple(sentences))


def marker_spans(text: str, passages: Sequence[Passage] = (), options: CitationOptions | None = None
                 ) -> list[tuple[int, int]]:
    """Char spans of every citation marker in `text` — what a reader skips when reading the claim aloud.

    Same scanner as `analyze`, so both agree on what a marker is; ``</cite>`` closing tags and whole reference-list
    entries are markers too. A markdown link's *text* is the one judgement call (`link_reads_as_source`):

    - its words are dropped when they only name a source: no word at all (``[1](url)``, ``[[2]](url)``), a source
      word (``[source](url)``), a passage id or ``<label><number>`` (``[doc-7](url)``, ``[Source 2](url)``), an
      explicit ``[source: Paris - Wikipedia](url)``;
    - a parenthesis that holds nothing but citations — links whatever their text, other markers, separators and a
      lead such as ``see`` / ``source:`` — is a citation as a whole, brackets included: ``... tall ([Eiffel Tower -
      Wikipedia](url)).``, ``([A](u1), [B](u2))``, ``(see [1])`` (how ``guardrail synth``'s markdown format cites);
    - a link after the sentence's end mark with nothing after it on its line (``... tall. [Eiffel Tower](url)``);
    - otherwise the words are content and stay: ``according to [the report](https://a.org)`` reads "according to
      the report", ``[the Louvre](https://louvre.fr) is in Paris`` keeps "the Louvre" — whether or not the URL is a
      passage's. A link at the end of a sentence without brackets (``... designed by [Gustave Eiffel](url).``) keeps
      its words too: position cannot tell a title from the sentence's object there, and dropping an object could hide
      a wrong name from the judge.

    Link syntax that is not a citation (``[text](#anchor)``, ``[1](doc://p1)``, relative targets) is read the same
    way for the claim — the target never, the words by the rules above — though `analyze` does not resolve it.
    """
    options = options or CitationOptions()
    ctx = _Context.build(passages)
    regions = _ignored_regions(text)
    markers = _sweep(_scan(text, options, _compiled(options.extra_patterns), ctx), regions)
    if options.reference_lists and markers:
        sections = _section_lines(text)
        markers = _numbered_entries(text, markers, regions, sections)
        markers = _find_definitions(text, markers, sections)
    whole: list[tuple[int, int]] = []  # every marker's full span (link words included)
    links: list[tuple[int, int, int, int]] = []  # (start, end, words start, words end) of links whose words may stay
    for mk in markers:
        end = max(mk.end, mk.mask_end)
        whole.append((mk.start, end))
        link = _RE_MD_LINK.match(text, mk.start) if mk.format == "markdown_links" and not mk.definition else None
        if link and not link_reads_as_source(link.group(1), ctx):
            links.append((mk.start, end, link.start(1), link.end(1)))
    if "](" in text:  # link syntax that is not a citation: never read its target
        taken = sorted(whole)
        for m in _RE_OTHER_LINK.finditer(text):
            k = bisect.bisect_right(taken, (m.start(), float("inf"))) - 1
            if (k >= 0 and taken[k][1] > m.start()) or (k + 1 < len(taken) and taken[k + 1][0] < m.end()) \
                    or _inside(regions, m.start()):
                continue
            whole.append((m.start(), m.end()))
            if not link_reads_as_source(m.group(1), ctx):
                links.append((m.start(), m.end(), m.start(1), m.end(1)))
    link_starts = {start for start, *_ in links}
    spans = [span for span in whole if span[0] not in link_starts]
    if "</" in text and any(mk.format == "cite_tags" for mk in markers):
        closing = [(m.start(), m.end()) for m in _RE_CITE_CLOSE.finditer(text)]
        spans += closing
        whole += closing
    if not links and not ("(" in text and whole):
        return sorted(spans)
    full = _mask(text, whole)  # the text with every marker blanked, link words too
    starts = sorted(a for a, _ in whole)
    groups = [(m.start(), m.end()) for m in _RE_CITATION_PARENS.finditer(full)
              if (k := bisect.bisect_right(starts, m.start())) < len(starts) and starts[k] < m.end()]
    spans += groups
    lines = _LineEnds(full) if links else None
    for start, end, words_start, words_end in links:
        k = bisect.bisect_right(groups, (start, start)) - 1
        if (k >= 0 and groups[k][1] >= end) or (lines is not None and lines.after_sentence(start, end)):
            spans.append((start, end))
        else:
            spans += [(start, words_start), (words_end, end)]
    return sorted(spans)


def link_reads_as_source(words: str, passages: Sequence[Passage] | _Context = ()) -> bool:
    """Whether a markdown link's text only names a source (``1``, ``[2]``, ``source``, ``doc-7``, a passage id,
    ``Source 2``, ``source: Paris - Wikipedia``), so the claim reads nothing of it (see `marker_spans`)."""
    ctx = passages if isinstance(passages, _Context) else _Context.build(passages)
    words = " ".join(words.split()).strip(" []()")
    if not _RE_WORD.search(words) or words.lower() in SOURCE_LABELS:
        return True
    return len(words) <= 200 and _bracket_refs(words, ctx) is not None


class _LineEnds:
    """Where the words of each line of a marker-blanked text are (found once per line), to tell a link that follows
    its sentence's end mark (``tall. [Title](url)``) with nothing but markers after it on its line."""

    def __init__(self, full: str) -> None:
        self.full = full
        self.words: dict[int, list[int]] = {}  # line start -> the end offset of each run of non-space characters

    def after_sentence(self, start: int, end: int) -> bool:
        full = self.full
        line = full.rfind("\n", 0, start) + 1
        ends = self.words.get(line)
        if ends is None:
            stop = full.find("\n", line)
            ends = self.words[line] = [m.end() for m in _RE_NON_SPACE.finditer(full, line, len(full) if stop < 0
                                                                                else stop)]
        k = bisect.bisect_right(ends, start) - 1
        if k < 0 or ends[-1] > end:  # nothing before it on the line, or words after it
            return False
        before = full[max(line, ends[k] - 8) : ends[k]].rstrip("\"')]\u201d\u2019*_")
        return before[-1:] in (".", "!") and before[-2:-1] not in ("", ".")


def strip_markers(text: str, passages: Sequence[Passage] = (), options: CitationOptions | None = None) -> str:
    """`text` with citation markers blanked to spaces: same length, so every offset (sentence spans, findings)
    still points into the original. Why: an NLI model reads ``France [1].`` as a different, worse-supported
    claim than ``France.`` (0.06 vs 0.89 before this existed); markers are provenance, not content."""
    spans = marker_spans(text, passages, options)
    return _mask(text, spans) if spans else text


_RE_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_RE_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")


def claim_text(view: str) -> str:
    """A sentence of a `strip_markers` view as the model should read it: whitespace collapsed, brackets a marker
    emptied dropped, no space before punctuation where a marker was (``France (  ) .`` -> ``France.``)."""
    return _RE_SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(_RE_EMPTY_BRACKETS.sub(" ", view).split()))


def without_markers(text: str, passages: Sequence[Passage] = (), options: CitationOptions | None = None) -> str:
    """`text` as a claim or premise without its citation markers (unchanged, line breaks and all, when it has none)."""
    view = strip_markers(text, passages, options)
    return text if view is text else claim_text(view)


def claim_sentences(text: str, passages: Sequence[Passage] = (), options: CitationOptions | None = None, *,
                    cache: bool = True) -> list[Span]:
    """Sentences of `text` as claims: spans into the original text, `.text` without citation markers. The one
    place entailment, self_consistency, the support check and streamed responses (`guardrail_invariants.streaming`)
    get their claims from. `cache=False`: see `split_sentences`."""
    view = strip_markers(text, passages, options)
    if view is text:
        return split_sentences(text, cache=cache)
    return [Span(claim_text(s.text), *link_bounds(text, view, s.start, s.end))
            for s in split_sentences(view, cache=cache) if s.text.strip()]


def link_bounds(text: str, view: str, start: int, end: int) -> tuple[int, int]:
    """A sentence span of a `strip_markers` view, widened to the brackets of a link whose words open or close it
    (``[The Louvre](url) is in Paris.`` starts at the ``[``, not inside the link; ``... see [the guide](url)`` ends at
    the link's ``)``), so a finding covers the link as written. Other markers stay outside, as in `analyze`."""
    if start > 0 and text[start - 1] == "[" and view[start - 1] == " ":
        start -= 1
    if end < len(text) and text[end] == "]" and view[end] == " ":
        close = _RE_LINK_TAIL.match(text, end)
        if close and not view[end : close.end()].strip():
            end = close.end()
    return start, end


def _strip_span(text: str, span: tuple[int, int]) -> tuple[int, int]:
    start, end = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _targets(
    mk: _Marker, ctx: _Context, defs: dict[str, _Target], options: CitationOptions
) -> list[tuple[str, _Target]]:
    if mk.definition:
        target = _resolve_definition(mk, ctx)
        if target is None:
            return [(mk.refs[0], _resolve_label(mk.refs[0], ctx, None))]
        return [(mk.url or mk.refs[0], target)]
    if mk.url:
        return [(mk.url, _resolve_url(mk.url, ctx))]
    if mk.format == "oai":
        number = mk.refs[0]
        if len(mk.refs) > 1:
            by_name = _resolve_definition(_Marker(0, 0, "oai", [], 0, title=mk.refs[1]), ctx)
            if by_name is not None:
                return [(number, by_name)]
        return [(number, _resolve_label(number, ctx, None))]
    use_defs = defs if mk.format in _LABEL_FORMATS else None
    out: list[tuple[str, _Target]] = []
    for ref in mk.refs:
        expanded = _expand(ref, options) if mk.format in ("numeric", "custom") else [ref]
        if isinstance(expanded, str):
            out.append((ref, _Target(None, "", expanded)))
            continue
        out.extend((item, _resolve_label(item, ctx, use_defs)) for item in expanded)
    return out


def extract_citations(
    response: str, passages: Sequence[Passage], options: CitationOptions | None = None
) -> list[Citation]:
    """For each citation: marker span, the span of the sentence it supports, and the passage it resolves to."""
    return list(analyze(response, passages, options).citations)
