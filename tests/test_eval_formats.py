"""`guardrail eval` reads every task format of ../shared/data (plus summaries and grounded dialogue), refuses a run
over 0 cases, and scores a skipped check the way the service treats it (allowed)."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.evals.datasets import EvalCase, Malformed, iter_dataset
from guardrail_server.evals.summary import summarize_invariant

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = sorted(p for p in DATA.glob("*/*") if p.name.endswith((".jsonl", ".jsonl.gz")))


def test_the_shared_data_has_files() -> None:
    assert len(FILES) >= 9  # dev sets + train/snli_dev + the gzip training mix


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_shared_file_reads_without_a_malformed_row(path: Path) -> None:
    items = list(itertools.islice(iter_dataset(path), 300))
    malformed = [str(i) for i in items if isinstance(i, Malformed)]
    assert malformed == []
    cases = [i for i in items if isinstance(i, EvalCase)]
    assert cases and all(c.case.response.strip() for c in cases)
    assert all(c.expected for c in cases)  # every external row carries its label as an expected outcome


def test_training_mix_pairs_become_entailment_cases(tmp_path: Path) -> None:
    binary = _write(tmp_path / "pairs.jsonl", [{"premise": ARTICLE, "hypothesis": "A library is planned.",
                                                "label": "entailment"},
                                               {"premise": ARTICLE, "hypothesis": "A zoo is planned.",
                                                "label": "not_entailment"}])
    assert [i.expected for i in iter_dataset(binary)] == [{"entailment": True}, {"entailment": False}]
    mix = DATA / "train" / "groundedness_mix_v1.jsonl.gz"
    labels = {}
    for item in itertools.islice(iter_dataset(mix), 2000):
        assert isinstance(item, EvalCase)
        labels[item.label] = item.expected["entailment"]
    assert labels.pop("entailment") is True
    assert labels and set(labels.values()) == {False}


def _write(path: Path, rows: list[dict], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


ARTICLE = ("The city council of Springfield voted on Tuesday to build a new library downtown. The library will cost "
           "12 million dollars and open in 2027. Mayor Ann Lee said the old building was too small.")


@pytest.mark.parametrize("gz", [False, True])
def test_summary_and_dialogue_groundedness(tmp_path: Path, gz: bool) -> None:
    rows = [
        {"id": "s1", "task": "summary_groundedness", "context": ARTICLE, "label": "supported",
         "response": "Springfield will build a new library downtown. It opens in 2027."},
        {"id": "s2", "task": "summary_groundedness", "context": ARTICLE, "label": "hallucinated",
         "response": "Springfield will build a new stadium. It opens in 2030."},
        {"id": "d1", "task": "dialogue_groundedness", "context": [ARTICLE], "question": "User: what's new in town?",
         "response": "The council voted to build a new library that will cost 12 million dollars.",
         "label": "supported"},
    ]
    path = _write(tmp_path / ("sum.jsonl.gz" if gz else "sum.jsonl"), rows, gz=gz)
    items = list(iter_dataset(path))
    assert [type(i) for i in items] == [EvalCase] * 3
    assert [(i.task, i.expected) for i in items] == [
        ("summary_groundedness", {"entailment": True}), ("summary_groundedness", {"entailment": False}),
        ("dialogue_groundedness", {"entailment": True})]
    assert items[2].case.question == "User: what's new in town?"


def test_unknown_label_is_malformed_not_dropped(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", [{"task": "summary_groundedness", "context": ARTICLE, "response": "x",
                                             "label": "maybe"}])
    (item,) = list(iter_dataset(path))
    assert isinstance(item, Malformed) and "maybe" in item.reason


def test_a_run_over_zero_cases_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "broken.jsonl", [{"task": "qa_groundedness", "label": "supported"}])  # no response
    code = main(["eval", str(path), "--out", str(tmp_path / "run"), "--invariant", "reference_integrity",
                 "--no-progress"])
    assert code != 0
    assert "no cases to evaluate" in capsys.readouterr().err


def test_skipped_rows_are_counted_and_scored_as_allowed() -> None:
    def row(outcome: str, score: float, expected: str) -> dict:
        return {"outcome": outcome, "score": score, "threshold": 0.5, "expected": expected, "dataset": "d"}

    rows = [row("pass", 0.9, "pass"), row("fail", 0.1, "fail"), row("skipped", 1.0, "pass"),
            row("skipped", 1.0, "fail"), row("error", 0.0, "fail")]
    s = summarize_invariant(rows)
    assert s["n_skipped"] == 2
    labeled = s["labeled"]
    assert labeled["n"] == 4 and labeled["n_skipped"] == 2 and labeled["unscored"] == 1
    # the skipped violation is a miss (allowed), exactly as the service would have let it through
    assert labeled["confusion"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 2}
