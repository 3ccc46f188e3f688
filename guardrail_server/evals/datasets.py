"""Datasets in, `EvalCase`s out: readers for JSONL / CSV / Parquet and one adapter per external task format.

A row that cannot become a case is never dropped silently: it becomes a `Malformed` record naming `file:line`,
and the caller decides whether to skip it or fail the run.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from guardrail_invariants.types import Case, Passage, parse_sensitivity

OnMalformed = Literal["skip", "fail"]

# Presidio-research entity types that identify a person; the others (GPE, DATE_TIME, AGE, TITLE, NRP,
# ORGANIZATION, DOMAIN_NAME, ZIP_CODE) are not treated as a leak on their own.
IDENTIFYING_PII = frozenset(
    {"PERSON", "STREET_ADDRESS", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IP_ADDRESS",
     "IBAN_CODE", "US_DRIVER_LICENSE"}
)
# Keeps WiCE-style sentence lists within the server's default `limits.max_passages`.
MAX_PASSAGES = 64


class MalformedRowError(ValueError):
    """Raised by an adapter for a row it cannot turn into a case; the message says why."""


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One case to evaluate, with what the dataset says each invariant *should* conclude.

    `expected[name]` is True when the invariant should hold (pass) and False when it should be violated.
    """

    case: Case
    dataset: str
    source: str
    task: str = "case"
    label: str = ""
    expected: dict[str, bool] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.case.request_id


@dataclass(frozen=True, slots=True)
class Malformed:
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class DatasetError(ValueError):
    """The dataset cannot be used as given (unreadable file, or malformed rows under `--on-malformed fail`)."""

    def __init__(self, message: str, malformed: Sequence[Malformed] = ()) -> None:
        super().__init__(message)
        self.malformed = list(malformed)


@dataclass
class LoadedDataset:
    cases: list[EvalCase]
    malformed: list[Malformed]


# ---------------------------------------------------------------- readers: (line, row dict | error text)

RowOrError = tuple[int, dict[str, Any] | str]


def _open_text(path: Path, newline: str | None = None) -> Any:
    """Plain or gzip-compressed (`.jsonl.gz`, `.csv.gz`) text."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline=newline)
    return path.open(encoding="utf-8", newline=newline)


def read_jsonl(path: Path) -> Iterator[RowOrError]:
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, f"invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            yield lineno, row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"


_JSON_COLUMNS = ("context", "samples", "metadata", "expected", "label", "response", "meta")


def _decode_cell(key: str, value: str) -> Any:
    """CSV cells are text; structured columns may hold JSON (a list of passages, samples, metadata)."""
    if value == "":
        return None
    if key in _JSON_COLUMNS and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise MalformedRowError(f"column {key!r} is not valid JSON ({exc.msg})") from None
    return value


def read_csv(path: Path) -> Iterator[RowOrError]:
    with _open_text(path, newline="") as fh:
        reader = csv.DictReader(fh)
        start = 2  # line of the first record, after the header
        for raw in reader:
            lineno, start = start, reader.line_num + 1
            if None in raw or any(v is None for v in raw.values()):
                yield lineno, f"expected {len(reader.fieldnames or [])} columns, got a different number"
                continue
            try:
                yield lineno, {k: _decode_cell(k, v) for k, v in raw.items()}
            except MalformedRowError as exc:
                yield lineno, str(exc)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_parquet(path: Path) -> Iterator[RowOrError]:
    """Line numbers for Parquet are 1-based row numbers."""
    import pyarrow.parquet as pq

    lineno = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            lineno += 1
            yield lineno, {k: _plain(v) for k, v in row.items()}


READERS: dict[str, Callable[[Path], Iterator[RowOrError]]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".pq": read_parquet,
}


# ---------------------------------------------------------------- adapters: row -> EvalCase(s)


def _text(row: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise MalformedRowError(f"missing field {key!r}")
        return ""
    if not isinstance(value, str):
        raise MalformedRowError(f"field {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise MalformedRowError(f"field {key!r} is empty")
    return value


def _context_passages(value: Any) -> tuple[Passage, ...]:
    """A string is one passage; a list holds passages (strings numbered from 1, or {id,text,title,url})."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (Passage(id="1", text=value),)
    if not isinstance(value, list):
        raise MalformedRowError(f"field 'context' must be a string or a list, got {type(value).__name__}")
    out = []
    for i, p in enumerate(value, start=1):
        if isinstance(p, str):
            out.append(Passage(id=str(i), text=p))
        elif isinstance(p, Mapping) and isinstance(p.get("text"), str):
            try:
                sensitivity = parse_sensitivity(p.get("sensitivity"))
            except ValueError as exc:
                raise MalformedRowError(f"context[{i - 1}].{exc}") from None
            out.append(Passage(id=str(p.get("id") or ""), text=p["text"], title=str(p.get("title") or ""),
                               url=str(p.get("url") or ""), sensitivity=sensitivity))
        else:
            raise MalformedRowError(f"context[{i - 1}] must be a string or an object with 'text'")
    return tuple(out)


