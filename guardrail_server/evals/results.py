"""Results of a run: one row per case x invariant, appended to `results.jsonl` as cases finish (flushed, so an
interrupted run keeps everything done) and written to `results.parquet` at the end. `run.json` describes the run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail_server.evals.datasets import EvalCase, Malformed
from guardrail_invariants.types import Verdict

RESULTS_JSONL = "results.jsonl"
RESULTS_PARQUET = "results.parquet"
MANIFEST = "run.json"
MALFORMED = "malformed.jsonl"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("case_id", "string"),
    ("invariant", "string"),
    ("dataset", "string"),
    ("task", "string"),
    ("source", "string"),
    ("outcome", "string"),
    ("score", "float64"),
    ("threshold", "float64"),
    ("expected", "string"),  # "pass" | "fail" | null: what the dataset label says the invariant should conclude
    ("label", "string"),
    ("decision", "string"),
    ("judge", "string"),
    ("error", "string"),
    ("latency_ms", "float64"),
    ("findings", "string"),  # JSON list of {kind, start, end, message, passage_id, score}
    ("judges_disagree", "bool_"),  # null unless a secondary judge scored the case (offline: every case)
    ("judges", "string"),  # JSON {judge: {family, score, threshold, outcome | error, latency_ms}}, primary first
    ("question", "string"),
    ("response", "string"),
)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What a backend returns for one case: its verdicts, or the input error that refused it."""

    item: EvalCase
    verdicts: tuple[Verdict, ...] = ()
    decision: str = ""
    error: str = ""


def _findings_json(v: Verdict) -> str:
    return json.dumps(
        [{"kind": f.kind, "start": f.start, "end": f.end, "message": f.message, "passage_id": f.passage_id,
          "score": f.score} for f in v.findings],
        ensure_ascii=False,
    )


def rows_for(result: CaseResult, invariants: Sequence[str]) -> list[dict[str, Any]]:
    """An input error still yields one row per invariant (outcome `error`), so it is counted, not lost."""
    item = result.item
    base = {"case_id": item.id, "dataset": item.dataset, "task": item.task, "source": item.source,
            "label": item.label, "decision": result.decision, "question": item.case.question,
            "response": item.case.response}

    def expected(name: str) -> str | None:
        holds = item.expected.get(name)
        return None if holds is None else ("pass" if holds else "fail")

    if result.error:
        return [{**base, "invariant": name, "outcome": "error", "score": 0.0, "threshold": None,
                 "expected": expected(name), "judge": "", "error": result.error, "latency_ms": 0.0,
                 "findings": "[]", "judges_disagree": None, "judges": None} for name in invariants]
    return [{**base, "invariant": v.invariant, "outcome": v.outcome.value, "score": float(v.score),
             "threshold": float(v.threshold), "expected": expected(v.invariant), "judge": v.judge,
             "error": v.error, "latency_ms": round(v.latency_s * 1000, 3), "findings": _findings_json(v),
             "judges_disagree": v.details.get("judges_disagree"),
             "judges": json.dumps(v.details["judges"], ensure_ascii=False) if v.details.get("judges") else None}
            for v in result.verdicts]


class ResultWriter:
    """Appends rows to results.jsonl; each case's rows go out in one write and are flushed at once."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / RESULTS_JSONL
        repair_jsonl(self.path)
        self._fh = self.path.open("a", encoding="utf-8")
        self._since_sync = 0

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False, allow_nan=True) + "\n" for r in rows)
        if not text:
            return
        self._fh.write(text)
        self._fh.flush()
        self._since_sync += 1
        if self._since_sync >= 256:
            os.fsync(self._fh.fileno())
            self._since_sync = 0

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def repair_jsonl(path: Path) -> None:
    """A hard kill can leave half a line at the end; drop it so the file is whole rows only."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """All rows of a run (from the JSONL log, which is complete even for interrupted runs), last row per key wins."""
    path = Path(run_dir) / RESULTS_JSONL
    if not path.exists():
        parquet = Path(run_dir) / RESULTS_PARQUET
        if parquet.exists():
            import pyarrow.parquet as pq

            return pq.read_table(parquet).to_pylist()
        raise FileNotFoundError(f"{run_dir}: no {RESULTS_JSONL} or {RESULTS_PARQUET}")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            row = json.loads(line)
            rows[(row["case_id"], row["invariant"])] = row
    return list(rows.values())


def done_keys(run_dir: Path) -> set[tuple[str, str]]:
    path = Path(run_dir) / RESULTS_JSONL
    if not path.exists():
        return set()
    return {(r["case_id"], r["invariant"]) for r in read_rows(run_dir)}


def write_parquet(run_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])
    table = pa.Table.from_pylist([{k: r.get(k) for k, _ in COLUMNS} for r in rows], schema=schema)
    path = Path(run_dir) / RESULTS_PARQUET
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def write_malformed(run_dir: Path, malformed: Sequence[Malformed]) -> None:
    with (Path(run_dir) / MALFORMED).open("w", encoding="utf-8") as fh:
        for m in malformed:
            fh.write(json.dumps({"source": m.source, "reason": m.reason}) + "\n")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    path = Path(run_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(path)
