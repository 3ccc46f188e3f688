"""Logs stay bounded and free of caller data, whatever a request carries: huge or hostile request_id/app, PII in passage
ids, urls, titles and metadata keys. Through a real server; every stderr line is checked.

request_id and app are logged (cut and stripped), not fingerprinted: they are the keys operators correlate on, and the
README asks callers to keep personal data out of them. By default the server refuses a request_id over 128 characters
(and an app over 64) before anything is logged; the log cut is the second line of defence for a deployment that raises
those limits, so the hostile test raises them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from typing import Any

import grpc
import pytest

from guardrail_client import AsyncGuardrailClient, Decision
from guardrail_server.logs import configure_logging, get_logger
from guardrail_server.validation import InputError
from tests.conftest import make_config, running_server

KEYWORD = {"test_keyword": {"options": {"word": "forbidden"}, "on_fail": "block"}}
MAX_LINE_BYTES = 6144  # a traceback field is cut to 4000 characters; a `check` event stays far below
PII = ["john.doe@acme.internal", "jane.roe@corp.local", "alice.patient@hospital.internal", "+1 415 555 0134",
       "123-45-6789"]
HOSTILE_REQUEST_ID = "\x1b[31mRID\n{\"event\": \"forged\"}\u202e\u2028" + "R" * 3_000_000
HOSTILE_APP = "app\r\nlevel=error forged\x00\x07" + "A" * 500_000


def _lines(err: str) -> list[dict[str, Any]]:
    out = []
    for line in err.splitlines():
        assert len(line.encode()) <= MAX_LINE_BYTES, f"{len(line.encode())}-byte log line: {line[:200]}…"
        out.append(json.loads(line))  # every line is one JSON object: no plain-text or forged lines
    return out


def _assert_clean(err: str) -> None:
    for value in PII:
        assert value not in err, value
    for fragment in ("john.doe", "acme.internal", "jane.roe", "alice.patient", "555 0134", "45-6789"):
        assert fragment not in err, fragment
    for control in ("\\u001b", "\\u202e", "\\u2028", "\\r", "\\u0000", "\\u0007"):
        assert control not in err, control


async def test_hostile_fields_give_bounded_json_lines_without_raw_values(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "json")
    context = [
        {"id": PII[0], "text": "The tower is 330 m tall.", "title": f"Record of {PII[2]}",
         "url": f"https://intranet.corp/people/{PII[1]}"},
        {"id": f"ssn-{PII[4]}", "text": "It opened in 1889.", "url": f"tel:{PII[3]}"},
    ]
    metadata = {f"patient:{PII[2]}": "1", f"phone {PII[3]}": "2"}
    raised = {"server.max_message_bytes": 8 * 1024 * 1024, "limits.max_request_id_chars": 4_000_000,
              "limits.max_app_chars": 1_000_000}
    async with running_server(make_config(KEYWORD, raised)) as (_, target):
        async with AsyncGuardrailClient(target, timeout=30) as client:
            for _ in range(2):
                reply = await client.check("This is forbidden [1].", question=f"mail {PII[0]}?", context=context,
                                           metadata=metadata, request_id=HOSTILE_REQUEST_ID, app=HOSTILE_APP)
                assert reply.decision is Decision.BLOCK
            dup = [{"id": PII[1], "text": "a"}, {"id": PII[1], "text": "b"}]
            with pytest.raises(grpc.aio.AioRpcError) as info:  # refused input: the caller hears why, logs do not
                await client.check("x", context=dup, request_id="dup-1", metadata=metadata)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            replies = [r async for r in client.check_stream(
                [{"response": "fine", "request_id": "stream-1" + "\n" * 10, "app": "chat\t", "context": context,
                  "metadata": metadata}])]
            assert replies[0].decision is Decision.ALLOW
    err = capfd.readouterr().err
    events = _lines(err)
    _assert_clean(err)
    assert not any(e["event"] == "forged" for e in events)
    checks = [e for e in events if e["event"] == "check"]
    assert all(len(json.dumps(e)) < 1500 for e in checks)
    assert len(checks) == 3
    first, second, streamed = checks
    assert first["request_id"].startswith("[31mRID{")  # controls stripped, the start kept for a human
    assert "3000" in first["request_id"] and "fp:" in first["request_id"]  # how long it was, and a fingerprint
    assert len(first["request_id"]) <= 128 and len(first["app"]) <= 64
    assert first["request_id"] == second["request_id"] and first["app"] == second["app"]  # still correlates
    assert (streamed["request_id"], streamed["app"]) == ("stream-1", "chat")  # short ones kept, minus controls


async def test_oversize_request_id_is_refused_by_default_and_not_logged(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "json")
    async with running_server(make_config(KEYWORD)) as (_, target):
        async with AsyncGuardrailClient(target, timeout=30) as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.check("This is forbidden.", request_id=f"rid-{PII[0]}-" + "R" * 200)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "request_id" in info.value.details() and PII[0] not in info.value.details()
    err = capfd.readouterr().err
    _lines(err)
    _assert_clean(err)


def test_stdlib_records_are_sanitized_json_too(capfd: pytest.CaptureFixture[str]) -> None:
    """Records from libraries and stdlib loggers (review store, gRPC, Presidio) pass the same sanitizer."""
    configure_logging("info", "json")
    logging.getLogger("guardrail_server.review.test").warning("store said: %s", HOSTILE_APP)
    try:
        raise ValueError("bad value " + "B" * 100_000)
    except ValueError:
        logging.getLogger("grpc._cython.cygrpc").exception("Unexpected error in handler")
    get_logger("guardrail.test").info("passage", passage_id=PII[0], url=PII[1], metadata={PII[2]: "v"},
                                      authorization="Bearer secret-token-value-123456", title=PII[3])
    err = capfd.readouterr().err
    events = _lines(err)
    _assert_clean(err)
    assert "secret-token-value" not in err
    stdlib, exc, structured = events
    assert stdlib["logger"] == "guardrail_server.review.test" and stdlib["event"].startswith("store said: applevel")
    assert exc["event"] == "Unexpected error in handler"
    assert exc["exception"].startswith("…[") and len(exc["exception"]) <= 4000  # the traceback's tail, bounded
    assert structured["authorization"] == "[redacted]"
    assert structured["passage_id"].startswith("fp:") and structured["url"].startswith("fp:")
    assert all(k.startswith("fp:") for k in structured["metadata"])


# A peer shutting down mid-call makes gRPC core print a plain-text INFO "Got goaway" line on stderr about half the time
# (it broke the hostile-fields test above once in CI). Importing the server package must keep core's lines to errors.
_GOAWAY = """
import asyncio, os, sys
import guardrail_server
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

