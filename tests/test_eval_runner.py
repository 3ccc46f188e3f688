"""The eval runner end to end: in-process and through a real server agree verdict for verdict; Ctrl-C keeps what is
done and --resume finishes without losing or repeating a row; gates set the exit code; compare finds the flips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.evals.backends import LocalBackend, RemoteBackend
from guardrail_server.evals.compare import compare_runs, to_markdown
from guardrail_server.evals.datasets import load_datasets
from guardrail_server.evals.results import read_manifest, read_rows
from guardrail_server.evals.runner import RunError, run_eval
from tests.conftest import make_config, only, running_server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KEYWORD = {"test_keyword": {"options": {"word": "forbidden"}}}
EXACT = ("outcome", "threshold", "judge", "error", "decision", "expected")


def assert_same_verdicts(rows_a: list[dict], rows_b: list[dict]) -> None:
    """Same keys, outcomes and findings; scores equal up to float noise (batch composition may differ)."""
    a = {(r["case_id"], r["invariant"]): r for r in rows_a}
    b = {(r["case_id"], r["invariant"]): r for r in rows_b}
    assert a.keys() == b.keys()
    for key, ra in a.items():
        rb = b[key]
        assert {k: ra[k] for k in EXACT} == {k: rb[k] for k in EXACT}, key
        assert ra["score"] == pytest.approx(rb["score"], abs=1e-5), key
        fa, fb = json.loads(ra["findings"]), json.loads(rb["findings"])
        assert [{**f, "score": None} for f in fa] == [{**f, "score": None} for f in fb], key
        assert [f["score"] for f in fa] == pytest.approx([f["score"] for f in fb], abs=1e-5), key


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mixed_cases(tmp_path: Path) -> list[Path]:
    """Real external rows plus native ones that exercise findings, citations and an input error."""
    native = [
        {"id": "n1", "context": [{"id": "d1", "text": "Paris is the capital of France."}],
         "response": "Paris is the capital [d1]. This is forbidden.", "expected": {"test_keyword": "fail"}},
        {"id": "n2", "context": ["Water boils at 100 C."], "response": "It boils at 100 C [1] and [7].",
         "expected": {"test_keyword": "pass"}},
        {"id": "n3", "response": "forbidden forbidden", "samples": ["s"] * 25},  # over limits.max_samples
        {"id": "n4", "response": "See https://example.org/x for details."},
    ]
    files = [_write(tmp_path / "native.jsonl", native)]
    for name, n in (("halueval_qa", 25), ("wice_claims", 8), ("presidio_pii", 5)):
        src = DATA / "dev" / f"{name}.jsonl"
        if src.exists():
            files.append(_write(tmp_path / f"{name}.jsonl", [json.loads(x) for x in src.read_text().splitlines()[:n]]))
    return files


async def test_in_process_and_through_server_give_identical_verdicts(tmp_path: Path) -> None:
    config = make_config({"reference_integrity": {}, **KEYWORD})
    loaded = load_datasets(_mixed_cases(tmp_path), on_malformed="fail")
    local = await run_eval(LocalBackend(config, concurrency=8), loaded, tmp_path / "local", progress=False)
    async with running_server(config) as (_, target):
        remote = await run_eval(RemoteBackend(target, concurrency=8), loaded, tmp_path / "remote", progress=False)
    assert local.status == remote.status == "complete"
    names = set(config.enabled_invariants())
    assert set(local.invariants) == names == set(remote.invariants)
    assert_same_verdicts(local.rows, remote.rows)
    a = {(r["case_id"], r["invariant"]): r for r in local.rows}
    assert len(a) == len(loaded.cases) * len(names)
    assert a[("n1", "test_keyword")]["outcome"] == "fail"
    assert json.loads(a[("n1", "test_keyword")]["findings"])[0]["start"] == 35
    assert a[("n3", "test_keyword")]["outcome"] == "error" and "RESOURCE_EXHAUSTED: samples" in a[("n3", "test_keyword")]["error"]
    if "reference_integrity" in names:
        assert a[("n2", "reference_integrity")]["outcome"] == "fail"  # [7] resolves to no passage
    assert (tmp_path / "local" / "results.parquet").exists()


async def test_refuses_to_mix_runs_and_unknown_invariants(tmp_path: Path) -> None:
    config = make_config(KEYWORD)
    loaded = load_datasets([_write(tmp_path / "d.jsonl", [{"id": "1", "response": "x"}])])
    await run_eval(LocalBackend(config), loaded, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match="--resume"):
        await run_eval(LocalBackend(config), loaded, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match="not enabled"):
        await run_eval(LocalBackend(config), loaded, tmp_path / "other", requested=["entailment"], progress=False)


SUBPROCESS_MAIN = (
    "import sys; from guardrail_invariants import registry; from tests.helpers_invariants import TEST_INVARIANTS; "
    "registry.REGISTRY.update(TEST_INVARIANTS); from guardrail_server.cli import main; sys.exit(main(sys.argv[1:]))"
)
ONLY_FORBIDDEN = only("{test_keyword: {options: {word: forbidden}}}")
ONLY_BANNED = only("{test_keyword: {options: {word: banned}}}")
SLOW = only("{test_sleepy: {options: {seconds: 0.04}}, test_keyword: {options: {word: forbidden}}}")


def _eval_proc(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", SUBPROCESS_MAIN, "eval", *args, "--set", SLOW,
                             "--set", "review.enabled=false", "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_interrupt_keeps_done_rows_and_resume_completes_without_duplicates(tmp_path: Path) -> None:
    n = 240
    data = _write(tmp_path / "d.jsonl", [{"id": f"c{i:03d}", "response": "forbidden" if i % 3 == 0 else "fine"}
                                         for i in range(n)])
    out = tmp_path / "run"
    proc = _eval_proc(str(data), "--out", str(out), "--concurrency", "4")
    results = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while len(_lines(results)) < 40:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    before = _lines(results)
    assert 40 <= len(before) < 2 * n
    assert read_manifest(out)["status"] == "interrupted"
    keys_before = [(json.loads(x)["case_id"], json.loads(x)["invariant"]) for x in before]
    assert len(keys_before) == len(set(keys_before))

    proc = _eval_proc("--resume", "--out", str(out), "--concurrency", "8")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    after = _lines(results)
    assert after[: len(before)] == before  # nothing rewritten
    keys = [(json.loads(x)["case_id"], json.loads(x)["invariant"]) for x in after]
    assert len(keys) == len(set(keys)) == 2 * n  # nothing lost, nothing twice
    assert read_manifest(out)["status"] == "complete"
    fails = {k for k, x in zip(keys, after, strict=True) if json.loads(x)["outcome"] == "fail"}
    assert fails == {(f"c{i:03d}", "test_keyword") for i in range(0, n, 3)}


def _cli(tmp_path: Path, out: str, *extra: str, data: Path | None = None) -> int:
    if data is None:
        data = _write(tmp_path / "g.jsonl", [{"id": str(i), "response": "forbidden" if i < 2 else "ok",
                                              "expected": {"test_keyword": "fail" if i < 3 else "pass"}}
                                             for i in range(4)])
    return main(["eval", str(data), "--out", str(tmp_path / out), "--no-progress", "--set",
                 only("{test_keyword: {options: {word: forbidden}}}"), *extra])


def test_gate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(tmp_path, "r1", "--fail-if", "test_keyword.violation_rate > 0.4") == 1
    assert "FAILED: test_keyword.violation_rate = 0.5" in capsys.readouterr().err
    assert _cli(tmp_path, "r2", "--fail-if", "test_keyword.violation_rate > 0.6", "--fail-if", "*.error_rate > 0") == 0
    assert _cli(tmp_path, "r3", "--fail-if", "test_keyword.balanced_accuracy < 0.9") == 1  # 0.833: one missed
    assert _cli(tmp_path, "r4", "--fail-if", "test_keyword.auroc >= 0.5") == 1
    assert _cli(tmp_path, "r5", "--fail-if", "entailment.violation_rate > 0.1") == 1  # not in the run: trips
    assert _cli(tmp_path, "r6", "--fail-if", "__import__('os').system('true') > 0") == 2
    assert _cli(tmp_path, "r7", "--fail-if", "test_keyword.flakiness > 0") == 2
    assert "unknown metric" in capsys.readouterr().err
    md = (tmp_path / "r1" / "report.md").read_text()
    assert "| test_keyword | 4 | 50.0%" in md and "FAILED" in md


def test_cli_malformed_rows_skip_or_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "m.jsonl"
    data.write_text('{"id": "1", "response": "ok"}\n{"id": "2"\n{"id": "3", "response": "fine"}\n')
    assert _cli(tmp_path, "skip", data=data) == 0
    err = capsys.readouterr().err
    assert f"{data}:2" in err and "skipping 1 malformed" in err
    assert json.loads((tmp_path / "skip" / "malformed.jsonl").read_text())["source"] == f"{data}:2"
    assert {r["case_id"] for r in read_rows(tmp_path / "skip")} == {"1", "3"}
    assert _cli(tmp_path, "fail", "--on-malformed", "fail", data=data) == 2
    assert f"{data}:2" in capsys.readouterr().err
    assert not (tmp_path / "fail" / "results.jsonl").exists()


def test_compare_lists_moved_rates_and_flips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"id": f"c{i}", "response": ("forbidden " if i < 10 else "") + ("banned" if i >= 30 else "fine")}
            for i in range(60)]
    data = _write(tmp_path / "c.jsonl", rows)
    base = ["eval", str(data), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a"), "--set", ONLY_FORBIDDEN]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--set", ONLY_BANNED]) == 0
    result = compare_runs(tmp_path / "a", tmp_path / "b")
    (rate,) = result["rates"]
    assert rate["a"]["violation_rate"] == pytest.approx(10 / 60) and rate["b"]["violation_rate"] == pytest.approx(0.5)
    assert rate["moved"] and rate["p_value"] < 0.01
    assert len(result["flips"]) == 40 and result["common"] == 60
    capsys.readouterr()
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "Flipped cases: 40 (30 now fail, 10 otherwise)" in out and "**yes**" in out
    assert "moved" in to_markdown(result)


def test_compare_refuses_runs_that_share_no_cases_and_warns_when_they_share_few(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23: halueval vs wice (0 shared cases) reported "+54.3 pp, moved: yes" and exit 0."""
    def run(name: str, ids: range) -> Path:
        data = _write(tmp_path / f"{name}.jsonl", [{"id": f"c{i}", "response": "forbidden" if i % 2 else "fine"}
                                                   for i in ids])
        assert main(["eval", str(data), "--no-progress", "--out", str(tmp_path / name), "--set", ONLY_FORBIDDEN]) == 0
        return tmp_path / name

    a, unrelated, some, most = run("a", range(0, 20)), run("x", range(100, 130)), run("s", range(15, 45)), \
        run("m", range(2, 22))
    capsys.readouterr()
    assert main(["eval", "compare", str(a), str(unrelated)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "share no cases" in out.err
    assert "A: 20 cases from a; B: 30 cases from x" in out.err  # what each run holds, by dataset
    assert main(["eval", "compare", str(a), str(unrelated), "--json"]) == 2
    capsys.readouterr()

    assert main(["eval", "compare", str(a), str(some)]) == 0  # 5 shared: 25% of A, 17% of B
    out = capsys.readouterr()
    assert "warning: the runs share only 5 cases (25% of 20 in A, 17% of 30 in B)" in out.err
    assert "**Warning:** the runs share only 5 cases" in out.out
    assert main(["eval", "compare", str(a), str(some), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["overlap"] == {"cases_a": 20, "cases_b": 30, "shared_cases": 5, "datasets_a": ["a"],
                                 "datasets_b": ["s"], "few_shared": True}

    assert main(["eval", "compare", str(a), str(most)]) == 0  # 18 of 20 shared: no warning
    out = capsys.readouterr()
    assert "warning" not in out.err and "Warning" not in out.out


def test_ctrl_c_on_the_terminal_stops_without_worker_lost_warnings(tmp_path: Path) -> None:
    """Issue 23: Ctrl-C reaches the whole foreground process group (eval and its check workers); stopping printed a
    `check_worker_replaced ... worker_lost` warning per worker. Workers stopped by the shutdown are not lost."""
    data = _write(tmp_path / "d.jsonl", [{"id": f"c{i:03d}", "response": "fine"} for i in range(400)])
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SUBPROCESS_MAIN, "eval", str(data), "--out", str(out),
                             "--concurrency", "4", "--set", SLOW, "--set", "review.enabled=false", "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a shell gives a foreground job
    results = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while len(_lines(results)) < 20:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err
    assert "worker_lost" not in err and "check_worker_replaced" not in err, err
