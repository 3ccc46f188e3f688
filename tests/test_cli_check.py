"""`guardrail check` through a real server and in-process; the request log event carries no raw text."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import structlog

from guardrail_server.cli import main
from tests.conftest import make_config, only, running_server

KEYWORD = {"test_keyword": {"options": {"word": "secret"}, "on_fail": "block"}}
TEXT = "The secret code is in the vault."


async def test_check_cli_against_server_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case.json"
    case.write_text(json.dumps({"question": "where?", "context": [{"id": "d1", "text": "vault"}], "response": TEXT}))
    async with running_server(make_config(KEYWORD)) as (_, target):
        rc = await asyncio.to_thread(main, ["check", "--file", str(case), "--target", target, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 3  # the exit code is the decision (0 allow, 1 flag, 3 block)
    assert out["decision"] == "block"
    finding = out["results"][0]["findings"][0]
    assert TEXT[finding["start"] : finding["end"]] == "secret"


async def test_check_cli_readable_output(capsys: pytest.CaptureFixture[str]) -> None:
    async with running_server(make_config(KEYWORD)) as (_, target):
        rc = await asyncio.to_thread(main, ["check", "-r", TEXT, "-p", "some passage", "-t", target])
    out = capsys.readouterr().out
    assert rc == 3
    assert "decision: BLOCK" in out
    assert "test_keyword" in out and "FAIL" in out and "[4:10] 'secret'" in out


def test_check_cli_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "--in-process", "-r", "nothing to see", "--json",
               "--set", only("{test_keyword: {options: {word: secret}}}"), "--set", "review.enabled=false"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["decision"] == "allow"


def test_check_cli_unreachable_server_is_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "-r", "x", "-t", "127.0.0.1:1", "--timeout", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err


async def test_request_log_event_has_ids_and_outcomes_but_no_text() -> None:
    async with running_server(make_config(KEYWORD)) as (server, _):
        with structlog.testing.capture_logs() as events:
            from guardrail_invariants.types import Case, Passage

            await server.engine.check(Case(response=TEXT, question="what is the secret?", request_id="req-9", app="app-x",
                                           context=(Passage(id="d1", text="the vault holds 4111 1111 1111 1111"),)))
    (event,) = [e for e in events if e["event"] == "check"]
    assert event["request_id"] == "req-9" and event["app"] == "app-x"
    assert event["outcomes"] == {"test_keyword": "fail"} and event["decision"] == "block"
    dumped = json.dumps(events)
    for fragment in ("secret code", "vault holds", "4111", "what is the"):
        assert fragment not in dumped