async def once():
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        await call.read()
        await server.stop(0)
        try:
            await call.read()
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2)

for _ in range(6):
    asyncio.run(once())
print(os.environ["GRPC_VERBOSITY"])
"""


@pytest.mark.parametrize("preset", [None, "INFO"])
def test_grpc_core_lines_are_limited_to_errors_unless_the_operator_asks(preset: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    if preset:
        env["GRPC_VERBOSITY"] = preset
    done = subprocess.run([sys.executable, "-c", _GOAWAY], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (preset or "ERROR")
    if preset is None:
        assert done.stderr == ""


# --- PII in free text, whoever logs it (issue 23, item 10) ----------------------------------------------------------

FREE_TEXT_PII = ["john.doe@acme.internal", "QQ 12 34 56 C", "2345 6789 0124", "+44 7700 900123", "s3cr3tT0k3nABCDEF",
                 "tok3nValue9876", "4111 1111 1111 1111"]


def _assert_no_free_text_pii(err: str) -> None:
    for value in FREE_TEXT_PII:
        assert value not in err, value
    for fragment in ("john.doe", "12 34 56", "6789 0124", "7700 900123", "T0k3n", "Value9876", "1111 1111"):
        assert fragment not in err, fragment


def test_every_logger_and_traceback_passes_the_pii_scrubber(capfd: pytest.CaptureFixture[str]) -> None:
    """gRPC's ExecuteBatchError traceback chained to an input error quoting a passage id, asyncio's 'Task exception was
    never retrieved', a stdlib record's arguments and a structlog event's free text: every line is JSON and none
    carries an e-mail, NI or Aadhaar number, phone, card or URL secret (warnings: the helper-process test below)."""
    configure_logging("info", "json")
    quoted = f"context[1].id: duplicate passage id {FREE_TEXT_PII[0]!r}"
    try:
        try:
            raise InputError("INVALID_ARGUMENT", "context[1].id", f"duplicate passage id {FREE_TEXT_PII[0]!r}")
        except InputError:
            raise RuntimeError("Failed \"execute_batch\": (<SendStatusFromServerOperation>,)")  # noqa: B904
    except RuntimeError:
        logging.getLogger("grpc._cython.cygrpc").exception(
            "ExecuteBatchError raised in core by servicer method [/guardrail.v1.GuardrailService/Check]")
    try:
        raise ValueError(f"user QQ 12 34 56 C, aadhaar 2345 6789 0124, card 4111 1111 1111 1111 ({quoted})")
    except ValueError as exc:
        logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=exc)
    logging.getLogger("grpc.aio._call").debug("ignored below the level: %s", FREE_TEXT_PII[0])
    logging.getLogger("presidio-analyzer").warning("GET /s3cr3tT0k3nABCDEF/ for %s", FREE_TEXT_PII[0])
    get_logger("guardrail.test").info("free text", note=f"ring {FREE_TEXT_PII[3]} or mail {FREE_TEXT_PII[0]}")
    err = capfd.readouterr().err
    events = _lines(err)
    _assert_no_free_text_pii(err)
    grpc_line = next(e for e in events if e.get("logger") == "grpc._cython.cygrpc")
    assert "duplicate passage id" in grpc_line["exception"] and "<EMAIL_ADDRESS>" in grpc_line["exception"]
    assert "<UK_NINO>" in err and "<IN_AADHAAR>" in err and "<URL_SECRET>" in err and "<NUMBER>" in err


async def test_an_abort_after_the_callers_deadline_logs_no_traceback(capfd: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's path, through a real server: the call's input error surfaces only after the caller's deadline.
    The servicer no longer calls abort on a finished call (which made gRPC log an ExecuteBatchError traceback with
    the input error, and the passage id it quotes, chained in): the call ends as cancelled, and nothing is logged above
    debug."""
    from guardrail_server.engine import CheckEngine

    configure_logging("info", "json")

    async def late_input_error(self: CheckEngine, *args: object, **kwargs: object) -> None:
        await asyncio.sleep(0.6)
        raise InputError("INVALID_ARGUMENT", "context[1].id", f"duplicate passage id {FREE_TEXT_PII[0]!r}")

    monkeypatch.setattr(CheckEngine, "check", late_input_error)
    async with running_server(make_config(KEYWORD)) as (_, target):
        async with AsyncGuardrailClient(target, timeout=0.2) as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.check("x", context=[{"id": FREE_TEXT_PII[0], "text": "a"}])
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.8)  # the handler runs on past the deadline, then ends
    err = capfd.readouterr().err
    events = _lines(err)
    _assert_no_free_text_pii(err)
    assert not [e for e in events if e["level"] in ("error", "critical") or "exception" in e], events


def test_helper_processes_log_through_the_same_sanitizer() -> None:
    """A check worker or the redaction worker (childproc) configures the server's logging: a library's line or warning
    there is one scrubbed JSON object, not Python's raw last-resort text."""
    from guardrail_server.logs import child_environment

    configure_logging("info", "json")
    code = ("import logging, sys\n"
            "from guardrail_server.childproc import protocol_streams\n"
            "protocol_streams()\n"
            "logging.getLogger('spacy').warning('could not parse %s', 'mail john.doe@acme.internal QQ 12 34 56 C')\n"
            "import warnings\n"
            "warnings.warn('call +44 7700 900123 about https://x.example/reset?token=tok3nValue9876')\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **child_environment()},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    event, warning = _lines(done.stderr)
    assert event["logger"] == "spacy" and event["event"] == "could not parse mail <EMAIL_ADDRESS> <UK_NINO>"
    assert warning["logger"] == "py.warnings" and "<NUMBER>" in warning["event"] and "token=<URL_SECRET>" in \
        warning["event"]
    _assert_no_free_text_pii(done.stderr)
