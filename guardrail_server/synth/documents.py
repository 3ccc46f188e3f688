"""Documents in: a folder (or files) of .txt / .md / .html / .pdf, or JSONL with `id`/`title`/`text` — and the
`Corpus` of passages the cases are drawn from.

Text extraction is deliberately plain: markdown loses its markup (headings, bullets, emphasis, code blocks, link
targets), HTML keeps the text of its body (no script/style; block elements end a paragraph), PDF is pypdf's
`extract_text` per page with end-of-line hyphens joined. Sentences come from the judge's own training generator
(`guardrail_models.training.generator.documents_from_texts`: pysbd, 5-60 words, a capital first and a full stop
last), so headings, captions and list fragments never become claims. Each paragraph is cut into passages of at most
`max_sentences` sentences / `max_words` words; passage ids are `doc-1`, `doc-2`, ... over the whole corpus (the
`[doc-7]` citation format), each with a URL of its own (`https://docs.invalid/<doc>/<n>`, for markdown-link citations).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from guardrail_models.training.generator import _entities, _numbers, documents_from_texts

TEXT_SUFFIXES = (".txt", ".text")
MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES + JSONL_SUFFIXES
PAGE_CHARS = 3000  # "a page" in the speed goal and the summary: ~500 words of running text
URL_BASE = "https://docs.invalid"  # .invalid is reserved (RFC 2606): these URLs can never point anywhere real


class DocumentError(ValueError):
    """A path or a JSONL line that cannot be read; the message names it."""


@dataclass(frozen=True, slots=True)
class SourceDoc:
    id: str
    title: str
    text: str
    origin: str  # file path, or path:line for JSONL


@dataclass(frozen=True, slots=True)
class SynthPassage:
    id: str
    doc: int  # index into Corpus.docs
    title: str
    url: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass(slots=True)
class Corpus:
    docs: list[SourceDoc]
    passages: list[SynthPassage]
    by_doc: list[list[int]]  # passage indices of each doc
    numbers: list[list[str]] = field(default_factory=list)  # per doc: numbers it mentions (swap pools)
    entities: list[list[str]] = field(default_factory=list)  # per doc: capitalised names it mentions
    skipped: list[str] = field(default_factory=list)  # "origin: why" for documents that gave no passage

    @property
    def chars(self) -> int:
        return sum(len(d.text) for d in self.docs)

    @property
    def pages(self) -> float:
        return self.chars / PAGE_CHARS


# ---------------------------------------------------------------- text extraction


_MD_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~).*?^[ \t]{0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
_MD_FRONT = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s+\S+.*$", re.MULTILINE)
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_MD_BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+", re.MULTILINE)
_MD_QUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)
_MD_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3}|`+)(?=\S)(.+?)(?<=\S)\1")
_TAG = re.compile(r"<[^>\n]{1,200}>")


def markdown_text(source: str) -> tuple[str, str]:
    """(title, plain text): the first heading is the title; every heading is a paragraph of its own."""
    text = _MD_FRONT.sub("", source)
    text = _MD_FENCE.sub("\n", text)
    heading = _MD_HEADING.search(text)
    title = heading.group(1).strip() if heading else ""
    text = _MD_HEADING.sub(lambda m: "\n" + m.group(1) + "\n", text)
    text = _MD_IMAGE.sub("", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_REF_DEF.sub("", text)
    text = _MD_QUOTE.sub("", text)
    text = _MD_BULLET.sub("\n", text)
    for _ in range(2):
        text = _MD_EMPHASIS.sub(r"\2", text)
    return title, _TAG.sub("", text)


class _HtmlText(HTMLParser):
    BLOCK = frozenset("p div li ul ol h1 h2 h3 h4 h5 h6 br tr table section article blockquote pre header footer "
                      "nav aside dd dt figcaption main hr".split())
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.h1 = ""
        self._skip = 0
        self._in_title = False
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
        if tag == "h1":
            self._in_h1 = True
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == "h1":
            self._in_h1 = False
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
            return
        if self._skip:
            return
        if self._in_h1:
            self.h1 += data
        self.parts.append(data)


def html_text(source: str) -> tuple[str, str]:
    parser = _HtmlText()
    parser.feed(source)
    parser.close()
    title = " ".join((parser.title or parser.h1).split())
    return title, "".join(parser.parts)


def pdf_text(path: Path) -> tuple[str, str]:
    try:
        from pypdf import PdfReader
    except ImportError as exc:  # pragma: no cover - pypdf is a dependency
        raise DocumentError(f"{path}: reading PDF needs pypdf ({exc})") from None
    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title") or "")
    except Exception as exc:  # pypdf raises many types for damaged files
        raise DocumentError(f"{path}: unreadable PDF ({type(exc).__name__}: {exc})") from None
    text = "\n\n".join(pages)
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)  # end-of-line hyphenation
    return title, text


def plain_title(text: str, fallback: str) -> str:
    """A short first line without a full stop is a heading; otherwise the file name."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if len(line.split()) <= 12 and line[-1:] not in ".!?:;,":
            return line
        break
    return fallback


