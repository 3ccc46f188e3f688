"""`guardrail synth` end to end: documents in, a dataset `guardrail eval` runs, the summary, determinism, anchors
from a real review store, and `--llm` against the fake OpenAI endpoint (a same-family judge refused)."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from guardrail_server.cli import main
from guardrail_server.review.records import Pending, to_record
from guardrail_server.review.store import ReviewStore
from tests.conftest import only
from tests.fake_openai import FakeOpenAI
from tests.review_support import make_case, verdict
from tests.synth_support import write_docs


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_synth_writes_a_dataset_that_guardrail_eval_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = write_docs(tmp_path / "docs")
    out = tmp_path / "set.jsonl"
    assert main(["synth", str(docs), "--out", str(out), "--cases", "48", "--seed", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    summary = json.loads((tmp_path / "set.summary.json").read_text())
    assert summary["documents"] == 4 and summary["cases"] == len(rows) >= 40
    assert "passages 2-3" in printed and f"wrote {len(rows)} cases" in printed  # the grid table and the total
    kinds = Counter(r["meta"]["kind"] for r in rows)
    assert len(kinds) == 16 and sum(summary["per_cell"].values()) == len(rows)
    for key, n in summary["per_cell"].items():
        kind, length, passages, citation = key.split("|")
        assert n == sum(r["meta"]["kind"] == kind and r["meta"]["length"] == length and r["meta"]["passages"] == passages
                        and r["meta"]["citation"] == citation for r in rows)
    for r in rows:
        assert set(r) == {"id", "question", "context", "response", "expected", "label", "meta"}
        assert r["expected"]["entailment"] in ("pass", "fail") and r["context"] and r["question"]

    run = tmp_path / "run"
    code = main(["eval", str(out), "--out", str(run), "--no-progress", "--set", "workers.mode=inline",
                 "--set", only("{reference_integrity: {}, pii_boundary: {}}")])
    assert code == 0
    results = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    malformed = run / "malformed.jsonl"
    assert not malformed.exists() or not malformed.read_text().strip()
    assert len({r["case_id"] for r in results}) == len(rows)
    by_id = {r["id"]: r for r in rows}
    for r in results:
        kind = by_id[r["case_id"]]["meta"]["kind"]
        if r["invariant"] == "pii_boundary" and kind.startswith("pii_"):
            assert r["outcome"] == r["expected"], (kind, r["response"])
        if r["invariant"] == "reference_integrity" and kind == "dangling_citation":
            assert r["outcome"] == "fail" == r["expected"]
        if r["invariant"] == "reference_integrity" and r["expected"] == "pass":
            assert r["outcome"] == "pass", r["response"]  # every correct citation we write resolves


def test_same_seed_same_file(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", pdf=False)
    paths = [tmp_path / f"{n}.jsonl" for n in ("a", "b", "c")]
    for path, seed in zip(paths, (9, 9, 10), strict=True):
        assert main(["synth", str(docs), "--out", str(path), "--cases", "60", "--seed", str(seed), "--no-progress"]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_unreadable_input_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "nope"), "--out", str(tmp_path / "x.jsonl"), "--no-progress"]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["synth", str(tmp_path / "empty"), "--out", str(tmp_path / "x.jsonl"), "--no-progress"]) == 2
    assert "no documents" in capsys.readouterr().err
    assert main(["synth", str(tmp_path), "--out", str(tmp_path / "x.jsonl"), "--kind", "sarcasm"]) == 2
    assert "unknown case kind 'sarcasm'" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def _anchor(store: ReviewStore, i: int, labels: dict[str, str], critique: str) -> str:
    case = make_case(i, response=f"The tower opened in 18{i:02d} [1].")
    rec = to_record(Pending(str(uuid.uuid4()), 1.7e9 + i,
                            case, [verdict(inv, 0.8) for inv in labels], "flag", ("failure",)), None)
    store.insert_samples([rec])
    store.save_annotation(rec["id"], "alice", labels, critique)
    return rec["id"]


def test_anchors_in_the_review_store_steer_the_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    with ReviewStore(url) as store:
        ids = [_anchor(store, i, {"entailment": "fail"}, "Wrong year: the passage says 1889.") for i in range(3)]
        ids.append(_anchor(store, 3, {"pii_boundary": "fail"}, "It gave out the customer's phone number."))
        ids.append(_anchor(store, 4, {"entailment": "pass"}, "Fine."))
        store.create_anchor_set("golden", ids, "test")
    docs = write_docs(tmp_path / "docs", pdf=False)
    plain, steered = tmp_path / "plain.jsonl", tmp_path / "steered.jsonl"
    assert main(["synth", str(docs), "--out", str(plain), "--cases", "160", "--no-progress"]) == 0
    assert main(["synth", str(docs), "--out", str(steered), "--cases", "160", "--no-progress",
                 "--anchors", "golden", "--url", url]) == 0
    printed = capsys.readouterr().out
    assert "anchors golden v1 (5 cases): weights date_swap x3.00" in printed
    summary = json.loads((tmp_path / "steered.summary.json").read_text())
    assert summary["anchors"]["hits"]["date_swap"] > summary["anchors"]["hits"]["negation"] > 0
    before = Counter(r["meta"]["kind"] for r in _rows(plain))
    after = Counter(r["meta"]["kind"] for r in _rows(steered))
    assert after["date_swap"] > 1.5 * before["date_swap"]
    assert after["extracted"] < before["extracted"]
    assert summary["weights"]["pii_leak"] > summary["weights"]["pii_asked"] > summary["weights"]["extracted"] == 1
    assert sum(summary["per_kind"][k]["planned"] for k in summary["per_kind"]) == 160
    assert main(["synth", str(docs), "--out", str(steered), "--anchors", "missing", "--url", url]) == 2
    assert "no anchor set 'missing'" in capsys.readouterr().err
    # the same set exported to a file (`guardrail anchors export`) steers the same way, without a store
    exported = tmp_path / "golden.jsonl"
    assert main(["anchors", "export", "golden", "--url", url, "--out", str(exported)]) == 0
    from_file = tmp_path / "from_file.jsonl"
    assert main(["synth", str(docs), "--out", str(from_file), "--cases", "160", "--no-progress",
                 "--anchors", str(exported)]) == 0
    assert from_file.read_bytes() == steered.read_bytes()
    assert json.loads((tmp_path / "from_file.summary.json").read_text())["weights"] == summary["weights"]


# ---------------------------------------------------------------- --llm


def _passage_of(body: dict[str, Any]) -> str:
    return re.search(r"<<<\n(.*?)\n>>>", body["messages"][-1]["content"], flags=re.DOTALL).group(1)


def _llm_reply(body: dict[str, Any]) -> str:
    passage = _passage_of(body)
    first = re.split(r"(?<=\.)\s+", passage)[0]
    if "Observatory" in passage or "observatory" in passage:
        return "I cannot help with that."  # no JSON: an unusable reply
    if "club" in passage.lower():  # a "supported" answer the passage does not support: the judge rejects it
        return json.dumps({"question": "Who won the 1908 race?", "answer": "The club won the Boat Race in 1908 by "
                           "eleven lengths over Cambridge.", "wrong_answer": "The club was founded by Napoleon."})
    return json.dumps({"question": "What does the passage say first?", "answer": first,
                       "wrong_answer": "The moon landing took place in Brazil in 1740 with a crew of 300 monkeys."})


def test_llm_cases_are_kept_only_where_a_judge_of_another_family_agrees(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = write_docs(tmp_path / "docs", pdf=False)
    out = tmp_path / "set.jsonl"
    with FakeOpenAI(_llm_reply) as fake:
        code = main(["synth", str(docs), "--out", str(out), "--cases", "16", "--no-progress", "--llm", fake.url,
                     "--llm-model", "fake-model", "--llm-family", "llama-3", "--llm-passages", "11",
                     "--set", "invariants.pii_boundary.enabled=false"])
        requests = list(fake.requests)
    assert code == 0, capsys.readouterr().err
    assert len(requests) == 11 and all(r["temperature"] == 0.0 and r["seed"] == 0 for r in requests)
    summary = json.loads((tmp_path / "set.summary.json").read_text())["llm"]
    assert summary["family"] == "llama-3" and summary["judge_family"] == "bert-minilm"
    assert summary["asked"] == 11 and summary["unusable"] >= 1 and summary["rejected"] >= 1 and summary["kept"] >= 2
    llm_rows = [r for r in _rows(out) if r["meta"]["kind"].startswith("llm_")]
    assert len(llm_rows) == summary["kept"]
    for r in llm_rows:
        assert r["meta"]["generator"] == "llm:fake-model" and r["meta"]["generator_family"] == "llama-3"
        assert r["expected"]["entailment"] == ("pass" if r["meta"]["kind"] == "llm_supported" else "fail")
        assert "Boat Race" not in r["response"]  # the "supported" answer the judge rejected
    assert {r["meta"]["kind"] for r in llm_rows} == {"llm_supported", "llm_hallucinated"}
    assert "judged by minilm-groundedness-v2 (family bert-minilm)" in capsys.readouterr().out


def test_a_same_family_judge_is_refused_before_anything_runs(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    docs = write_docs(tmp_path / "docs", pdf=False)
    out = tmp_path / "set.jsonl"
    with FakeOpenAI(_llm_reply) as fake:
        code = main(["synth", str(docs), "--out", str(out), "--no-progress", "--llm", fake.url,
                     "--llm-model", "minilm-chat", "--llm-family", "BERT-MiniLM"])
        assert fake.requests == []
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "--llm-family 'BERT-MiniLM' is the family of the judge" in err and "grades its own homework" in err
    assert main(["synth", str(docs), "--out", str(out), "--llm", "http://127.0.0.1:9/v1", "--llm-model", "m"]) == 2
    assert "--llm needs --llm-model and --llm-family" in capsys.readouterr().err
