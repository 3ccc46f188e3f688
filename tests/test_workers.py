"""Check workers (`workers.mode: process`): a check that holds the GIL or dies cannot freeze or crash the server; a
check past its deadline is really stopped (the worker is killed and replaced), counted as a fail-open, and the next
call is served by a fresh worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import harness
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.client import AsyncGuardrailClient
from guardrail_server.workers import WorkerMetrics
from tests.conftest import free_port, make_config, running_server

# the hog's timeout is let through (on_partial: allow, on_error: fail_open): this file is about fail-open accounting;
# the default (on_partial: flag) never allows a timed-out check (tests/test_long_response.py)
HOG = {"test_gil_hog": {"timeout_s": 1.0, "on_partial": "allow"}, "test_keyword": {"timeout_s": 2.0}}


class LongestLoopGap:
    """The longest the event loop went without running a 10 ms ticker: how long it was blocked."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - 0.01)
            last = now

    def __enter__(self) -> LongestLoopGap:
        self._task = asyncio.ensure_future(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture()
async def hog_server() -> AsyncIterator[tuple[object, str, int]]:
    port = free_port()
    cfg = make_config(HOG, {"workers.mode": "process", "workers.count": 2, "server.metrics_port": port})
    async with running_server(cfg) as (server, target):
        yield server, target, port


async def test_a_check_holding_the_gil_neither_freezes_the_server_nor_outlives_its_timeout(hog_server) -> None:
    server, target, metrics_port = hog_server
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        async with AsyncGuardrailClient(target, timeout=20) as client:
            with LongestLoopGap() as watch:
                started = time.perf_counter()
                hog = asyncio.ensure_future(client.check("x", metadata={"hog": "40"}))  # ~forever in one C call
                await asyncio.sleep(0.3)
                probes = []
                for _ in range(5):  # health and other calls keep being answered while the hog runs
                    t0 = time.perf_counter()
                    status = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    probes.append(time.perf_counter() - t0)
                    assert status.status == health_pb2.HealthCheckResponse.SERVING
                    other = await client.check("forbidden", invariants=["test_keyword"])
                    assert other.results[0].outcome == pb.FAIL
                reply = await hog
                elapsed = time.perf_counter() - started
    # in a thread the hog would freeze the loop for its whole second; what is left here is the OS scheduler on 2 busy
    # cores (bench/fuzz.py measures stalls on a quiet machine)
    assert watch.longest < 0.75
    assert max(probes) < 1.0
    by_name = {r.invariant: r for r in reply.results}
    assert by_name["test_gil_hog"].outcome == pb.ERROR
    assert by_name["test_gil_hog"].findings[0].kind == "timeout"
    # the keyword check shared the stuck worker: stopped with it, and said so (not dressed up as its own timeout)
    assert by_name["test_keyword"].outcome == pb.ERROR
    assert by_name["test_keyword"].findings[0].kind == "worker_lost"
    assert reply.decision == pb.ALLOW  # fail-open by policy ...
    assert elapsed < 1.0 + 0.25 + 1.0  # timeout + kill grace + slack: the check was really stopped
    assert server.engine.runner.restarts == 1
    body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert 'guardrail_fail_open_total{invariant="test_gil_hog",reason="timeout"} 1.0' in body  # ... never silent
    for _ in range(100):  # the replacement comes up and takes calls again
        if server.engine.runner.live == 2:
            break
        await asyncio.sleep(0.1)
    async with AsyncGuardrailClient(target, timeout=20) as client:
        replies = await asyncio.gather(*(client.check("fine") for _ in range(4)))
    assert all(r.decision == pb.ALLOW and all(x.outcome == pb.PASS for x in r.results) for r in replies)


async def test_a_worker_that_dies_becomes_an_error_verdict_and_is_replaced() -> None:
    cfg = make_config({"test_crash": {"on_error": "fail_closed"}}, {"workers.mode": "process", "workers.count": 1})
    async with running_server(cfg) as (server, target):
        async with AsyncGuardrailClient(target, timeout=20) as client:
            died = await client.check("x", metadata={"crash": "1"})
            assert died.results[0].outcome == pb.ERROR
            assert died.results[0].findings[0].kind == "worker_lost"
            assert died.decision == pb.BLOCK  # fail_closed
            for _ in range(200):
                if server.engine.runner.live == 1:
                    break
                await asyncio.sleep(0.1)
            fine = await client.check("x")
    assert fine.results[0].outcome == pb.PASS


async def test_workers_die_with_the_server_process(tmp_path) -> None:
    """SIGKILL of the server leaves no check worker behind (they watch their parent)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from guardrail_server.client import wait_until_serving
    from guardrail_server.config import DEFAULT_INVARIANTS
    from tests.test_shutdown import LAUNCHER

    root = Path(__file__).resolve().parents[1]
    port = free_port()
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({
        "server": {"port": port, "metrics_port": None}, "review": {"enabled": False},
        "workers": {"mode": "process", "count": 2},
        "invariants": {**{n: {"enabled": False} for n in DEFAULT_INVARIANTS}, "test_keyword": {}}}))
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "serve", "--config", str(cfg)], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.DEVNULL)
    try:
        await wait_until_serving(f"127.0.0.1:{port}", timeout_s=120)
        children = harness.children(proc.pid)
        assert len(children) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(harness.pid_alive(pid) for pid in children):
            await asyncio.sleep(0.1)
        assert not [pid for pid in children if harness.pid_alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_worker_metrics_never_go_backwards_when_a_worker_is_replaced() -> None:
    def snapshot(count: float, depth: float) -> list:
        return [("guardrail_model_batch_size", "histogram", "Pairs per model batch",
                 [("guardrail_model_batch_size_count", {"model": "m"}, count),
                  ("guardrail_model_batch_size_sum", {"model": "m"}, count)]),
                ("guardrail_model_queue_depth", "gauge", "Pairs waiting", [("guardrail_model_queue_depth",
                                                                           {"model": "m"}, depth)])]

    def values(m: WorkerMetrics) -> dict[str, float]:
        return {s.name: s.value for family in m.collect() for s in family.samples}

    m = WorkerMetrics()
    m.update(0, snapshot(5, 2))
    m.update(1, snapshot(3, 1))
    assert values(m) == {"guardrail_model_batch_size_count": 8, "guardrail_model_batch_size_sum": 8,
                         "guardrail_model_queue_depth": 3}
    m.retire(0)  # worker 0 killed: its counts stay, its gauge goes
    m.update(0, snapshot(1, 0))  # the replacement starts from zero
    assert values(m) == {"guardrail_model_batch_size_count": 9, "guardrail_model_batch_size_sum": 9,
                         "guardrail_model_queue_depth": 1}


async def test_a_worker_whose_caller_gave_up_is_not_handed_another_case_until_it_is_free() -> None:
    """The caller's deadline passes while its case runs: the worker finishes that case first, and the next call waits
    for it (admission sees one worker fewer) instead of being queued behind an invisible job or lost."""
    cfg = make_config({"test_sleepy": {"timeout_s": 5.0, "options": {"seconds": 1.0}}},
                      {"workers.mode": "process", "workers.count": 1, "admission.max_queue_wait_s": 5.0})
    async with running_server(cfg) as (server, target):
        async with AsyncGuardrailClient(target, timeout=10) as impatient:
            with pytest.raises(TimeoutError):  # the caller cancels its call after 0.3 s
                await asyncio.wait_for(impatient.check("x"), 0.3)
        await asyncio.sleep(0.1)
        assert server.engine.admission.capacity == 0  # the worker is still on the abandoned case
        async with AsyncGuardrailClient(target, timeout=10) as client:
            started = time.perf_counter()
            reply = await client.check("y")
            waited = time.perf_counter() - started
    assert reply.results[0].outcome == pb.PASS
    assert waited >= 1.4  # ~0.6 s left of the abandoned case, then its own 1.0 s
    assert server.engine.runner.restarts == 0


def _nice(pid: int) -> int:
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])  # field 19 of proc(5), counted after the command name


async def test_workers_run_below_the_server_priority() -> None:
    """On busy cores the server's loop (health, admission, replies) must be scheduled before the checks."""
    import os

    cfg = make_config({"test_keyword": {}}, {"workers.mode": "process", "workers.count": 1, "workers.nice": 7})
    async with running_server(cfg):
        workers = [pid for pid in harness.children(os.getpid())
                   if b"guardrail_server.workers" in open(f"/proc/{pid}/cmdline", "rb").read()]
        assert len(workers) == 1
        assert _nice(workers[0]) == min(19, _nice(os.getpid()) + 7)
