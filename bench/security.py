"""What TLS, mTLS and authentication cost per `Check` call, side by side in one run.

One server process hosts one GuardrailServer per variant (plaintext, TLS, mTLS, bearer token, API key, TLS + token,
mTLS + API key), all with reference_integrity only, checks inline (no worker processes); this process is the load
generator, through the thin client. Warm channels are measured in interleaved rounds (every variant in every round,
so background load drifts equally over all of them); cold calls (new channel: TCP + TLS handshake + first call) are
measured separately. Certificates are real (EC P-256, made with `cryptography`).

Usage: python -m bench.security [--requests 2000] [--cold 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.transport import CONTEXT, RESPONSE, pct
from guardrail_client import TLS, AsyncGuardrailClient

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-" + "0123456789abcdef" * 2
KEY = "bench-apikey-" + "fedcba9876543210" * 2

SERVER = r'''
import asyncio, json, sys
from guardrail_server.config import ConfigError, load_config
from guardrail_server.logs import configure_logging
from guardrail_server.server import GuardrailServer

async def main() -> None:
    configure_logging("warning", "json")
    spec = json.loads(sys.argv[1])
    servers, ports = [], {}
    for name, overrides in spec.items():
        base = [("server.port", 0), ("server.metrics_port", None), ("review.enabled", False),
                ("invariants", {"reference_integrity": {}}), ("logging.level", "warning")]
        try:
            cfg = load_config(None, environ={}, overrides=[*base, ("workers.mode", "inline"), *overrides.items()])
        except ConfigError:  # a tree without process workers
            cfg = load_config(None, environ={}, overrides=[*base, *overrides.items()])
        server = GuardrailServer(cfg)
        ports[name] = (await server.start()).grpc
        await server.warm()
        servers.append(server)
    print(json.dumps(ports), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        await server.stop(0)

asyncio.run(main())
'''


def variants(certs: Any) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (server overrides, client kwargs)."""
    tls = {"cert_file": str(certs.server.cert), "key_file": str(certs.server.key)}
    mtls = {**tls, "client_ca_file": str(certs.ca.pem)}
    ca = TLS(ca_file=str(certs.ca.pem))
    client_cert = TLS(ca_file=str(certs.ca.pem), cert_file=str(certs.client.cert), key_file=str(certs.client.key))
    return {
        "plaintext": ({}, {}),
        "TLS": ({"server.tls": tls}, {"tls": ca}),
        "mTLS": ({"server.tls": mtls}, {"tls": client_cert}),
        "token": ({"server.auth.tokens": [TOKEN]}, {"token": TOKEN}),
        "API key (pins app)": ({"server.auth.api_keys": {"bench": KEY}}, {"token": KEY}),
        "TLS + token": ({"server.tls": tls, "server.auth.tokens": [TOKEN]}, {"tls": ca, "token": TOKEN}),
        "mTLS + API key": ({"server.tls": mtls, "server.auth.api_keys": {"bench": KEY}},
                           {"tls": client_cert, "token": KEY}),
    }


async def warm_rounds(ports: dict[str, int], clients: dict[str, dict[str, Any]], n: int, rounds: int) -> dict:
    lat: dict[str, list[float]] = {name: [] for name in ports}
    opened = {name: AsyncGuardrailClient(f"localhost:{port}", timeout=30, **clients[name])
              for name, port in ports.items()}
    try:
        for c in opened.values():
            for _ in range(50):  # warm-up: connection, TLS session, server caches
                await c.check(RESPONSE, context=CONTEXT, invariants=["reference_integrity"])
        busy = {name: 0.0 for name in ports}

        async def worker(client: AsyncGuardrailClient, calls: int) -> None:
            for _ in range(calls):
                await client.check(RESPONSE, context=CONTEXT, invariants=["reference_integrity"])

        for _ in range(rounds):
            for name, c in opened.items():
                for _ in range(n // rounds):
                    t = time.perf_counter()
                    await c.check(RESPONSE, context=CONTEXT, invariants=["reference_integrity"])
                    lat[name].append(time.perf_counter() - t)
                t = time.perf_counter()  # then concurrency 8 on the same warm channel
                await asyncio.gather(*(worker(c, n // rounds // 8) for _ in range(8)))
                busy[name] += time.perf_counter() - t
        concurrent = {name: (n // rounds // 8) * 8 * rounds / busy[name] for name in ports}
    finally:
        for c in opened.values():
            await c.close()
    return {"lat": lat, "rps8": concurrent}


async def cold(ports: dict[str, int], clients: dict[str, dict[str, Any]], k: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(k):
        for name, port in ports.items():
            t = time.perf_counter()
            async with AsyncGuardrailClient(f"localhost:{port}", timeout=30, **clients[name]) as c:
                await c.check(RESPONSE, context=CONTEXT, invariants=["reference_integrity"])
            out[name].append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000, help="warm calls per variant")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cold", type=int, default=40, help="new-channel calls per variant")
    args = ap.parse_args()
    from tests.certs import CA

    with tempfile.TemporaryDirectory() as tmp:
        ca = CA(Path(tmp), "bench")

        class Certs:
            pass

        certs = Certs()
        certs.ca, certs.server = ca, ca.issue("guardrail", stem="server")  # type: ignore[attr-defined]
        certs.client = ca.issue("bench-app", client=True)  # type: ignore[attr-defined]
        spec = variants(certs)
        proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps({k: v[0] for k, v in spec.items()})],
                                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            ports = json.loads(proc.stdout.readline())
            clients = {k: v[1] for k, v in spec.items()}
            warm = asyncio.run(warm_rounds(ports, clients, args.requests, args.rounds))
            first = asyncio.run(cold(ports, clients, args.cold))
        finally:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(60)
    base = statistics.median(warm["lat"]["plaintext"])
    print(f"\nCheck (reference_integrity, {len(RESPONSE)}-char response, 5 passages) through the thin client; "
          f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}; {args.requests} warm calls per variant in "
          f"{args.rounds} interleaved rounds, {args.cold} cold calls (new channel) per variant")
    print(f"{'variant':<20}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'Δp50 ms':>9}{'req/s c=8':>11}"
          f"{'cold p50 ms':>13}{'cold p90':>10}")
    for name in ports:
        lat, c = warm["lat"][name], first[name]
        print(f"{name:<20}{pct(lat, .5) * 1e3:>9.2f}{pct(lat, .99) * 1e3:>9.2f}{statistics.mean(lat) * 1e3:>9.2f}"
              f"{(statistics.median(lat) - base) * 1e3:>+9.2f}{warm['rps8'][name]:>11.0f}"
              f"{pct(c, .5) * 1e3:>13.2f}{pct(c, .9) * 1e3:>10.2f}")


if __name__ == "__main__":
    main()
