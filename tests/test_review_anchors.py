"""Anchor selection (coverage, diversity), freezing, JSONL export/import across backends; terminal labeling."""

from __future__ import annotations

import io
import json
import sys
import uuid
from pathlib import Path

import pytest

from guardrail_server.review import anchors, terminal
from guardrail_server.review.records import Pending, to_record
from guardrail_server.review.store import ReviewStore
from tests.test_review_calibration import _run
from tests.review_support import make_case, verdict

INVS = ("entailment", "reference_integrity")
TOPICS = [
    "rent", "deposit", "pets", "parking", "noise", "repairs", "heating", "keys", "subletting", "insurance",
    "garden", "painting", "smoke alarms", "bicycles", "laundry", "internet", "trash", "guests", "moving out",
    "utilities", "storage", "balcony", "elevator", "mail", "windows", "locks", "furniture", "pests", "water", "fire",
]


def _add(store: ReviewStore, i: int, response: str, labels: dict[str, str], critique: str = "") -> str:
    case = make_case(i, response=response)
    v = [verdict(inv, 0.8 if labels.get(inv, "pass") == "pass" else 0.2) for inv in INVS]
    rec = to_record(Pending(str(uuid.uuid4()), 1.7e9 + i, case, v, "flag", ("failure",)), None)
    store.insert_samples([rec])
    store.save_annotation(rec["id"], "alice", labels, critique)
    return rec["id"]


def _pool(store: ReviewStore) -> tuple[list[str], list[str]]:
    distinct = []
    for i, topic in enumerate(TOPICS):
        labels = {"entailment": "fail" if i % 5 == 0 else "pass", "reference_integrity": "fail" if i % 7 == 0 else "pass"}
        distinct.append(_add(store, i, f"The lease says {topic} rules apply {i} times per year [doc-1].", labels,
                             f"critique about {topic}" if i % 2 else ""))
    dups = [
        _add(store, 100 + j, "Identical boilerplate answer about the lease.", {"entailment": "pass", "reference_integrity": "pass"})
        for j in range(20)
    ]
    return distinct, dups


def test_selection_covers_every_invariant_and_outcome_and_avoids_near_duplicates(store: ReviewStore) -> None:
    _, dups = _pool(store)
    chosen, missing = anchors.select(store.labeled_samples(), size=25, per_cell=2)
    assert len(chosen) == 25 and len(set(chosen)) == 25 and missing == []
    by_id = {s["id"]: s for s in store.labeled_samples()}
    for inv in INVS:
        for lab in ("pass", "fail"):
            assert sum(by_id[c]["labels"][inv] == lab for c in chosen) >= 2, (inv, lab)
    assert sum(c in dups for c in chosen) <= 1
    assert anchors.select(store.labeled_samples(), size=25) == (chosen, missing)  # deterministic


def test_cli_freezes_versions_and_refuses_gaps(store: ReviewStore, store_url: str, capsys) -> None:  # noqa: ANN001, F811
    for i in range(5):
        _add(store, i, f"answer {i}", {"entailment": "pass"})
    assert _run("anchors", "select", "--url", store_url, "--set", "invariants={}") == 2  # no 'fail' for entailment
    assert "no labeled case has this outcome" in capsys.readouterr().out
    assert store.anchor_sets() == []
    assert _run("anchors", "select", "--url", store_url, "--set", "invariants={}", "--force", "--size", "3") == 0
    assert _run("anchors", "select", "--url", store_url, "--set", "invariants={}", "--force", "--size", "4") == 0
    sets = store.anchor_sets()
    assert [(s["version"], s["size"]) for s in sets] == [(1, 3), (2, 4)]
    assert len(store.anchor_set("default", 1)["sample_ids"]) == 3  # version 1 is frozen
    assert len(store.anchor_set("default")["sample_ids"]) == 4


def test_export_import_round_trip_with_critiques(store: ReviewStore, tmp_path: Path) -> None:
    _pool(store)
    chosen, _ = anchors.select(store.labeled_samples(), size=22)
    frozen = store.create_anchor_set("default", chosen, "first set")
    out = tmp_path / "anchors" / "default.jsonl"
    anchors.export_jsonl(store, "default", frozen["version"], out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 22 and all(line["format"] == anchors.FORMAT for line in lines)

    # into a fresh SQLite store, whatever backend the set came from
    with ReviewStore(f"sqlite:///{tmp_path / 'other.db'}") as other:
        info = anchors.import_jsonl(other, out)
        assert (info["name"], info["version"], info["size"]) == ("default", 1, 22)
        imported = {s["id"]: s for s in other.labeled_samples()}
        original = {s["id"]: s for s in store.labeled_samples(chosen)}
        assert other.anchor_set("default")["sample_ids"] == chosen
        for sid in chosen:
            a, b = original[sid], imported[sid]
            assert (a["case"], a["verdicts"], a["labels"]) == (b["case"], b["verdicts"], b["labels"])
            assert [x["critique"] for x in a["annotations"]] == [x["critique"] for x in b["annotations"]]
        # importing the same file again freezes a new version, without duplicating cases
        assert anchors.import_jsonl(other, out, name="default")["version"] == 2
        assert other.count_samples() == 22


def test_terminal_labels_skips_and_quits(store: ReviewStore) -> None:
    fail = to_record(Pending(str(uuid.uuid4()), 1.7e9, make_case(1), [verdict("entailment", 0.2), verdict("reference_integrity", 0.9)], "flag", ("failure",)), None)
    dis = to_record(Pending(str(uuid.uuid4()), 1.7e9 + 1, make_case(2), [verdict("entailment", 0.9), verdict("reference_integrity", 0.9)], "allow", ("disagreement",)), None)
    rnd = to_record(Pending(str(uuid.uuid4()), 1.7e9 + 2, make_case(3), [verdict("entailment", 0.9)], "allow", ("random",)), None)
    store.insert_samples([rnd, fail, dis])
    # disagreement first: 'pf' labels both invariants at once; then the failure: Enter agrees with the judge
    # (fail), 'p' overrides; then skip the random one; then the queue is empty
    keys = "pf\nthe citation is fine, the claim is not\n\np\n\ns\n"
    out = io.StringIO()
    assert terminal.run(store, "dana", io.StringIO(keys), out) == 2
    text = out.getvalue()
    assert text.index(make_case(2).response) < text.index(make_case(1).response) < text.index(make_case(3).response)
    assert "queue empty" in text
    got = {s["id"]: s for s in store.labeled_samples()}
    assert got[dis["id"]]["labels"] == {"entailment": "pass", "reference_integrity": "fail"}
    assert got[dis["id"]]["annotations"][0]["critique"] == "the citation is fine, the claim is not"
    assert got[fail["id"]]["labels"] == {"entailment": "fail", "reference_integrity": "pass"}
    assert store.get_sample(rnd["id"])["status"] == "skipped"


def test_review_command_reads_stdin(store: ReviewStore, store_url: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001, E501, F811
    rec = to_record(Pending(str(uuid.uuid4()), 1.7e9, make_case(1), [verdict("entailment", 0.2)], "flag", ("failure",)), None)
    store.insert_samples([rec])
    monkeypatch.setattr(sys, "stdin", io.StringIO("f\nwrong date\nq\n"))
    assert _run("review", "--url", store_url, "--set", "invariants={}", "--reviewer", "erin") == 0
    assert "labeled 1 this session" in capsys.readouterr().out
    [a] = store.get_sample(rec["id"])["annotations"]
    assert (a["reviewer"], a["labels"], a["critique"]) == ("erin", {"entailment": "fail"}, "wrong date")
