"""The project's own rewording dev set (data/rewording_dev/rewording_dev_v1.jsonl, issue 19 item 4): its schema,
size and balance, its independence from ../shared/data/dev, and that the eval reader turns every row into a case.

Generator-free on purpose: the set measures the judge independently of models/training/generator.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from guardrail_server.evals.datasets import load_datasets

ROOT = Path(__file__).resolve().parents[1]
SET = ROOT / "data" / "rewording_dev" / "rewording_dev_v1.jsonl"
SHARED_DEV = ROOT.parent / "shared" / "data" / "dev"

DOMAINS = {"product_docs", "company_policy", "science", "history", "health", "finance", "software",
           "travel_everyday"}
POSITIVE_KINDS = {"unit_abbreviation", "unit_conversion", "number_format", "date_time_format", "aggregation",
                  "clause_reorder", "apposition_relative", "hypernym", "passive_active", "dropped_detail",
                  "synonym_paraphrase", "multi_sentence_synthesis"}
NEGATIVE_KINDS = {"number_swap", "unit_swap", "date_time_swap", "entity_swap", "negation", "unsupported_addition",
                  "wrong_aggregation", "role_swap", "quantifier_change", "partial_support"}
SOURCE = {"repo": "guardrail-sidecar", "path": "data/rewording_dev/rewording_dev_v1.jsonl", "license": "CC0-1.0",
          "note": "written for this project"}
RUN = 12  # words: a shared run this long means copied text


def _rows() -> list[dict]:
    with SET.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


ROWS = _rows()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _runs(text: str, n: int = RUN) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def test_schema() -> None:
    keys = {"id", "task", "context", "question", "response", "label", "meta", "source"}
    for r in ROWS:
        assert set(r) == keys, r.get("id")
        assert isinstance(r["id"], str) and r["id"]
        assert r["task"] == "qa_groundedness"
        assert isinstance(r["context"], str) and r["context"].strip()
        n_sentences = len(re.findall(r"[.!?](?=\s|$)", r["context"]))
        assert 1 <= n_sentences <= 4, (r["id"], n_sentences)
        assert r["question"] is None or (isinstance(r["question"], str) and r["question"].strip())
        assert isinstance(r["response"], str) and r["response"].strip()
        assert r["label"] in ("supported", "hallucinated")
        assert set(r["meta"]) == {"domain", "kind", "pair"}
        assert r["meta"]["domain"] in DOMAINS
        kinds = POSITIVE_KINDS if r["label"] == "supported" else NEGATIVE_KINDS
        assert r["meta"]["kind"] in kinds, (r["id"], r["meta"]["kind"], r["label"])
        assert r["source"] == SOURCE


def test_size_balance_and_domains() -> None:
    assert len(ROWS) >= 300
    labels = Counter(r["label"] for r in ROWS)
    assert min(labels["supported"], labels["hallucinated"]) >= 0.4 * len(ROWS), labels
    domains = Counter(r["meta"]["domain"] for r in ROWS)
    assert sum(1 for n in domains.values() if n >= 25) >= 7, domains


def test_ids_unique_and_pairs_consistent() -> None:
    ids = [r["id"] for r in ROWS]
    assert len(ids) == len(set(ids))
    by_pair: dict[str, set[str]] = {}
    for r in ROWS:
        by_pair.setdefault(r["meta"]["pair"], set()).add(r["context"])
    assert all(len(c) == 1 for c in by_pair.values()), "one context per pair"
    # every context has at least one correct rewording and at least one hallucination
    for pair in by_pair:
        assert {r["label"] for r in ROWS if r["meta"]["pair"] == pair} == {"supported", "hallucinated"}, pair


def test_no_response_equals_its_context() -> None:
    norm = lambda s: " ".join(_words(s))  # noqa: E731
    assert not [r["id"] for r in ROWS if norm(r["response"]) == norm(r["context"])]


def test_no_response_is_labelled_both_ways() -> None:
    seen: dict[tuple[str, str], str] = {}
    for r in ROWS:
        key = (r["context"], r["response"])
        assert seen.setdefault(key, r["label"]) == r["label"], r["id"]


@pytest.mark.skipif(not SHARED_DEV.is_dir(), reason=f"shared dev data not found at {SHARED_DEV}: "
                                                    "the overlap check against ../shared/data/dev cannot run")
def test_contexts_share_no_12_word_run_with_shared_dev_contexts() -> None:
    ours: dict[tuple[str, ...], str] = {}
    for r in ROWS:
        for run in _runs(r["context"]):
            ours.setdefault(run, r["id"])
    checked = 0
    hits = []
    for path in sorted(SHARED_DEV.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if not isinstance(row.get("context"), str):
                    continue
                checked += 1
                hits += [(ours[run], path.name, row.get("id")) for run in _runs(row["context"]) if run in ours]
    assert checked > 0, "no dev file with string contexts found"
    assert not hits, hits[:10]


def test_eval_reader_turns_every_row_into_a_case() -> None:
    loaded = load_datasets([SET], on_malformed="fail")
    assert not loaded.malformed
    assert len(loaded.cases) == len(ROWS)
    by_id = {r["id"]: r for r in ROWS}
    for case in loaded.cases:
        row = by_id[case.id]
        assert case.dataset == "rewording_dev_v1" and case.task == "qa_groundedness"
        assert case.expected == {"entailment": row["label"] == "supported"}
        assert case.label == row["label"]
        assert case.case.response == row["response"]
        assert [p.text for p in case.case.context] == [row["context"]]
        assert case.case.question == (row["question"] or "")
