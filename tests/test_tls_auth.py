"""TLS, mTLS, authentication and bind addresses, through a real server on real ports with real certificates."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_client import TLS, AsyncGuardrailClient, Decision, GuardrailClient
from guardrail_server.config import ConfigError, load_config
from guardrail_server.logs import configure_logging
from tests.certs import CA, Pair
from tests.conftest import make_config, running_server

KEYWORD = {"test_keyword": {"options": {"word": "forbidden"}, "on_fail": "block"}}
TOKEN = "tok-" + "a1b2c3d4" * 4
CHAT_KEY = "key-chat-" + "9f8e7d6c" * 4
SEARCH_KEY = "key-search-" + "5a4b3c2d" * 4
ROOT = Path(__file__).resolve().parent.parent


class Certs:
    def __init__(self, directory: Path) -> None:
        self.ca = CA(directory, "main")
        self.rogue = CA(directory, "rogue")
        self.server = self.ca.issue("guardrail", stem="server")
        self.client = self.ca.issue("app-chat", client=True)
        self.rogue_client = self.rogue.issue("intruder", client=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def tls_config(certs: Certs, *, mutual: bool = False, server: Pair | None = None) -> dict[str, Any]:
    pair = server or certs.server
    cfg: dict[str, Any] = {"cert_file": str(pair.cert), "key_file": str(pair.key)}
    if mutual:
        cfg["client_ca_file"] = str(certs.ca.pem)
    return cfg


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status


# --- TLS and mTLS ---------------------------------------------------------------------------------------------------


async def test_tls_client_connects_plaintext_client_fails_health_over_tls(certs: Certs) -> None:
    async with running_server(make_config(KEYWORD, {"server.tls": tls_config(certs)})) as (_, target):
        async with AsyncGuardrailClient(target, tls=TLS(ca_file=str(certs.ca.pem)), timeout=5) as client:
            reply = await client.check("this is forbidden")
            assert reply.decision is Decision.BLOCK
            assert await client.health()
        creds = grpc.ssl_channel_credentials(certs.ca.pem.read_bytes())
        async with grpc.aio.secure_channel(target, creds) as channel:
            assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.GuardrailServiceStub(channel).Check(pb.CheckRequest(response="x"), timeout=3)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError):
                await _health(channel)
        # a client that trusts another CA refuses the server's certificate
        async with AsyncGuardrailClient(target, tls=TLS(ca_file=str(certs.rogue.pem)), timeout=3) as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.check("x")
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate_signed_by_the_client_ca(certs: Certs) -> None:
    cfg = make_config(KEYWORD, {"server.tls": tls_config(certs, mutual=True)})
    async with running_server(cfg) as (_, target):
        no_cert = TLS(ca_file=str(certs.ca.pem))
        rogue = TLS(ca_file=str(certs.ca.pem), cert_file=str(certs.rogue_client.cert),
                    key_file=str(certs.rogue_client.key))
        for tls in (no_cert, rogue):
            async with AsyncGuardrailClient(target, tls=tls, timeout=3) as client:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await client.check("x")
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE, tls
        good = TLS(ca_file=str(certs.ca.pem), cert_file=str(certs.client.cert), key_file=str(certs.client.key))
        async with AsyncGuardrailClient(target, tls=good, timeout=5) as client:
            assert (await client.check("fine")).decision is Decision.ALLOW
            assert await client.health()


def _peer_serial(port: int, ca: Path) -> int:
    """The serial of the certificate the server presents to a fresh connection (stdlib TLS, ALPN h2 like gRPC)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_rotated_certificate_is_served_to_new_connections(certs: Certs, tmp_path: Path) -> None:
    first = certs.ca.issue("guardrail", stem="rot1")
    live = Pair(tmp_path / "live.crt", tmp_path / "live.key", first.serial)
    live.cert.write_bytes(first.cert.read_bytes())
    live.key.write_bytes(first.key.read_bytes())
    async with running_server(make_config(KEYWORD, {"server.tls": tls_config(certs, server=live)})) as (server, _):
        port = server.ports.grpc
        assert await asyncio.to_thread(_peer_serial, port, certs.ca.pem) == first.serial
        half = certs.ca.issue("guardrail", stem="rot-half")  # a torn rotation: new cert, old key -> keep the old pair
        live.cert.write_bytes(half.cert.read_bytes())
        os.utime(live.cert, ns=(1, 1))
        assert await asyncio.to_thread(_peer_serial, port, certs.ca.pem) == first.serial
        second = certs.ca.issue("guardrail", stem="rot2")
        live.key.write_bytes(second.key.read_bytes())
        live.cert.write_bytes(second.cert.read_bytes())
        assert await asyncio.to_thread(_peer_serial, port, certs.ca.pem) == second.serial
        async with AsyncGuardrailClient(f"localhost:{port}", tls=TLS(ca_file=str(certs.ca.pem)), timeout=5) as c:
            assert (await c.check("fine")).decision is Decision.ALLOW


