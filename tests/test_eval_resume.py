"""`guardrail eval --resume` finishes the run it was started as — same rows, limit, invariants and config — or
refuses (exit 2, naming each difference) instead of mixing two runs in one directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.config import DEFAULT_INVARIANTS
from guardrail_server.evals.results import RESULTS_JSONL, read_manifest, read_rows

OFF = {n: {"enabled": False} for n in DEFAULT_INVARIANTS}
ONLY_KEYWORD = "invariants=" + json.dumps({**OFF, "test_keyword": {"options": {"word": "forbidden"}}})


def _dataset(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "response": "forbidden" if i % 3 == 0 else "fine"}) + "\n"
                            for i in range(n)))
    return path


def _interrupt(run: Path, keep_cases: int) -> None:
    """What Ctrl-C leaves behind: the first cases' rows, the manifest still saying `running`."""
    results = run / RESULTS_JSONL
    results.write_text("".join(results.read_text().splitlines(keepends=True)[:keep_cases]))
    manifest = read_manifest(run)
    (run / "run.json").write_text(json.dumps({**manifest, "status": "interrupted"}))


def _start(tmp_path: Path, *extra: str) -> Path:
    run = tmp_path / "run"
    rc = main(["eval", str(_dataset(tmp_path)), "--out", str(run), "--no-progress", "--limit", "6",
               "--set", ONLY_KEYWORD, "--set", "invariants.test_keyword.threshold=0.5", *extra])
    assert rc == 0
    assert len(read_rows(run)) == 6
    _interrupt(run, 2)
    return run


def test_resume_reuses_limit_set_and_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _start(tmp_path)
    assert main(["eval", "--resume", "--out", str(run), "--no-progress"]) == 0
    rows = read_rows(run)
    assert sorted(r["case_id"] for r in rows) == [f"c{i}" for i in range(6)]  # not the 12 of the file
    assert {r["invariant"] for r in rows} == {"test_keyword"}  # not the four defaults
    assert {r["threshold"] for r in rows} == {0.5}
    assert read_manifest(run)["status"] == "complete"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["--limit", "12"], "--limit"),
        (["--set", "invariants.test_keyword.threshold=0.85"], "--set"),
        (["--invariant", "test_sleepy"], "--invariant"),
        (["--timeout", "5"], "--timeout"),
        (["OTHER"], "DATASET"),
    ],
)
def test_resume_with_different_arguments_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: list[str], named: str
) -> None:
    run = _start(tmp_path)
    capsys.readouterr()
    if given == ["OTHER"]:
        other = tmp_path / "other.jsonl"
        other.write_text(json.dumps({"id": "x", "response": "fine"}) + "\n")
        given = [str(other)]
    before = (run / RESULTS_JSONL).read_text()
    assert main(["eval", *given, "--resume", "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert named in err and "cannot resume" in err
    assert (run / RESULTS_JSONL).read_text() == before  # nothing run, nothing written


def test_resume_with_the_same_arguments_is_fine(tmp_path: Path) -> None:
    run = _start(tmp_path)
    same = ["eval", str(tmp_path / "cases.jsonl"), "--out", str(run), "--resume", "--no-progress", "--limit", "6",
            "--set", ONLY_KEYWORD, "--set", "invariants.test_keyword.threshold=0.5"]
    assert main(same) == 0
    assert len(read_rows(run)) == 6


def test_a_changed_config_file_is_refused_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({"invariants": {**OFF, "test_keyword": {"threshold": 0.5,
                                                                         "options": {"word": "forbidden"}}}}))
    run = tmp_path / "run"
    assert main(["eval", str(_dataset(tmp_path)), "--out", str(run), "--no-progress", "--limit", "6",
                 "--config", str(config)]) == 0
    _interrupt(run, 2)
    config.write_text(config.read_text().replace("0.5", "0.85"))
    capsys.readouterr()
    assert main(["eval", "--resume", "--out", str(run), "--no-progress"]) == 2
    assert "invariants.test_keyword.threshold" in capsys.readouterr().err


def test_the_report_path_is_the_same_absolute_path_after_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    run = _start(tmp_path)
    first = [ln for ln in capsys.readouterr().err.splitlines() if "report: " in ln]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["eval", "--resume", "--out", "../run", "--no-progress"]) == 0
    second = [ln for ln in capsys.readouterr().err.splitlines() if "report: " in ln]
    paths = {ln.split("report: ", 1)[1] for ln in first + second}
    assert paths == {str((run / "report.html").resolve())}
