"""Systems under test: toy callables that are right or deliberately broken, monotonicity on a system that drops
detail as its context grows, and an OpenAI-compatible endpoint (the suite's one fake: no LLM runs here), all through
`guardrail metamorph` (results, report, gates)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from guardrail_server.cli import main
from guardrail_server.evals.compare import compare_runs
from guardrail_server.evals.datasets import load_datasets
from guardrail_server.evals.results import read_rows
from guardrail_server.metamorph.relations import build_relations
from guardrail_server.metamorph.runner import RunSettings, run_metamorph
from guardrail_server.metamorph.sut import CallableSUT
from guardrail_invariants.types import Case
from tests.fake_openai import FakeOpenAI

THINGS = [("lamp", "red"), ("door", "open"), ("cup", "warm"), ("box", "full"), ("bell", "loud"), ("kite", "blue"),
          ("vase", "tall"), ("desk", "new"), ("rug", "soft"), ("bowl", "empty")]


def seed_rows() -> list[dict[str, Any]]:
    rows = []
    for i, (thing, adj) in enumerate(THINGS):
        neg = "not " if i % 2 else ""
        rows.append({"id": f"toy-{i}", "question": f"Is the {thing} {adj}?", "response": "-",
                     "context": [f"The {thing} is {neg}{adj}. Laura Smith bought it because she needed something "
                                 f"beautiful.",
                                 "Several neighbours visited the garden afterwards and admired the flowers."]})
    return rows


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mm") / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in seed_rows()))
    return path


def _thing(question: str) -> str:
    return re.search(r"\bthe (\w+)", question, re.IGNORECASE).group(1).lower()  # type: ignore[union-attr]


def _answer(thing: str, texts: list[str]) -> str:
    for text in texts:
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if re.search(rf"\b{thing}\b", sentence, re.IGNORECASE):
                return "No." if re.search(r"\bnot\b|n't\b|\bnever\b", sentence, re.IGNORECASE) else "Yes."
    return "I don't know."


def correct_toy(case: Case) -> str:
    """Finds the sentence about the thing asked for, anywhere in the context, and reads its polarity."""
    return _answer(_thing(case.question), [p.text for p in case.context])


def broken_toy(case: Case) -> str:
    """Two defects: reads only the first passage, and ignores negation."""
    first = case.context[0].text if case.context else ""
    return "Yes." if re.search(rf"\b{_thing(case.question)}\b", first, re.IGNORECASE) else "I don't know."


async def biased_toy(case: Case) -> dict[str, str]:
    """Right, except that it inverts its answer when the context is about a woman (async, returns a mapping)."""
    answer = correct_toy(case)
    if re.search(r"\b(she|her)\b", " ".join(p.text for p in case.context), re.IGNORECASE):
        answer = {"Yes.": "No.", "No.": "Yes."}.get(answer, answer)
    return {"text": answer}


def failure_rates(out: Path) -> dict[str, tuple[int, int]]:
    """relation@target -> (failures, tests)."""
    rates: dict[str, list[int]] = {}
    for r in read_rows(out):
        cell = rates.setdefault(r["invariant"], [0, 0])
        cell[0] += r["outcome"] == "fail"
        cell[1] += r["outcome"] in ("pass", "fail")
    return {k: (v[0], v[1]) for k, v in rates.items()}


RELATIONS = ["paraphrase_synonym", "paraphrase_clause_order", "paraphrase_noise", "paraphrase_typo",
             "demographic_swap", "negation", "distractor_passage", "passage_shuffle"]


def run_toy(fn: Any, seeds: Path, out: Path) -> dict[str, tuple[int, int]]:
    loaded = load_datasets([seeds])
    outcome = asyncio.run(run_metamorph(CallableSUT(fn), build_relations(), loaded, out, RunSettings(),
                                        progress=False))
    assert outcome.status == "complete" and outcome.pairs >= 60
    return failure_rates(out)


def test_correct_toy_passes_every_relation(seeds: Path, tmp_path: Path) -> None:
    rates = run_toy(correct_toy, seeds, tmp_path / "ok")
    assert sorted(k.split("@")[0] for k in rates) == sorted(RELATIONS)
    assert all(tests == len(THINGS) for _, tests in rates.values()), rates
    assert {k: f for k, (f, _) in rates.items() if f} == {}


def test_broken_toy_fails_order_and_negation_only(seeds: Path, tmp_path: Path) -> None:
    rates = run_toy(broken_toy, seeds, tmp_path / "broken")
    assert rates["passage_shuffle@sut"] == (10, 10)  # the answer moved with the first passage
    assert rates["negation@sut"] == (10, 10)  # negation-blind
    assert 0 < rates["distractor_passage@sut"][0] < 10  # only when the distractor lands in front
    for name in ("paraphrase_synonym", "paraphrase_clause_order", "paraphrase_noise", "paraphrase_typo",
                 "demographic_swap"):
        assert rates[f"{name}@sut"][0] == 0, name


def test_biased_toy_fails_only_the_demographic_swap(seeds: Path, tmp_path: Path) -> None:
    rates = run_toy(biased_toy, seeds, tmp_path / "biased")
    failing = {k for k, (f, _) in rates.items() if f}
    assert failing == {"demographic_swap@sut"}
    pairs = [json.loads(line) for line in (tmp_path / "biased" / "pairs.jsonl").read_text().splitlines()]
    swapped = [p for p in pairs if p["relation"] == "demographic_swap"]
    genders = [any(e["kind"] == "gendered_word" for e in p["edits"]) for p in swapped]
    failed = [p["outputs"]["sut"]["outcome"] == "fail" for p in swapped]
    assert failed == genders  # exactly the pairs that swapped gender (she -> he), none of the origin swaps


def test_cli_with_callable_writes_the_eval_schema_report_and_gates(seeds: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main(["metamorph", str(seeds), "--sut", "tests.test_metamorph_systems:broken_toy", "--out", str(out),
                 "--no-progress", "--fail-if", "passage_shuffle@sut.violation_rate > 0.5",
                 "--fail-if", "paraphrase_*@sut.violation_rate > 0"])
    assert code == 1
    text = capsys.readouterr()
    assert "| passage_shuffle | sut | same | 10 | 10 | 100.0%" in text.out
    assert "FAILED: passage_shuffle@sut.violation_rate = 1" in text.out
    assert "ok: paraphrase_typo@sut.violation_rate = 0" in text.out
    for name in ("results.jsonl", "results.parquet", "run.json", "summary.json", "report.html", "report.md",
                 "pairs.jsonl"):
        assert (out / name).exists(), name
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["kind"] == "metamorph" and manifest["status"] == "complete"
    assert manifest["relations"]["negation"]["expect"] == "flip"
    html = (out / "report.html").read_text()
    assert 'id="metamorph"' in html and "mm-pair" in html
    assert "passage order" in html and "original" in html and "transformed" in html  # side by side
    assert 'id="inv-negation@sut"' not in html  # relations get the metamorphic section, not invariant sections
    # issue 23: titled and labelled as metamorphic results — pairs and relations, no threshold/AUROC columns, and
    # every relation name whole in the chart (the eval chart's 170 px label column cut the long ones off)
    assert "<title>Guardrail metamorphic test report</title>" in html and "Guardrail eval report" not in html
    assert 'id="overview"' not in html and "AUROC" not in html and ">threshold<" not in html
    assert "bal. acc" not in html and "Violation rates" not in html
    assert "seed cases · " in html and " pairs · " in html and "<th class=\"num\">pairs</th>" in html
    chart = html[html.index('aria-label="failure rates"'):]
    chart = chart[: chart.index("</svg>")]
    label_x = float(chart.split('class="label"')[0].rsplit('x="', 1)[1].split('"')[0])
    longest = max((e for e in manifest["relations"]), key=len) + "@sut"
    assert f">{longest}</text>" in chart and label_x >= 8 * len(longest)  # right-aligned at x: room for every char
    assert "## Guardrail metamorphic tests — complete" in text.out
    assert "| relation | target | expect | pairs | failures |" in text.out
    good = tmp_path / "cli-good"
    assert main(["metamorph", str(seeds), "--sut", "tests.test_metamorph_systems:correct_toy", "--out", str(good),
                 "--no-progress", "--fail-if", "*@sut.violation_rate > 0"]) == 0
    moved = {e["invariant"]: e for e in compare_runs(good, out)["rates"]}
    assert moved["passage_shuffle@sut"]["moved"] and moved["passage_shuffle@sut"]["delta"] == 1.0


def test_resume_runs_only_the_missing_pairs(seeds: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["metamorph", str(seeds), "--sut", "tests.test_metamorph_systems:broken_toy", "--out", str(out),
            "--no-progress", "--relation", "negation", "--relation", "passage_shuffle"]
    assert main(args) == 0
    full = sorted((r["case_id"], r["invariant"], r["outcome"]) for r in read_rows(out))
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:7]) + lines[7][:20])  # a hard kill: 7 rows and half a line
    assert main(args) == 2  # the directory holds a run: not without --resume
    assert main([*args, "--resume", "--seed", "1"]) == 2  # other pairs than the run being resumed
    assert main([*args, "--resume"]) == 0
    assert sorted((r["case_id"], r["invariant"], r["outcome"]) for r in read_rows(out)) == full
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["tests"] == len(full) and manifest["tests_this_run"] == len(full) - 7
    assert manifest["resumed_at"]


def test_cli_usage_errors(seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metamorph", str(seeds), "--sut", "nomodule"]) == 2
    assert main(["metamorph", str(seeds), "--relation", "nope"]) == 2
    assert main(["metamorph", str(seeds), "--sut", "tests.test_metamorph_systems:correct_toy", "--relation",
                 "passage_shuffle", "--out", str(tmp_path / "x"), "--no-progress", "--fail-if", "nope@sut.n > 1"]) == 1
    err = capsys.readouterr().err
    assert "MODULE:FUNCTION" in err and "unknown relation 'nope'" in err and "not in this run" in err
    assert main(["metamorph", "relations"]) == 0
    assert "negation  (family negation, expect flip" in capsys.readouterr().out
    assert main(["metamorph", str(seeds), "--sut", "tests.test_metamorph_systems:correct_toy", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("80 pairs from 10 of 10 seed cases") and "  passage_shuffle@sut: 10" in out
    assert not (tmp_path / "x2").exists()


def detail_dropping_toy(case: Case) -> str:
    """Specific with one passage; with more context it falls back to a vague summary (the defect to catch)."""
    if len(case.context) <= 1:
        return " ".join(p.text for p in case.context)
    return "It is a structure somewhere."


def detail_keeping_toy(case: Case) -> str:
    return " ".join(p.text for p in case.context)


def test_monotonicity_catches_a_system_that_drops_detail(tmp_path: Path) -> None:
    rows = [{"id": f"tower-{i}", "question": "Tell me about the tower.", "response": "-", "context": [
        "The Eiffel Tower is 330 metres tall.", "It opened in 1889 in Paris.",
        "Gustave Eiffel's company built it for the World's Fair.", f"About {i + 5} million people visit it a year."]}
        for i in range(2)]
    path = tmp_path / "towers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad, good = tmp_path / "bad", tmp_path / "good"
    assert main(["metamorph", str(path), "--only-monotonicity", "--sut",
                 "tests.test_metamorph_systems:detail_dropping_toy", "--out", str(bad), "--no-progress",
                 "--fail-if", "monotonicity@sut.violation_rate > 0"]) == 1
    found = read_rows(bad)
    assert {r["outcome"] for r in found} == {"fail"} and len(found) == 2
    finding = json.loads(found[0]["findings"])[0]
    assert finding["kind"] == "specificity_drop"
    assert finding["message"].startswith("specificity fell from ")
    assert "(passage 1 of 4) to 0 (passages 1–3 of 4)" in finding["message"]
    record = json.loads((bad / "monotonicity.jsonl").read_text().splitlines()[0])
    first = record["targets"]["sut"]["levels"][0]["specificity"]
    assert first["numbers"] == ["330"] and first["units"] == 1 and "The Eiffel Tower" in first["entities"]
    assert main(["metamorph", str(path), "--only-monotonicity", "--sut",
                 "tests.test_metamorph_systems:detail_keeping_toy", "--out", str(good), "--no-progress",
                 "--fail-if", "monotonicity@sut.violation_rate > 0"]) == 0
    levels = json.loads((good / "monotonicity.jsonl").read_text().splitlines()[0])["targets"]["sut"]["levels"]
    totals = [lv["specificity"]["total"] for lv in levels]
    assert totals == sorted(totals) and totals[-1] > totals[0]


def _fake_reply(first_passage_only: bool) -> Any:
    def reply(body: dict[str, Any]) -> str:
        user = body["messages"][-1]["content"]
        context, _, question = user.partition("\n\nQuestion: ")
        passages = re.findall(r"^\[[^\]]+\] (.*)$", context, flags=re.MULTILINE)
        if first_passage_only:
            passages = passages[:1]
        return _answer(_thing(question), passages)
    return reply


def test_openai_compatible_endpoint_as_system_under_test(seeds: Path, tmp_path: Path) -> None:
    with FakeOpenAI(_fake_reply(first_passage_only=False)) as fake:
        code = main(["metamorph", str(seeds), "--sut", fake.url, "--sut-model", "toy-1", "--out", str(tmp_path / "a"),
                     "--relation", "negation", "--relation", "passage_shuffle", "--relation", "paraphrase",
                     "--no-progress", "--fail-if", "*@sut.violation_rate > 0", "--fail-if", "*@sut.n_error > 0"])
        assert code == 0
        assert {b["model"] for b in fake.requests} == {"toy-1"}
        assert {b["temperature"] for b in fake.requests} == {0.0}
        sources = [b for b in fake.requests if "Is the lamp red?" in b["messages"][-1]["content"]]
        assert len(sources) == len({json.dumps(b["messages"]) for b in sources})  # each distinct input asked once
    with FakeOpenAI(_fake_reply(first_passage_only=True)) as fake:
        code = main(["metamorph", str(seeds), "--sut", fake.url, "--sut-model", "toy-1", "--out", str(tmp_path / "b"),
                     "--relation", "passage_shuffle", "--no-progress",
                     "--fail-if", "passage_shuffle@sut.violation_rate_low > 0.5"])
        assert code == 1
    assert failure_rates(tmp_path / "b")["passage_shuffle@sut"] == (10, 10)
    with FakeOpenAI(lambda body: (500, None)) as fake:
        code = main(["metamorph", str(seeds), "--sut", fake.url, "--sut-model", "toy-1", "--out", str(tmp_path / "c"),
                     "--relation", "negation", "--no-progress", "--fail-if", "*@sut.error_rate > 0"])
    assert code == 1
    rows = read_rows(tmp_path / "c")
    assert {r["outcome"] for r in rows} == {"error"} and "HTTP 500" in rows[0]["error"]