async def test_plaintext_health_port_serves_only_health_beside_tls(certs: Certs) -> None:
    cfg = make_config(KEYWORD, {"server.tls": tls_config(certs, mutual=True), "server.health_port": 0})
    async with running_server(cfg) as (server, _):
        assert server.ports.health
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.ports.health}") as channel:
            assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.GuardrailServiceStub(channel).Check(pb.CheckRequest(response="x"), timeout=3)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


LIGHT = [("invariants", {"reference_integrity": {}})]  # the default set would import Presidio for nothing here


def _cfg_error(overrides: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={}, overrides=[*LIGHT, *overrides.items()])
    return str(info.value)


def test_tls_config_errors_name_the_key(certs: Certs, tmp_path: Path) -> None:
    good = tls_config(certs)
    err = _cfg_error({"server.tls": {**good, "cert_file": str(tmp_path / "missing.crt")}})
    assert "server.tls.cert_file" in err and "does not exist" in err
    err = _cfg_error({"server.tls": {**good, "key_file": str(tmp_path)}})
    assert "server.tls.key_file" in err and "not a file" in err
    other = certs.ca.issue("other", stem="other")
    err = _cfg_error({"server.tls": {**good, "key_file": str(other.key)}})
    assert "server.tls.key_file" in err and "does not match" in err
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    err = _cfg_error({"server.tls": {**good, "client_ca_file": str(junk)}})
    assert "server.tls.client_ca_file" in err and "not PEM" in err
    err = _cfg_error({"server.tls": {"cert_file": str(certs.server.cert)}})
    assert "server.tls.key_file" in err
    assert load_config(None, environ={}, overrides=[*LIGHT, ("server.tls", good)]).server.tls is not None


