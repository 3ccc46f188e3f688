"""`guardrail eval review`: production samples from a real (SQLite) review store replayed through the invariants,
with people's labels as the expected outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.evals.results import read_manifest, read_rows
from guardrail_server.review.records import Pending, to_record
from guardrail_server.review.store import ReviewStore
from guardrail_invariants.types import Case, Outcome, Verdict
from tests.conftest import only

KEYWORD = only("{test_keyword: {options: {word: forbidden}}}")


def _seed(url: str) -> list[str]:
    texts = ["fine answer", "this is forbidden", "also forbidden here", "harmless", "forbidden again"]
    stamps = [datetime(2026, 1, d, tzinfo=UTC).timestamp() for d in (1, 2, 3, 10, 11)]
    records = []
    for i, (text, ts) in enumerate(zip(texts, stamps, strict=True)):
        verdict = Verdict("test_keyword", Outcome.PASS, 1.0, 0.5)
        records.append(to_record(Pending(f"s{i}", ts, Case(response=text, request_id=f"r{i}", app="demo"),
                                         [verdict], "allow", ("random",)), None))
    with ReviewStore(url) as store:
        store.insert_samples(records)
        store.save_annotation("s0", "ann", {"test_keyword": "pass"}, "ok")
        store.save_annotation("s1", "ann", {"test_keyword": "fail"}, "says forbidden")
        store.save_annotation("s2", "ann", {"test_keyword": "pass"}, "a person disagrees")
        store.create_anchor_set("golden", ["s0", "s1", "s2"])
    return [r["id"] for r in records]


def test_eval_review_anchor_set_and_date_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    _seed(url)
    common = ["--review-url", url, "--no-progress", "--set", KEYWORD]
    assert main(["eval", "review", "--anchor-set", "golden", "--out", str(tmp_path / "a"), *common]) == 0
    rows = {r["case_id"]: r for r in read_rows(tmp_path / "a")}
    assert set(rows) == {"s0", "s1", "s2"}
    assert [rows[s]["outcome"] for s in ("s0", "s1", "s2")] == ["pass", "fail", "fail"]
    assert [rows[s]["expected"] for s in ("s0", "s1", "s2")] == ["pass", "fail", "pass"]
    assert read_manifest(tmp_path / "a")["review"] == {"anchor_set": "golden", "version": 1}
    assert "| test_keyword | 3 |" in capsys.readouterr().out

    assert main(["eval", "review", "--since", "2026-01-02", "--until", "2026-01-10T12:00:00",
                 "--out", str(tmp_path / "b"), *common]) == 0
    rows = {r["case_id"]: r for r in read_rows(tmp_path / "b")}
    assert set(rows) == {"s1", "s2", "s3"}
    assert rows["s3"]["expected"] is None and rows["s3"]["outcome"] == "pass"

    assert main(["eval", "review", "--anchor-set", "nope", "--out", str(tmp_path / "c"), *common]) == 2
    assert "golden" in capsys.readouterr().err
    assert main(["eval", "review", "--out", str(tmp_path / "d"), *common]) == 2
    assert main(["eval", "review", "--since", "yesterday", "--out", str(tmp_path / "e"), *common]) == 2
