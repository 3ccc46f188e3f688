"""Dataset readers (JSONL / CSV / Parquet), the adapter of every external format in ../shared/data, and malformed
rows: always reported with file:line, then skipped or failing the load."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guardrail_server.evals.datasets import DatasetError, EvalCase, Malformed, iter_dataset, load_datasets

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")

NATIVE = [
    {"id": "a", "question": "Who?", "context": [{"id": "d1", "text": "Ada wrote it."}], "response": "Ada [d1].",
     "samples": ["Ada did."], "metadata": {"k": "v"}, "expected": {"entailment": "pass"}},
    {"id": "b", "context": ["first", "second"], "response": "It was Bob.", "expected": {"entailment": "fail"}},
]


def _first(path: Path, n: int = 1) -> list[dict]:
    rows = []
    with path.open() as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def _load_one(tmp_path: Path, rows: list[dict]) -> list[EvalCase]:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_datasets([path], on_malformed="fail")
    return loaded.cases


def _assert_native(cases: list[EvalCase]) -> None:
    a, b = cases
    assert a.id == "a" and a.case.question == "Who?" and a.case.response == "Ada [d1]."
    assert [(p.id, p.text) for p in a.case.context] == [("d1", "Ada wrote it.")]
    assert a.case.samples == ("Ada did.",) and a.case.metadata == {"k": "v"}
    assert a.expected == {"entailment": True} and b.expected == {"entailment": False}
    assert [(p.id, p.text) for p in b.case.context] == [("1", "first"), ("2", "second")]


def test_jsonl_native_rows(tmp_path: Path) -> None:
    cases = _load_one(tmp_path, NATIVE)
    _assert_native(cases)
    assert cases[1].source.endswith("d.jsonl:2")


def test_csv_with_json_cells(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "question", "context", "response", "samples", "metadata", "expected"])
        w.writeheader()
        for r in NATIVE:
            w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    cases = load_datasets([path], on_malformed="fail").cases
    _assert_native(cases)
    assert cases[0].source.endswith("d.csv:2") and cases[1].source.endswith("d.csv:3")


def test_parquet_native_and_external_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    rows = [{**r, "context": json.dumps(r["context"])} for r in NATIVE]
    table = pa.Table.from_pylist([{"id": r["id"], "response": r["response"], "question": r.get("question"),
                                   "context": r["context"]} for r in rows])
    pq.write_table(table, path)
    cases = load_datasets([path], on_malformed="fail").cases
    assert [c.id for c in cases] == ["a", "b"]
    # a JSON string in a Parquet cell is a plain string: one passage holding it (no guessing at structure)
    assert cases[1].case.context[0].text == json.dumps(["first", "second"])
    assert cases[0].case.question == "Who?" and cases[1].case.question == ""


@needs_data
def test_halueval_qa_adapter(tmp_path: Path) -> None:
    rows = [r for r in _first(DATA / "dev/halueval_qa.jsonl", 4)]
    cases = _load_one(tmp_path, rows)
    for row, c in zip(rows, cases, strict=True):
        assert c.task == "qa_groundedness" and c.case.response == row["response"]
        assert c.case.question == row["question"] and c.case.context[0].text == row["context"]
        assert c.expected == {"entailment": row["label"] == "supported"}
        assert "label" not in c.case.metadata  # the checks never see the answer key


@needs_data
def test_wice_adapter_keeps_sentences_as_passages(tmp_path: Path) -> None:
    rows = _first(DATA / "dev/wice_claims.jsonl", 30)
    cases = _load_one(tmp_path, rows)
    labels = {c.label: c.expected["entailment"] for c in cases}
    assert labels.get("supported") is True and labels.get("partially_supported") is False
    for row, c in zip(rows, cases, strict=True):
        assert c.case.response == row["response"]
        if len(row["context"]) <= 64:
            assert [p.text for p in c.case.context] == row["context"]
        else:  # packed into at most 64 passages, nothing lost
            assert len(c.case.context) <= 64
            assert " ".join(p.text for p in c.case.context) == " ".join(row["context"])


@needs_data
@pytest.mark.parametrize("name", ["climate_fever_pairs", "snli_test", "anli_dev"])
def test_nli_adapters(tmp_path: Path, name: str) -> None:
    rows = _first(DATA / f"dev/{name}.jsonl", 12)
    cases = _load_one(tmp_path, rows)
    for row, c in zip(rows, cases, strict=True):
        assert c.case.context[0].text == row["context"] and c.case.response == row["response"]
        assert c.expected == {"entailment": row["label"] == "entailment"}


@needs_data
def test_self_consistency_pair_adapter(tmp_path: Path) -> None:
    rows = _first(DATA / "dev/chatprotect_selfcontradiction.jsonl", 20)
    cases = _load_one(tmp_path, rows)
    for row, c in zip(rows, cases, strict=True):
        assert c.case.response == row["response"][0] and c.case.samples == (row["response"][1],)
        assert c.expected == {"self_consistency": row["label"] == "consistent"}


@needs_data
def test_pii_spans_adapter_builds_leak_and_asked_cases(tmp_path: Path) -> None:
    rows = _first(DATA / "dev/presidio_pii.jsonl", 10)
    cases = _load_one(tmp_path, rows)
    assert len(cases) == 2 * len(rows)
    by_id = {c.id: c for c in cases}
    email = {"id": "x", "task": "pii_spans", "response": "Mail me at jo@example.com",
             "label": [{"entity_type": "EMAIL_ADDRESS", "start": 11, "end": 25, "value": "jo@example.com"}]}
    age = {"id": "y", "task": "pii_spans", "response": "She is 22.",
           "label": [{"entity_type": "AGE", "start": 7, "end": 9, "value": "22"}]}
    extra = {c.id: c for c in _load_one(tmp_path, [email, age])}
    assert extra["x#leak"].expected == {"pii_boundary": False}
    assert extra["x#leak"].case.context[0].text == email["response"] and extra["x#leak"].case.question == ""
    assert extra["x#asked"].expected == {"pii_boundary": True} and extra["x#asked"].case.question == email["response"]
    assert extra["y#leak"].expected == {"pii_boundary": True}  # an age alone identifies nobody
    assert all(c.id.endswith(("#leak", "#asked")) for c in by_id.values())


def test_malformed_rows_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"id": "ok1", "response": "fine"}) + "\n"
        + "{not json\n"
        + "\n"
        + json.dumps({"id": "r4", "response": ""}) + "\n"
        + json.dumps({"id": "r5", "task": "nli", "context": "p", "response": "h", "label": "maybe"}) + "\n"
        + json.dumps([1, 2]) + "\n"
        + json.dumps({"id": "ok1", "response": "duplicate"}) + "\n"
        + json.dumps({"id": "r8", "task": "mystery", "response": "x"}) + "\n"
        + json.dumps({"id": "ok2", "response": "also fine"}) + "\n"
    )
    loaded = load_datasets([path], on_malformed="skip")
    assert [c.id for c in loaded.cases] == ["ok1", "ok2"]
    lines = {int(m.source.rsplit(":", 1)[1]): m.reason for m in loaded.malformed}
    assert sorted(lines) == [2, 4, 5, 6, 7, 8]
    assert "invalid JSON" in lines[2] and "'response' is empty" in lines[4] and "'maybe'" in lines[5]
    assert "JSON object" in lines[6] and "duplicate case id 'ok1'" in lines[7] and "mystery" in lines[8]
    with pytest.raises(DatasetError) as err:
        load_datasets([path], on_malformed="fail")
    assert len(err.value.malformed) == 6 and f"{path}:4" in str(err.value)


def test_csv_malformed_row_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('id,response,context\nr1,fine,\nr2,,\nr3,"multi\nline answer","[broken"\nr4,ok,\n')
    loaded = load_datasets([path])
    assert [c.id for c in loaded.cases] == ["r1", "r4"]
    assert [m.source.rsplit(":", 1)[1] for m in loaded.malformed] == ["3", "4"]


def test_unsupported_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unsupported format"):
        list(iter_dataset(tmp_path / "x.xlsx"))
    with pytest.raises(DatasetError, match="no such file"):
        list(iter_dataset(tmp_path / "x.jsonl"))


@needs_data
def test_every_shared_file_loads_without_malformed_rows() -> None:
    files = sorted((DATA / "dev").glob("*.jsonl"))
    assert len(files) >= 7
    loaded = load_datasets(files, on_malformed="skip")
    assert not loaded.malformed, [str(m) for m in loaded.malformed[:5]]
    invariants = {name for c in loaded.cases for name in c.expected}
    assert invariants == {"entailment", "self_consistency", "pii_boundary"}
