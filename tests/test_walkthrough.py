"""docs/walkthrough.md, run: every command of "From documents to a trusted guardrail", in its order, on four short
documents — synth, eval through a server that samples every check, review (a scripted reviewer at the terminal, who
labels entailment by the synth set's construction labels), anchors select / export, calibrate, adapt (a few training
steps instead of 20 minutes), eval compare, serve the overlay, check. The commands are read from the document, so the
document cannot drift from what is tested."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardrail_server.cli import main
from guardrail_server.review.store import ReviewStore
from tests.adapt_support import read_jsonl
from tests.conftest import free_port
from tests.synth_support import write_docs
from tests.test_deploy_metrics import wait_serving

pytest.importorskip("torch", reason="adapt trains: pip install '.[train]' (make train-deps)")

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "walkthrough.md"
CLI = [sys.executable, "-m", "guardrail_server.cli"]
ADAPT_BUDGET = ["--steps", "2", "--pairs", "60", "--synth-cases", "16", "--minutes", "15"]  # the test's, not the doc's


def doc_commands() -> list[str]:
    """Every `guardrail ...` line of the document's sh blocks, in order."""
    text = DOC.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("guardrail ")]


def doc_config() -> str:
    return re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S).group(1)  # type: ignore[union-attr]


class Reviewer(io.TextIOBase):
    """Answers `guardrail review` as a person would, reading the screen it writes to: the entailment label of the case
    shown (the synth set's construction label), '-' for the other invariants, a critique for a failed one."""

    def __init__(self, screen: io.StringIO, labels: dict[str, dict]) -> None:
        self.screen = screen
        self.labels = labels
        self.answered: list[tuple[str, str]] = []

    def readable(self) -> bool:
        return True

    def readline(self, size: int = -1) -> str:  # noqa: ARG002 - io signature
        text = self.screen.getvalue()
        shown = []
        for line in text[text.rindex("\nRESPONSE\n") + len("\nRESPONSE\n"):].split("\n"):
            if not line.startswith("    "):
                break
            shown.append(line)
        row = self.labels[_key(" ".join(shown))]
        label = row["expected"]["entailment"]
        if text.endswith("critique (one line, Enter for none) > "):
            return ("" if label == "pass" else f"not supported: {row['meta']['kind'].replace('_', ' ')}") + "\n"
        verdicts = [line.split()[0] for line in text[text.rindex("\nVERDICTS\n") + 10:].split("\n")
                    if line.startswith("  ") and not line.startswith("      ")]
        self.answered.append((row["id"], label))
        return "".join(label[0] if name == "entailment" else "-" for name in verdicts) + "\n"


def _key(text: str) -> str:
    """Whitespace-free: the terminal wraps the response at spaces and after hyphens."""
    return re.sub(r"\s+", "", text)


def _serve(argv: list[str], cwd: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    env.update(PYTHONPATH=str(ROOT), GUARDRAIL_SERVER__PORT=str(port), GUARDRAIL_SERVER__METRICS_PORT="null")
    proc = subprocess.Popen([*CLI, *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        wait_serving(f"127.0.0.1:{port}", proc, timeout=300)
    except BaseException:
        proc.kill()
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.timeout(1500)
def test_the_walkthrough_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    commands = doc_commands()
    assert [c.split()[1] for c in commands] == ["synth", "serve", "eval", "review", "anchors", "anchors", "calibrate",
                                                "adapt", "eval", "serve", "check"]
    synth, serve, eval_target, review, select, export, calibrate, adapt, compare, serve2, check = commands
    write_docs(tmp_path / "kb")
    (tmp_path / "guardrail.yaml").write_text(doc_config())
    monkeypatch.chdir(tmp_path)
    port = free_port()
    target = f"localhost:{port}"

    def run(command: str, *extra: str) -> int:
        argv = shlex.split(command.replace("localhost:50051", target))[1:]
        return main([*argv, *extra])

    # 1. synth
    assert run(synth, "--no-progress") == 0
    cases = read_jsonl(tmp_path / "set.jsonl")
    assert len(cases) >= 50

    # 2. eval through the server; every check is sampled for review
    server = _serve(shlex.split(serve)[1:], tmp_path, port, tmp_path / "serve1.log")
    try:
        assert run(eval_target, "--no-progress") in (0, 1)
        assert (tmp_path / "runs" / "base" / "report.html").is_file()
        url = f"sqlite:///{tmp_path / 'review.db'}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the sampler writes off the hot path
            with ReviewStore(url) as store:
                if store.count_samples() >= len(cases):
                    break
            time.sleep(0.5)
        with ReviewStore(url) as store:
            assert store.count_samples() == len(cases)
    finally:
        _stop(server)
    capsys.readouterr()

    # 3. review a few at the terminal
    screen = io.StringIO()
    reviewer = Reviewer(screen, {_key(c["response"]): c for c in cases})
    monkeypatch.setattr(sys, "stdin", reviewer)
    monkeypatch.setattr(sys, "stdout", screen)
    assert run(review, "--reviewer", "ana") == 0
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert len(reviewer.answered) == 24 and "labeled 24 this session" in screen.getvalue()
    labels = [label for _, label in reviewer.answered]
    assert labels.count("pass") >= 3 and labels.count("fail") >= 3

    # 4. anchors, exported, and where the shipped judge stands on them
    assert run(select) == 0
    assert run(export) == 0 and len(read_jsonl(tmp_path / "anchors" / "golden.jsonl")) == 24
    assert run(calibrate) == 0
    assert "entailment" in capsys.readouterr().out

    # 5. adapt (a tiny budget) and compare
    code = run(adapt, *ADAPT_BUDGET)
    printed = capsys.readouterr()
    report = json.loads((tmp_path / "adapted" / "adapt.json").read_text())
    assert code == 0, (printed.out[-3000:], printed.err[-3000:], report.get("worse"))
    assert report["shipped"] and (tmp_path / "adapted" / "overlay.yaml").is_file()
    assert report["metrics"]["anchors"]["adapted"]["n"] == 24
    assert report["timing_s"]["total"] <= 15 * 60
    assert run(compare) == 0 and "| entailment |" in capsys.readouterr().out

    # 6. serve the adapted judge, and check a response through it
    model = report["model"]
    server = _serve(shlex.split(serve2)[1:], tmp_path, port, tmp_path / "serve2.log")
    try:
        assert run(check, "--json", "--target", target) in (0, 1)  # the doc's server is the default localhost:50051
    finally:
        _stop(server)
    out = json.loads(capsys.readouterr().out)
    [entailment] = [r for r in out["results"] if r["invariant"] == "entailment"]
    assert entailment["judge"] == f"{model}:hybrid"  # the adapted model, with the base's hybrid rule
