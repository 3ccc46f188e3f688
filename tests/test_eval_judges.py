"""Offline evals with cross-family judges and sampled responses, through the CLI and through a real server.

`guardrail eval` runs every secondary judge on every case (unless told otherwise), writes each judge's view into the
rows, and reports the disagreement rate, per-judge accuracy and the disagreeing cases; `--sampler` obtains samples
for self_consistency from an OpenAI-compatible endpoint (the fake one: no LLM runs here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.evals.backends import LocalBackend, RemoteBackend
from guardrail_server.evals.datasets import load_datasets
from guardrail_server.evals.results import read_manifest, read_rows
from guardrail_server.evals.runner import run_eval
from tests.conftest import make_config, only, running_server
from tests.fake_openai import FakeOpenAI

GROUNDED = [
    {"id": "g1", "question": "Where is the Eiffel Tower?", "context": ["The Eiffel Tower is in Paris, France."],
     "response": "The Eiffel Tower is in Paris.", "expected": {"entailment": "pass"}},
    {"id": "g2", "question": "When was it built?", "context": ["The tower was built between 1887 and 1889."],
     "response": "It was completed in 1925 by Gustave Klimt.", "expected": {"entailment": "fail"}},
    {"id": "g3", "question": "How tall is it?", "context": ["The tower is 330 metres tall."],
     "response": "The tower is 330 metres tall.", "expected": {"entailment": "pass"}},
    {"id": "g4", "question": "Who designed it?", "context": ["The tower was designed by the company of Gustave Eiffel."],
     "response": "It was designed by Antoni Gaudi in Barcelona.", "expected": {"entailment": "fail"}},
]
JUDGED = only("{entailment: {options: {judges: [nli, alignment], disagreement_margin: 0.01}}}")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_runs_every_judge_on_every_case_and_reports_disagreement(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "grounded.jsonl", GROUNDED)
    out = tmp_path / "run"
    # the served default samples 10% of cases for the secondary; offline every case is judged by both
    assert main(["eval", str(data), "--out", str(out), "--invariant", "entailment", "--no-progress",
                 "--set", JUDGED]) == 0
    rows = read_rows(out)
    assert len(rows) == 4 and all(r["judges_disagree"] is not None for r in rows)
    for r in rows:
        judges = json.loads(r["judges"])
        assert list(judges) == [r["judge"], "alignment"]  # the primary (the verdict's judge) first
        assert {j["family"] for j in judges.values()} == {"bert-minilm", "lexical-alignment"}
    summary = json.loads((out / "summary.json").read_text())["entailment"]
    panel = summary["judges"]
    assert panel["n"] == 4 and panel["n_disagree"] == sum(r["judges_disagree"] for r in rows) > 0
    assert summary["disagreement_rate"] == pytest.approx(panel["n_disagree"] / 4)
    assert set(panel["per_judge"]) == {rows[0]["judge"], "alignment"}
    assert all(a["n"] == 4 for a in panel["per_judge"].values())
    sliced = (panel["primary_when_agree"] or {"n": 0})["n"] + (panel["primary_when_disagree"] or {"n": 0})["n"]
    assert sliced == 4
    printed = capsys.readouterr().out
    assert "### Judges" in printed and "alignment alone" in printed
    html = (out / "report.html").read_text()
    assert "Disagreeing cases" in html
    disagreeing = [r["case_id"] for r in rows if r["judges_disagree"]]
    assert any(f"<code>{cid}</code>" in html.split("Disagreeing cases")[1].split("Worst cases")[0]
               for cid in disagreeing)
    # gates can hold the disagreement rate
    assert main(["eval", str(data), "--out", str(tmp_path / "gated"), "--invariant", "entailment", "--no-progress",
                 "--set", JUDGED, "--fail-if", "entailment.disagreement_rate > 0"]) == 1


def test_secondary_fraction_zero_leaves_the_judge_columns_empty(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "grounded.jsonl", GROUNDED[:2])
    out = tmp_path / "run"
    assert main(["eval", str(data), "--out", str(out), "--invariant", "entailment", "--no-progress",
                 "--set", JUDGED, "--secondary-fraction", "0"]) == 0
    rows = read_rows(out)
    assert [r["judges_disagree"] for r in rows] == [None, None]
    assert json.loads((out / "summary.json").read_text())["entailment"]["judges"] is None
    assert "### Judges" not in capsys.readouterr().out


async def test_judge_views_survive_the_wire_and_match_in_process(tmp_path: Path) -> None:
    config = make_config(
        {"entailment": {"options": {"judges": ["nli", "alignment"], "secondary_fraction": 1.0,
                                    "disagreement_margin": 0.01}}})
    loaded = load_datasets([_write(tmp_path / "grounded.jsonl", GROUNDED)])
    local = await run_eval(LocalBackend(config), loaded, tmp_path / "local", progress=False)
    async with running_server(config) as (_, target):
        remote = await run_eval(RemoteBackend(target), loaded, tmp_path / "remote", progress=False)
    by_case = {r["case_id"]: r for r in remote.rows}
    assert len(local.rows) == len(remote.rows) == 4
    for r in local.rows:
        other = by_case[r["case_id"]]
        assert r["judges_disagree"] == other["judges_disagree"] is not None
        a, b = json.loads(r["judges"]), json.loads(other["judges"])
        assert list(a) == list(b)
        for name in a:
            assert a[name]["outcome"] == b[name]["outcome"]
            assert a[name]["score"] == pytest.approx(b[name]["score"], abs=1e-2)  # batch mates differ


def _sut(body: dict) -> object:
    """The system under test: its samples contradict the checked date, agree about the place, fail on 'broken'."""
    if not body.get("messages"):
        return 400, None  # not a chat request (seen once: an empty body); the client retries
    question = body["messages"][-1]["content"]
    if "broken" in question:
        return 500, None
    if "completed" in question:
        return "The Eiffel Tower was completed in 1925."
    return "The Eiffel Tower stands in Paris."


def test_eval_sampler_fills_samples_for_self_consistency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        {"id": "paris", "question": "Where is the Eiffel Tower?", "response": "The Eiffel Tower is in Paris."},
        {"id": "date", "question": "When was the Eiffel Tower completed?",
         "response": "The Eiffel Tower was completed in 1889."},
        {"id": "own", "question": "Where is it?", "response": "It is in Rome.", "samples": ["It is in Rome."]},
        {"id": "broken", "question": "A broken question?", "response": "Anything at all."},
    ]
    data = _write(tmp_path / "sc.jsonl", cases)
    out = tmp_path / "run"
    with FakeOpenAI(_sut) as fake:
        code = main(["eval", str(data), "--out", str(out), "--invariant", "self_consistency", "--no-progress",
                     "--sampler", fake.url, "--sampler-model", "sut", "--samples", "3",
                     "--sampler-temperature", "0.8"])
        asked = [b for b in fake.requests if b.get("messages") and "broken" not in b["messages"][-1]["content"]]
    assert code == 0
    assert len(asked) == 6  # 3 samples for each of the two cases that had none ("own" keeps its own)
    assert all(b["temperature"] == 0.8 and b["model"] == "sut" for b in asked)
    outcome = {r["case_id"]: r["outcome"] for r in read_rows(out)}
    assert outcome == {"paris": "pass", "date": "fail", "own": "pass", "broken": "skipped"}
    err = capsys.readouterr().err
    assert "broken: sampling failed" in err
    sampler = read_manifest(out)["sampler"]
    assert sampler["cases_sampled"] == 2 and sampler["cases_failed"] == 1 and sampler["samples"] == 3
    with FakeOpenAI(_sut) as fake:  # resuming: only the case with no rows yet would be sampled again — none here
        assert main(["eval", "--resume", "--out", str(out), "--invariant", "self_consistency", "--no-progress",
                     "--sampler", fake.url, "--sampler-model", "sut", "--samples", "3"]) == 0
        assert fake.requests == []


def test_eval_sampler_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "sc.jsonl", [{"id": "a", "question": "Q?", "response": "R."}])
    base = ["eval", str(data), "--out", str(tmp_path / "run"), "--no-progress", "--invariant", "self_consistency"]
    assert main([*base, "--sampler", "http://127.0.0.1:9/v1"]) == 2
    assert "--sampler-model" in capsys.readouterr().err
    assert main([*base, "--sampler", "http://127.0.0.1:9/v1", "--sampler-model", "m",
                 "--sampler-temperature", "0"]) == 2
    assert "temperature > 0" in capsys.readouterr().err
    with FakeOpenAI(lambda body: (500, None)) as fake:
        assert main([*base, "--sampler", fake.url, "--sampler-model", "m"]) == 2
    assert "failed for every case" in capsys.readouterr().err