def test_serve_refuses_bad_tls_config_with_exit_2_naming_the_key(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail_server.cli", "serve", "--set", f"server.tls.cert_file={tmp_path}/none.crt",
         "--set", f"server.tls.key_file={tmp_path}/none.key", "--port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "server.tls.cert_file" in proc.stderr and "server.tls.key_file" in proc.stderr


# --- authentication -------------------------------------------------------------------------------------------------


def _auth_failures(err: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "auth_failed"]


async def test_token_required_health_open_and_failures_logged_without_the_token(
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    wrong = "tok-wrong-" + "0" * 30
    async with running_server(make_config(KEYWORD, {"server.auth.tokens": [TOKEN]})) as (_, target):
        async with grpc.aio.insecure_channel(target) as channel:
            assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING  # no credential needed
            stub = pb_grpc.GuardrailServiceStub(channel)
            cases = [((), "missing"), ((("authorization", f"Bearer {wrong}"),), "invalid"),
                     ((("authorization", f"Basic {TOKEN}"),), "malformed")]
            for metadata, _reason in cases:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Check(pb.CheckRequest(response="x"), metadata=metadata, timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert TOKEN not in (info.value.details() or "") and wrong not in (info.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListInvariants(pb.ListInvariantsRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in reflection.ServerReflectionInfo(
                        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5):
                    pass
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as info:  # a stream is refused before any request is read
                async for _ in stub.CheckStream(iter([pb.CheckRequest(response="x")]), timeout=5):
                    pass
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with AsyncGuardrailClient(target, token=TOKEN, timeout=5) as client:
            assert (await client.check("forbidden", app="any-app")).decision is Decision.BLOCK
            assert "test_keyword" in [i.name for i in (await client.list_invariants()).invariants]
            replies = [r async for r in client.check_stream([{"response": "fine", "request_id": "s1"}])]
            assert [(r.request_id, r.decision) for r in replies] == [("s1", Decision.ALLOW)]
    err = capfd.readouterr().err
    failures = _auth_failures(err)
    assert [f["reason"] for f in failures[:3]] == ["missing", "invalid", "malformed"]
    assert len(failures) == 6
    assert all(f["code"] == "UNAUTHENTICATED" and f["peer"].startswith("ipv") for f in failures)
    assert {f["method"] for f in failures} >= {"/guardrail.v1.GuardrailService/Check",
                                              "/guardrail.v1.GuardrailService/CheckStream"}
    assert TOKEN not in err and wrong not in err and TOKEN[4:20] not in err


def _check_events(err: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(line) for line in err.splitlines() if line.startswith("{"))
            if e.get("event") == "check"]


async def test_api_key_pins_the_app(capfd: pytest.CaptureFixture[str], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("info", "json")
    key_file = tmp_path / "search.key"
    key_file.write_text(SEARCH_KEY + "\n")  # a trailing newline, as editors and `echo` leave it
    monkeypatch.setenv("TEST_CHAT_KEY", CHAT_KEY)
    auth = {"api_keys": {"chat": {"env": "TEST_CHAT_KEY"}, "search": [{"file": str(key_file)}]}}
    async with running_server(make_config(KEYWORD, {"server.auth": auth})) as (_, target):
        async with AsyncGuardrailClient(target, token=CHAT_KEY, timeout=5) as chat:
            await chat.check("fine", request_id="no-app")  # app empty -> set from the key
            await chat.check("fine", request_id="same-app", app="chat")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await chat.check("fine", request_id="other-app", app="search")
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            replies = [r async for r in chat.check_stream([{"response": "forbidden", "request_id": "st-1"}])]
            assert replies[0].decision is Decision.BLOCK
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in chat.check_stream([{"response": "fine", "request_id": "st-2", "app": "search"}]):
                    pass
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        async with AsyncGuardrailClient(target, token=SEARCH_KEY, timeout=5) as search:
            await search.check("fine", request_id="search-1")
        async with AsyncGuardrailClient(target, token=TOKEN, timeout=5) as nobody:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await nobody.check("fine")
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    err = capfd.readouterr().err
    apps = {e["request_id"]: e["app"] for e in _check_events(err)}
    assert apps == {"no-app": "chat", "same-app": "chat", "st-1": "chat", "search-1": "search"}
    assert CHAT_KEY not in err and SEARCH_KEY not in err


def test_sync_client_with_tls_token_and_retry_on_overload(certs: Certs) -> None:
    """The blocking client over TLS with a token; with retries on, a shed call (RESOURCE_EXHAUSTED) is retried."""
    from guardrail_client import RetryPolicy

    cfg = make_config({"test_sleepy": {"options": {"seconds": 0.4}}},
                      {"server.tls": tls_config(certs), "server.auth.tokens": [TOKEN],
                       "workers.count": 1, "admission.max_queue": 0})

    async def main() -> tuple[list[Any], list[Any]]:
        async with running_server(cfg) as (_, target):
            tls = TLS(ca_file=str(certs.ca.pem))

            def burst(retry: RetryPolicy | None) -> list[Any]:
                with GuardrailClient(target, tls=tls, token=TOKEN, timeout=10, retry=retry) as client:
                    from concurrent.futures import ThreadPoolExecutor

                    def one(_i: int) -> Any:
                        try:
                            return client.check("x")
                        except grpc.RpcError as err:
                            return err.code()

                    with ThreadPoolExecutor(3) as pool:
                        return list(pool.map(one, range(3)))

            without = await asyncio.to_thread(burst, None)
            with_retry = await asyncio.to_thread(
                burst, RetryPolicy(max_attempts=20, initial_backoff_s=0.1, max_backoff_s=0.5))
            return without, with_retry

    without, with_retry = asyncio.run(main())
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in without
    assert all(getattr(r, "decision", None) is Decision.ALLOW for r in with_retry), with_retry


def test_auth_config_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_UNSET_TOKEN", raising=False)
    err = _cfg_error({"server.auth.tokens": [{"env": "TEST_UNSET_TOKEN"}]})
    assert "server.auth.tokens.0" in err and "TEST_UNSET_TOKEN is not set" in err
    err = _cfg_error({"server.auth.api_keys": {"chat": {"file": str(tmp_path / "nope")}}})
    assert "server.auth.api_keys.chat.0" in err and "cannot read" in err
    err = _cfg_error({"server.auth.tokens": ["short"]})
    assert "server.auth.tokens.0" in err and "shorter than 16" in err
    assert "short" not in err.split("shorter")[0].replace("server.auth.tokens", "")
    err = _cfg_error({"server.auth": {"tokens": [TOKEN], "api_keys": {"chat": TOKEN}}})
    assert "server.auth" in err and "same secret" in err and TOKEN not in err
    err = _cfg_error({"server.auth.api_keys": {"bad app!": CHAT_KEY}})
    assert "server.auth.api_keys" in err


def test_guardrail_config_never_prints_secrets(tmp_path: Path) -> None:
    env = {**os.environ, "TEST_CHAT_KEY": CHAT_KEY, "GUARDRAIL_SERVER__AUTH__TOKENS": f"[{TOKEN}]"}
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail_server.cli", "config", "--set",
         "server.auth.api_keys.chat.env=TEST_CHAT_KEY", "--set", "invariants={reference_integrity: {}}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TEST_CHAT_KEY" in proc.stdout and "**********" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr and CHAT_KEY not in proc.stdout + proc.stderr


# --- bind addresses -------------------------------------------------------------------------------------------------


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


async def test_metrics_bind_server_host_unless_metrics_host_overrides() -> None:
    """127.0.0.2 is loopback too, but a socket bound to 127.0.0.1 does not answer there; one on 0.0.0.0 does."""
    cfg = make_config(KEYWORD, {"server.metrics_port": 0, "server.host": "127.0.0.1"})
    async with running_server(cfg) as (server, _):
        port = server.ports.metrics
        assert port and _reachable("127.0.0.1", port)
        assert not _reachable("127.0.0.2", port)
        async with httpx.AsyncClient() as http:
            assert "guardrail_checks_total" in (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    cfg = make_config(KEYWORD, {"server.metrics_port": 0, "server.metrics_host": "0.0.0.0"})
    async with running_server(cfg) as (server, _):
        assert server.ports.metrics and _reachable("127.0.0.2", server.ports.metrics)


# --- the `guardrail check` CLI ----------------------------------------------------------------------------------------


async def test_check_cli_over_mtls_with_token_file_or_env(certs: Certs, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail_server.cli import main

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("GUARDRAIL_TOKEN", raising=False)
    cfg = make_config(KEYWORD, {"server.tls": tls_config(certs, mutual=True), "server.auth.tokens": [TOKEN]})
    async with running_server(cfg) as (server, _):
        target = f"localhost:{server.ports.grpc}"
        tls = ["--tls-ca", str(certs.ca.pem), "--tls-cert", str(certs.client.cert), "--tls-key", str(certs.client.key)]
        base = ["check", "-r", "forbidden words", "-t", target, "--timeout", "5", "--json", *tls]
        rc = await asyncio.to_thread(main, [*base, "--token-file", str(token_file)])
        out = capsys.readouterr()
        assert rc != 2, out.err
        assert json.loads(out.out)["decision"] == "block"
        rc = await asyncio.to_thread(main, base)
        assert rc == 2 and "UNAUTHENTICATED" in capsys.readouterr().err
        monkeypatch.setenv("GUARDRAIL_TOKEN", TOKEN)
        rc = await asyncio.to_thread(main, base)
        assert json.loads(capsys.readouterr().out)["decision"] == "block" and rc != 2
        rc = await asyncio.to_thread(main, ["check", "-r", "x", "-t", target, "--timeout", "3"])  # plaintext
        assert rc == 2 and "UNAVAILABLE" in capsys.readouterr().err