def _pack_sentences(sentences: Sequence[str], limit: int = MAX_PASSAGES) -> tuple[Passage, ...]:
    """Sentence lists longer than `limit` are packed into `limit` runs of consecutive sentences."""
    if len(sentences) <= limit:
        return tuple(Passage(id=str(i), text=s) for i, s in enumerate(sentences, start=1))
    per = math.ceil(len(sentences) / limit)
    return tuple(
        Passage(id=str(i), text=" ".join(sentences[j : j + per]))
        for i, j in enumerate(range(0, len(sentences), per), start=1)
    )


def _label(row: Mapping[str, Any], mapping: Mapping[str, bool]) -> tuple[str, bool]:
    label = row.get("label")
    if not isinstance(label, str) or label not in mapping:
        raise MalformedRowError(f"label {label!r} is not one of {sorted(mapping)}")
    return str(label), mapping[label]


def _metadata(dataset: str, task: str) -> dict[str, str]:
    """Labels stay out of the case: the checks must never see the answer key."""
    return {"dataset": dataset, "task": task}


def _expected_from_row(value: Any) -> dict[str, bool]:
    """Native rows may carry `expected: {invariant: "pass" | "fail" | true | false}`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedRowError("field 'expected' must be an object {invariant: pass|fail}")
    out = {}
    for name, v in value.items():
        if v in ("pass", "holds", True):
            out[str(name)] = True
        elif v in ("fail", "violated", False):
            out[str(name)] = False
        else:
            raise MalformedRowError(f"expected[{name!r}] must be 'pass' or 'fail', got {v!r}")
    return out


def adapt_case(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """The native shape: the `Case` fields (response, question, context, samples, app, metadata) + `expected`."""
    samples = row.get("samples") or []
    if not isinstance(samples, list) or not all(isinstance(s, str) for s in samples):
        raise MalformedRowError("field 'samples' must be a list of strings")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise MalformedRowError("field 'metadata' must be an object")
    case = Case(
        response=_text(row, "response", required=True),
        question=_text(row, "question"),
        context=_context_passages(row.get("context")),
        samples=tuple(samples),
        request_id=case_id,
        app=_text(row, "app"),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )
    return [EvalCase(case, dataset, source, expected=_expected_from_row(row.get("expected")))]


def _single(row: Mapping[str, Any], case_id: str, dataset: str, source: str, task: str,
            invariant: str, labels: Mapping[str, bool], *, sentences: bool = False) -> list[EvalCase]:
    label, holds = _label(row, labels)
    context = row.get("context")
    if sentences:
        if not isinstance(context, list) or not all(isinstance(s, str) for s in context):
            raise MalformedRowError("field 'context' must be a list of sentences")
        passages = _pack_sentences(context)
    else:
        passages = _context_passages(context)
    case = Case(
        response=_text(row, "response", required=True),
        question=_text(row, "question"),
        context=passages,
        request_id=case_id,
        metadata=_metadata(dataset, task),
    )
    return [EvalCase(case, dataset, source, task, label, {invariant: holds})]


def adapt_qa_groundedness(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """HaluEval QA: the answer must be grounded in the knowledge passage."""
    return _single(row, case_id, dataset, source, "qa_groundedness", "entailment",
                   {"supported": True, "hallucinated": False})


def adapt_summary_groundedness(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """A summary (response) of a document (context): every sentence of it must be grounded in the document."""
    return _single(row, case_id, dataset, source, "summary_groundedness", "entailment",
                   {"supported": True, "hallucinated": False})


def adapt_dialogue_groundedness(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """A dialogue turn (response) grounded in knowledge (context); the dialogue so far, if given, is the question."""
    return _single(row, case_id, dataset, source, "dialogue_groundedness", "entailment",
                   {"supported": True, "hallucinated": False})


def adapt_claim_attribution(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """WiCE: a claim against the sentences of its cited source; only fully supported claims hold."""
    return _single(row, case_id, dataset, source, "claim_attribution", "entailment",
                   {"supported": True, "partially_supported": False, "not_supported": False}, sentences=True)


_NLI = {"entailment": True, "neutral": False, "contradiction": False}


def adapt_claim_evidence_nli(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """Climate-FEVER claim/evidence pairs: the claim (response) must be entailed by the evidence (context)."""
    return _single(row, case_id, dataset, source, "claim_evidence_nli", "entailment", _NLI)


def adapt_nli(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """SNLI / ANLI: hypothesis = response, premise = context; entailment vs. the rest."""
    return _single(row, case_id, dataset, source, "nli", "entailment", _NLI)


_NLI_OR_BINARY = {**_NLI, "not_entailment": False}


def adapt_nli_pair(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """Training-style pairs (`premise`, `hypothesis`, 3-way or binary `label`), e.g. train/groundedness_mix_v1."""
    renamed = {**row, "context": _text(row, "premise", required=True), "response": _text(row, "hypothesis",
                                                                                         required=True)}
    return _single(renamed, case_id, dataset, source, "nli", "entailment", _NLI_OR_BINARY)


def adapt_self_consistency_pair(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """ChatProtect: two samples for the same prompt; the first is the response, the second its only sample."""
    label, holds = _label(row, {"consistent": True, "contradictory": False})
    pair = row.get("response")
    if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(s, str) and s.strip() for s in pair):
        raise MalformedRowError("field 'response' must be a list of two non-empty samples")
    case = Case(
        response=pair[0],
        question=_text(row, "question"),
        context=_context_passages(row.get("context")),
        samples=(pair[1],),
        request_id=case_id,
        metadata=_metadata(dataset, "self_consistency_pair"),
    )
    return [EvalCase(case, dataset, source, "self_consistency_pair", label, {"self_consistency": holds})]


def adapt_pii_spans(row: Mapping[str, Any], case_id: str, dataset: str, source: str) -> list[EvalCase]:
    """Presidio synthetic text with PII spans -> two boundary cases (as the data README prescribes):
    `#leak`: the text is in the context and in the response, not in the question -> a leak iff it holds
    identifying PII; `#asked`: the same, but the user's question contains the text -> never a leak."""
    text = _text(row, "response", required=True)
    spans = row.get("label")
    if not isinstance(spans, list) or not all(isinstance(s, Mapping) and "entity_type" in s for s in spans):
        raise MalformedRowError("field 'label' must be a list of {entity_type,start,end,value} spans")
    types = sorted({str(s["entity_type"]) for s in spans})
    leaks = any(t in IDENTIFYING_PII for t in types)
    # A customer record: marked private, as an integration marks its CRM passages, so its names count like its
    # phone numbers (unmarked, a name counts only beside a contact identifier: pii_boundary's default).
    passage = (Passage(id="1", text=text, sensitivity="private"),)
    meta = _metadata(dataset, "pii_spans")
    leak = Case(response=text, context=passage, request_id=f"{case_id}#leak", metadata=meta)
    asked = Case(response=text, question=text, context=passage, request_id=f"{case_id}#asked", metadata=dict(meta))
    return [
        EvalCase(leak, dataset, source, "pii_spans", "leak" if leaks else "no_identifying_pii",
                 {"pii_boundary": not leaks}),
        EvalCase(asked, dataset, source, "pii_spans", "asked", {"pii_boundary": True}),
    ]