def _stem_title(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip() or path.name


def read_file(path: Path, root: Path | None = None) -> list[SourceDoc]:
    suffix = path.suffix.lower()
    doc_id = str(path.relative_to(root)) if root is not None else path.name
    if suffix in JSONL_SUFFIXES:
        return list(read_jsonl(path))
    if suffix in PDF_SUFFIXES:
        title, text = pdf_text(path)
        return [SourceDoc(doc_id, title or _stem_title(path), text, str(path))]
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DocumentError(f"{path}: {exc.strerror or exc}") from None
    if suffix in MARKDOWN_SUFFIXES:
        title, text = markdown_text(raw)
    elif suffix in HTML_SUFFIXES:
        title, text = html_text(raw)
    else:
        title, text = plain_title(raw, ""), raw
    return [SourceDoc(doc_id, title or _stem_title(path), text, str(path))]


def read_jsonl(path: Path) -> Iterable[SourceDoc]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DocumentError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DocumentError(f"{where}: expected an object with a string 'text' (and 'id', 'title')")
            doc_id = str(row.get("id") or f"{path.stem}:{lineno}")
            yield SourceDoc(doc_id, str(row.get("title") or doc_id), row["text"], where)


def load_documents(paths: Sequence[str | Path]) -> list[SourceDoc]:
    """Every readable document under `paths` (folders recursively, sorted: the order never depends on the file
    system). A path that does not exist, a folder without documents or a duplicate id is a `DocumentError`."""
    docs: list[SourceDoc] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                raise DocumentError(f"{path}: no documents ({', '.join(SUFFIXES)})")
            for f in files:
                docs += read_file(f, path)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DocumentError(f"{path}: unsupported document type {path.suffix!r}; use {', '.join(SUFFIXES)}")
            docs += read_file(path)
        else:
            raise DocumentError(f"{path}: no such file or folder")
    seen: dict[str, str] = {}
    for d in docs:
        if d.id in seen:
            raise DocumentError(f"{d.origin}: duplicate document id {d.id!r} (first in {seen[d.id]})")
        seen[d.id] = d.origin
    return docs


# ---------------------------------------------------------------- passages


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "doc"


def _windows(paragraph: Sequence[str], max_sentences: int, max_words: int) -> list[list[str]]:
    out: list[list[str]] = [[]]
    words = 0
    for s in paragraph:
        n = len(s.split())
        if out[-1] and (len(out[-1]) >= max_sentences or words + n > max_words):
            out.append([])
            words = 0
        out[-1].append(s)
        words += n
    return [w for w in out if w]


def build_corpus(docs: Sequence[SourceDoc], *, max_sentences: int = 5, max_words: int = 140) -> Corpus:
    passages: list[SynthPassage] = []
    kept: list[SourceDoc] = []
    by_doc: list[list[int]] = []
    numbers: list[list[str]] = []
    entities: list[list[str]] = []
    skipped: list[str] = []
    slugs: set[str] = set()
    for source in docs:
        segmented = documents_from_texts([(source.title, source.text)])
        if not segmented:
            skipped.append(f"{source.origin}: fewer than two usable sentences")
            continue
        doc = segmented[0]
        di = len(kept)
        kept.append(source)
        slug = _slug(source.id)
        while slug in slugs:
            slug += "-x"
        slugs.add(slug)
        idx: list[int] = []
        for para in doc.paragraphs:
            for window in _windows(para, max_sentences, max_words):
                n = len(passages) + 1
                passages.append(SynthPassage(id=f"doc-{n}", doc=di, title=source.title,
                                             url=f"{URL_BASE}/{slug}/{len(idx) + 1}", sentences=tuple(window)))
                idx.append(n - 1)
        by_doc.append(idx)
        sents = doc.sentences()
        numbers.append(sorted({x for s in sents for x in _numbers(s)}))
        entities.append(sorted({e for s in sents for e in _entities(s)}))
    return Corpus(kept, passages, by_doc, numbers, entities, skipped)
