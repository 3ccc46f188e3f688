"""`guardrail metamorph review`: seeds from a real (SQLite) review store, a YAML relation, our judges as the system
under test (a test invariant, no model), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.evals.results import read_manifest, read_rows
from tests.conftest import only
from tests.test_eval_review import _seed

KEYWORD = only("{test_keyword: {options: {word: forbidden}}}")


def test_metamorph_review_anchor_set_with_a_yaml_relation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    _seed(url)
    relations = tmp_path / "relations.yaml"
    relations.write_text("""
relations:
  - name: euphemism
    doc: "A synonym of the keyword must not change the keyword judge (it does: the judge is lexical)."
    replace: {forbidden: prohibited}
    fields: [response]
    invariants: [test_keyword]
""")
    out = tmp_path / "run"
    code = main(["metamorph", "review", "--anchor-set", "golden", "--review-url", url, "--relations",
                 str(relations), "--relation", "euphemism", "--out", str(out), "--no-progress", "--set", KEYWORD,
                 "--fail-if", "euphemism@test_keyword.n_fail != 2"])
    assert code == 0, capsys.readouterr().err
    rows = {r["case_id"]: r for r in read_rows(out)}
    assert set(rows) == {"s1~euphemism", "s2~euphemism"}  # s0 has no 'forbidden': nothing to transform
    assert {r["outcome"] for r in rows.values()} == {"fail"}
    assert rows["s1~euphemism"]["response"] == "this is prohibited"
    manifest = read_manifest(out)
    assert manifest["review"] == {"anchor_set": "golden", "version": 1}
    assert manifest["relations"]["euphemism"]["not_applicable"] == 1
    pair = json.loads((out / "pairs.jsonl").read_text().splitlines()[0])
    assert pair["outputs"]["test_keyword"]["source"]["label"] == "fail"
    assert pair["outputs"]["test_keyword"]["followup"]["label"] == "pass"
    assert main(["metamorph", "review", "--review-url", url, "--out", str(tmp_path / "x")]) == 2