ADAPTERS: dict[str, Callable[..., list[EvalCase]]] = {
    "case": adapt_case,
    "qa_groundedness": adapt_qa_groundedness,
    "claim_attribution": adapt_claim_attribution,
    "claim_evidence_nli": adapt_claim_evidence_nli,
    "nli": adapt_nli,
    "nli_pair": adapt_nli_pair,
    "summary_groundedness": adapt_summary_groundedness,
    "dialogue_groundedness": adapt_dialogue_groundedness,
    "self_consistency_pair": adapt_self_consistency_pair,
    "pii_spans": adapt_pii_spans,
}


def adapt_row(row: Mapping[str, Any], dataset: str, source: str, lineno: int) -> list[EvalCase]:
    """Dispatches on the row's `task` (rows without one are native Case rows)."""
    task = row.get("task") or ("nli_pair" if "premise" in row and "hypothesis" in row else "case")
    adapter = ADAPTERS.get(str(task))
    if adapter is None:
        raise MalformedRowError(f"unknown task {task!r}; known: {sorted(ADAPTERS)}")
    raw_id = row.get("id", row.get("request_id"))
    case_id = str(raw_id) if raw_id not in (None, "") else f"{dataset}:{lineno}"
    return adapter(row, case_id, dataset, source)


def iter_dataset(path: str | Path) -> Iterator[EvalCase | Malformed]:
    path = Path(path)
    compressed = path.suffix.lower() == ".gz"
    suffix = Path(path.stem).suffix.lower() if compressed else path.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None or (compressed and reader is read_parquet):
        raise DatasetError(f"{path}: unsupported format {''.join(path.suffixes)!r}; use one of {sorted(READERS)} "
                           "(JSONL and CSV may be gzip-compressed: .jsonl.gz)")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    dataset = path.name.split(".")[0]
    for lineno, row in reader(path):
        source = f"{path}:{lineno}"
        if isinstance(row, str):
            yield Malformed(source, row)
            continue
        try:
            yield from adapt_row(row, dataset, source, lineno)
        except MalformedRowError as exc:
            yield Malformed(source, str(exc))


def load_datasets(paths: Sequence[str | Path], *, on_malformed: OnMalformed = "skip",
                  limit: int | None = None) -> LoadedDataset:
    """Reads every file; duplicate case ids are malformed too (results are keyed on case id x invariant)."""
    cases: list[EvalCase] = []
    malformed: list[Malformed] = []
    seen: dict[str, str] = {}
    for path in paths:
        for item in iter_dataset(path):
            if isinstance(item, Malformed):
                malformed.append(item)
                continue
            if item.id in seen:
                malformed.append(Malformed(item.source, f"duplicate case id {item.id!r} (first at {seen[item.id]})"))
                continue
            seen[item.id] = item.source
            cases.append(item)
    if malformed and on_malformed == "fail":
        shown = "\n".join(f"  {m}" for m in malformed[:20])
        more = f"\n  ... and {len(malformed) - 20} more" if len(malformed) > 20 else ""
        raise DatasetError(f"{len(malformed)} malformed row(s):\n{shown}{more}", malformed)
    if limit is not None:
        cases = cases[:limit]
    return LoadedDataset(cases, malformed)
