"""Transport overhead of `Check`: reference_integrity only, concurrency 1/8/64, unary vs. CheckStream.

The server runs in its own process (as in production: the app and the sidecar do not share a GIL); this process
is the load generator. Runs twice, review sampler off and on (issue 7: the store must add nothing measurable to p99).
Prints one table. Usage: python -m bench.transport [--requests 2000] [--variant NAME|all]
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

import grpc

from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_server.client import build_request, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = [
    {"id": f"doc-{i}", "text": f"Passage {i} about the quarterly report and its figures. " * 8, "url": f"https://ex.com/{i}"}
    for i in range(1, 6)
]
RESPONSE = (
    "Revenue grew 12% in the quarter [1]. Costs were flat [2, 3]. Margins improved [doc-4]. "
    "See also [the report](https://ex.com/5) and an unknown source [7]."
)


def _request(i: int):
    return build_request(RESPONSE, context=CONTEXT, request_id=f"b{i}", invariants=["reference_integrity"])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def unary(stub, n: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            await stub.Check(_request(i), timeout=30)
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def stream(stub, n: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    sent: dict[str, float] = {}
    window = asyncio.Semaphore(concurrency)

    async def requests():
        for i in range(n):
            await window.acquire()
            req = _request(i)
            sent[req.request_id] = time.perf_counter()
            yield req

    async for reply in stub.CheckStream(requests()):
        latencies.append(time.perf_counter() - sent.pop(reply.request_id))
        window.release()
    return latencies


async def measure(n: int, port: int, variant: str) -> list[tuple]:
    target = f"127.0.0.1:{port}"
    await wait_until_serving(target, 600)
    rows = []
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.GuardrailServiceStub(ch)
        await unary(stub, 200, 8)  # warm-up
        for mode, fn in (("unary", unary), ("stream", stream)):
            for c in (1, 8, 64):
                t = time.perf_counter()
                lat = await fn(stub, n, c)
                wall = time.perf_counter() - t
                rows.append((variant, mode, c, len(lat), pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3,
                             statistics.mean(lat) * 1e3, len(lat) / wall))
    return rows


VARIANTS = {
    "sampling off": {"enabled": False},
    # every case here fails (one dangling citation), so the failure sampler runs at its rate limit, plus 1% random
    "sampling on": {"enabled": True, "random_rate": 0.01, "failure_rate_limit_per_minute": 60},
}


def run_variant(name: str, review: dict, n: int, tmp: Path) -> list[tuple]:
    from tests.conftest import free_port

    port = free_port()
    cfg = tmp / f"{name.replace(' ', '_')}.yaml"
    review = {**review, "url": f"sqlite:///{tmp / 'review.db'}", "spool_dir": str(tmp / "spool")}
    cfg.write_text(json.dumps({
        "server": {"port": port, "metrics_port": None},
        "workers": {"count": 2}, "admission": {"max_queue": 256, "max_queue_wait_s": 30},
        "logging": {"level": "info"},
        "review": review,
        "invariants": {"reference_integrity": {}, "entailment": {"enabled": False}, "pii_boundary": {"enabled": False},
                       "self_consistency": {"enabled": False}},
    }))
    proc = subprocess.Popen([sys.executable, "-m", "guardrail_server.cli", "serve", "--config", str(cfg)], cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    try:
        return asyncio.run(measure(n, port, name))
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    args = ap.parse_args()
    names = list(VARIANTS) if args.variant == "all" else [args.variant]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows += run_variant(name, VARIANTS[name], args.requests, Path(tmp))
    print(f"\nCheck with reference_integrity only; {len(RESPONSE)}-char response, 5 passages, {os.cpu_count()} cores, "
          f"load avg {os.getloadavg()[0]:.1f}; server in its own process, JSON request logs on")
    print(f"{'review sampler':<16}{'mode':<8}{'conc':>6}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}"
          f"{'req/s':>10}")
    for variant, mode, c, k, p50, p99, mean, rps in rows:
        print(f"{variant:<16}{mode:<8}{c:>6}{k:>10}{p50:>10.2f}{p99:>10.2f}{mean:>10.2f}{rps:>10.0f}")


if __name__ == "__main__":
    main()
