"""Report numbers (Wilson interval, AUROC, threshold sweep), gate parsing, finding highlights, and the HTML report
rendered in headless Chromium with its charts."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.evals.gates import GateSyntaxError, evaluate, parse_gate
from guardrail_server.evals.report import highlight
from guardrail_server.evals.summary import auroc, summarize, wilson
from tests.conftest import only


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)


def test_auroc_matches_pairwise_definition_with_ties() -> None:
    scores = [0.9, 0.8, 0.8, 0.3, 0.3, 0.1, 0.5]
    labels = [True, True, False, True, False, False, False]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    assert auroc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))
    assert auroc([0.1, 0.2], [True, True]) is None


def _row(case: str, outcome: str, score: float, expected: str | None) -> dict:
    return {"case_id": case, "invariant": "inv", "outcome": outcome, "score": score, "threshold": 0.5,
            "expected": expected, "dataset": "d"}


def test_summary_rates_confusion_and_sweep() -> None:
    rows = [_row("a", "fail", 0.1, "fail"), _row("b", "fail", 0.4, "pass"), _row("c", "pass", 0.7, "fail"),
            _row("d", "pass", 0.9, "pass"), _row("e", "pass", 0.95, None), _row("f", "error", 0.0, "fail"),
            _row("g", "skipped", 1.0, None)]
    s = summarize(rows)["inv"]
    assert (s["n"], s["n_pass"], s["n_fail"], s["n_error"], s["n_skipped"]) == (7, 3, 2, 1, 1)
    assert s["violation_rate"] == pytest.approx(2 / 5) and s["error_rate"] == pytest.approx(1 / 7)
    lab = s["labeled"]
    assert lab["confusion"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1} and lab["unscored"] == 1
    assert lab["balanced_accuracy"] == pytest.approx(0.5) and lab["auroc"] == pytest.approx(0.75)
    at = {p["threshold"]: p for p in lab["sweep"]}
    assert at[0.0]["tpr"] == 0.0 and at[0.0]["fpr"] == 0.0 and at[1.0]["tpr"] == 1.0 and at[1.0]["fpr"] == 1.0
    assert at[0.2]["balanced_accuracy"] == pytest.approx(0.75)  # catches a, flags neither negative
    assert lab["best_balanced_accuracy"] == pytest.approx(0.75)
    assert sum(s["histogram"]) == 5


@pytest.mark.parametrize("text", ["entailment.violation_rate > 0.05 or 1", "os.system('x') > 1", "entailment > 1",
                                  "entailment.violation_rate >> 1", "a.violation_rate > 1e", ""])
def test_gate_parser_rejects_anything_but_one_comparison(text: str) -> None:
    with pytest.raises(GateSyntaxError):
        parse_gate(text)


def test_gates_wildcard_and_operators() -> None:
    summary = summarize([_row("a", "fail", 0.1, None), _row("b", "pass", 0.9, None)])
    summary["other"] = summary["inv"] | {"error_rate": 0.25}
    results = evaluate([parse_gate("*.error_rate > 0"), parse_gate("inv.violation_rate >= .5"),
                        parse_gate("inv.n != 2")], summary)
    assert [(r.invariant, r.tripped) for r in results] == [("inv", False), ("other", True), ("inv", True),
                                                           ("inv", False)]
    assert [r.tripped for r in evaluate([parse_gate("*.error_rate > 0")], {})] == [True]


def test_highlight_marks_spans_escapes_and_handles_overlaps() -> None:
    text = "a <b> c d"
    out = str(highlight(text, [{"kind": "k1", "message": "m1", "start": 2, "end": 7},
                               {"kind": "k2", "message": "m<2>", "start": 6, "end": 9},
                               {"kind": "k3", "message": "whole", "start": -1, "end": -1},
                               {"kind": "k4", "message": "out of range", "start": 5, "end": 99}]))
    assert out == ('a <mark title="k1: m1" data-kind="k1">&lt;b&gt; </mark><mark title="k1: m1; k2: m&lt;2&gt;" '
                   'data-kind="k1">c</mark><mark title="k2: m&lt;2&gt;" data-kind="k2"> d</mark>')
    assert re.sub(r"<[^>]+>", "", out).replace("&lt;", "<").replace("&gt;", ">") == text


def _make_run(tmp_path: Path) -> Path:
    rows = []
    for i in range(40):
        bad = i % 4 == 0
        rows.append({"id": f"c{i}", "question": "What happened?",
                     "response": f"Case {i}: " + ("this is forbidden <script>alert(1)</script>" if bad else "all fine"),
                     "expected": {"test_keyword": "fail" if (bad or i % 10 == 1) else "pass"}})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    out = tmp_path / "run"
    assert main(["eval", str(data), "--out", str(out), "--no-progress",
                 "--set", only("{test_keyword: {options: {word: forbidden}}}")]) == 0
    return out


def test_report_is_self_contained(tmp_path: Path) -> None:
    out = _make_run(tmp_path)
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page and "<script" not in page  # the response's script is escaped
    assert "&lt;script&gt;" in page
    assert page.count("<svg") == 3  # rates + histogram + sweep
    md = (out / "report.md").read_text()
    assert "| test_keyword | 40 | 25.0% [" in md and "1 malformed rows skipped" in md


def _chrome():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,2000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian chromium + chromium-driver (`make browser-deps`)")
def test_report_renders_in_headless_chromium_with_charts(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    out = _make_run(tmp_path)
    driver = _chrome()
    try:
        driver.get((out / "report.html").as_uri())
        assert driver.title == "Guardrail eval report"
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert [c.get_attribute("aria-label") for c in charts] == ["violation rates", "score histogram",
                                                                   "threshold sweep"]
        for chart in charts:
            assert chart.size["width"] > 300 and chart.size["height"] > 80
        bars = driver.find_elements(By.CSS_SELECTOR, "svg[aria-label='score histogram'] rect[fill]")
        assert len(bars) >= 3
        lines = driver.find_elements(By.CSS_SELECTOR, "svg[aria-label='threshold sweep'] polyline")
        assert len(lines) == 3 and all(len(pl.get_attribute("points").split()) == 101 for pl in lines)
        marks = driver.find_elements(By.CSS_SELECTOR, ".case mark")
        assert marks and all(m.text == "forbidden" for m in marks)
        assert driver.find_element(By.CSS_SELECTOR, "table.confusion td.tp").text == "10"
        assert driver.find_element(By.CSS_SELECTOR, "table.confusion td.fn").text == "4"
        assert "d.jsonl:41" in driver.find_element(By.ID, "overview").text  # the malformed row, by line
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, min(height, 6000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    finally:
        driver.quit()
