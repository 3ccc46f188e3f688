"""The command line as an operator and a shell script meet it: `--version`, exit codes of `guardrail check`, start-up
problems as one line naming the key/URL with exit 2, `eval --target` to a dead address failing fast, JSON-only
start-up logs, and the README's first call and anchors export doing what the README says."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from guardrail_server.cli import main
from tests.conftest import free_port, make_config, only, running_server
from tests.test_deploy_metrics import wait_serving

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "guardrail_server.cli"]
KEYWORD = only("{test_keyword: {options: {word: forbidden}}}")
LAUNCHER = (
    "import sys; from guardrail_invariants import registry; from tests.helpers_invariants import TEST_INVARIANTS; "
    "registry.REGISTRY.update(TEST_INVARIANTS); from guardrail_server.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    return {**env, "PYTHONPATH": str(ROOT)}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"guardrail {version('guardrail-sidecar')}"


@pytest.mark.parametrize(
    ("response", "policy", "code"),
    [
        ("all fine here", "flag", 0),
        ("this is forbidden", "flag", 1),
        ("this is forbidden", "block", 3),
    ],
)
def test_check_exit_code_is_the_decision(response: str, policy: str, code: int) -> None:
    rc = main(["check", "--in-process", "-r", response, "--set", KEYWORD, "--set", "review.enabled=false",
               "--set", f"invariants.test_keyword.on_fail={policy}"])
    assert rc == code
    argv = ["check", "--in-process", "-r", response, "--exit-zero", "--set", KEYWORD, "--set", "review.enabled=false",
            "--set", f"invariants.test_keyword.on_fail={policy}"]
    assert main(argv) == 0


def test_check_errors_exit_2_and_help_documents_the_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-r", "x", "-t", f"127.0.0.1:{free_port()}", "--timeout", "1"]) == 2
    assert main(["check", "-r", "x", "--exit-zero", "-t", f"127.0.0.1:{free_port()}", "--timeout", "1"]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 ALLOW, 1 FLAG, 3 BLOCK, 2 no decision" in text


def test_eval_against_a_dead_target_fails_fast_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "response": "fine"}) + "\n")
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    rc = main(["eval", str(data), "--out", str(tmp_path / "run"), "--target", target, "--connect-timeout", "2",
               "--no-progress"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert rc == 2
    assert elapsed < 12, elapsed  # it waited 32 s before
    assert target in err and "--connect-timeout" in err
    assert "Traceback" not in err


def _serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "serve", *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_busy_metrics_port_is_one_line_exit_2() -> None:
    import socket

    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _serve("--port", "0", "--metrics-port", str(port), "--set", "review.enabled=false")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.metrics_port" in lines[0] and str(port) in lines[0], proc.stderr


def test_unknown_model_is_one_line_exit_2_naming_the_key() -> None:
    proc = _serve("--port", "0", "--metrics-port", "0", "--set", "review.enabled=false",
                  "--set", only("{entailment: {options: {model: no-such-model}}}"))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "invariants.entailment.options.model" in last and "no-such-model" in last
    assert "Traceback" not in proc.stderr


def test_unreachable_review_store_is_one_line_with_the_password_masked() -> None:
    url = f"postgresql://reviewer:hunter2@127.0.0.1:{free_port()}/reviews"
    for command in (["review", "--url", url], ["anchors", "list", "--set", f"review.url={url}"]):
        proc = subprocess.run([*CLI, *command], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 2, proc.stderr
        named, *lines = proc.stderr.strip().splitlines()  # every store command first names its store (issue 23)
        assert named.startswith("review store: postgresql://reviewer:***@127.0.0.1")
        assert len(lines) == 1, proc.stderr
        assert "review.url" in lines[0] and "postgresql://reviewer:***@127.0.0.1" in lines[0]
        assert "hunter2" not in proc.stderr


def test_start_up_logs_are_all_json(tmp_path: Path) -> None:
    """Every invariant loaded for real (spaCy/Presidio, onnxruntime, the review store's migrations): every line
    the server writes while starting and stopping is one JSON object."""
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(json.dumps({
        "server": {"port": port, "metrics_port": None},
        "logging": {"level": "info", "format": "json"},
        "review": {"url": f"sqlite:///{tmp_path / 'review.db'}", "spool_dir": str(tmp_path / "spool")},
    }))
    err = tmp_path / "stderr.log"
    started = time.monotonic()
    with err.open("w") as fh:
        proc = subprocess.Popen([*CLI, "serve", "--config", str(config)], cwd=tmp_path, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=fh)
        try:
            wait_serving(f"127.0.0.1:{port}", proc, timeout=240)
            took = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = [line for line in err.read_text().splitlines() if line.strip()]
    events = []
    for line in lines:
        events.append(json.loads(line)["event"])  # raises on any plain-text line
    assert "serving" in events and events[-1] == "stopped"
    print(f"SERVING after {took:.1f} s; {len(lines)} log lines; load {os.getloadavg()}")


async def test_readme_first_call_prints_decision_names(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A first call", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    async with running_server(make_config({"entailment": {}, "reference_integrity": {}})) as (_, target):
        script = tmp_path / "first_call.py"
        script.write_text(snippet.replace("localhost:50051", target))
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, str(script)], cwd=tmp_path, env=_env(),
                                       capture_output=True, text=True, timeout=60)  # the server runs on this loop
    assert proc.returncode == 0, proc.stderr
    first, *results = proc.stdout.strip().splitlines()
    assert first == "FLAG"  # "It opened in 1887" is not what passage 2 says
    outcomes = {line.split()[0]: line.split()[1] for line in results}
    assert outcomes == {"entailment": "FAIL", "reference_integrity": "PASS"}


def test_readme_anchors_export_command_works(tmp_path: Path) -> None:
    from guardrail_server.review.store import ReviewStore
    from tests.review_support import record

    url = f"sqlite:///{tmp_path / 'review.db'}"
    with ReviewStore(url) as store:
        records = [record(i, labels=True) for i in range(3)]
        store.insert_samples(records)
        store.create_anchor_set("golden", [r["id"] for r in records])
    documented = [line for line in (ROOT / "README.md").read_text().splitlines() if "anchors export" in line]
    assert documented, "the README documents `guardrail anchors export`"
    (tmp_path / "anchors").mkdir()
    env = {**_env(), "GUARDRAIL_REVIEW__URL": url, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for form in ("guardrail anchors export golden > anchors/by-stdout.jsonl",
                 "guardrail anchors export --name golden --out anchors/by-flag.jsonl"):
        proc = subprocess.run(["bash", "-c", form], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    by_stdout = (tmp_path / "anchors/by-stdout.jsonl").read_text().splitlines()
    assert [json.loads(line)["position"] for line in by_stdout] == [0, 1, 2]
    assert by_stdout == (tmp_path / "anchors/by-flag.jsonl").read_text().splitlines()
