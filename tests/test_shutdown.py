"""SIGTERM while calls are in flight: they complete, new ones are refused, the process exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.client import AsyncGuardrailClient, wait_until_serving
from guardrail_server.config import DEFAULT_INVARIANTS
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

LAUNCHER = textwrap.dedent(
    """
    import sys
    from guardrail_invariants import registry
    from tests.helpers_invariants import TEST_INVARIANTS
    registry.REGISTRY.update(TEST_INVARIANTS)
    from guardrail_server.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


async def test_sigterm_drains_in_flight_calls(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({
        "server": {"port": port, "metrics_port": None, "grace_period_s": 10},
        "workers": {"mode": "process", "count": 5},  # every call below is in flight (none queued) when SIGTERM lands
        "review": {"enabled": False},
        "invariants": {**{n: {"enabled": False} for n in DEFAULT_INVARIANTS},
                       "test_sleepy": {"timeout_s": 30, "options": {"seconds": 1.5}}},
    }))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "serve", "--config", str(cfg)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    target = f"127.0.0.1:{port}"
    try:
        await wait_until_serving(target)
        async with AsyncGuardrailClient(target, timeout=20) as client:
            in_flight = [asyncio.create_task(client.check(f"r{i}", request_id=f"r{i}")) for i in range(5)]
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            replies = await asyncio.gather(*in_flight)
        assert sorted(r.request_id for r in replies) == [f"r{i}" for i in range(5)]
        assert all(r.results[0].outcome == pb.PASS for r in replies)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        assert time.monotonic() - signalled < 10  # the whole stop, workers included, fits in the grace period
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=10)
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "draining" in events and events[-1] == "stopped"
    assert events.count("check") == 5


def test_bad_config_exits_non_zero_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server:\n  port: 99999999\ninvariants:\n  reference_integrity:\n    on_fail: explode\n")
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail_server.cli", "serve", "--config", str(cfg)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "server.port" in proc.stderr
    assert "invariants.reference_integrity.on_fail" in proc.stderr


def slow_redact(text: str) -> str:
    """A redactor that takes 2.5 s a text (Presidio on hostile text on a busy machine); picklable, so it runs in the
    redaction worker process like the real one."""
    time.sleep(2.5)
    return text.upper()


async def test_a_slow_review_writer_does_not_stretch_the_stop_past_the_grace_period(tmp_path: Path) -> None:
    """The review writer gets what is left of the grace, not its own 30 s: a sample still being redacted stays in
    the intake journal (or is finished by the writer) — it is not lost, and the stop does not wait for it."""
    from guardrail_server.review.sampler import ReviewSampler
    from guardrail_server.review.store import ReviewStore
    from tests.conftest import make_config, running_server

    cfg = make_config({"test_keyword": {}}, {"review.enabled": True, "review.random_rate": 1.0,
                                             "review.url": f"sqlite:///{tmp_path / 'review.db'}",
                                             "review.spool_dir": str(tmp_path / "spool")})
    sampler = ReviewSampler(cfg.review, redactor=slow_redact)
    async with running_server(cfg, sampler=sampler) as (server, target):
        async with AsyncGuardrailClient(target, timeout=10) as client:
            reply = await client.check("a forbidden word", request_id="slow-1")
        assert reply.review_sample_id
        writer = sampler._thread
        await asyncio.sleep(0.2)  # the writer is now inside the 2.5 s redaction
        started = time.monotonic()
        await server.stop(grace=0.8)
        assert time.monotonic() - started < 1.3  # was 2.5+ s: the sampler's own 30 s budget
    assert writer is not None
    await asyncio.to_thread(writer.join, 30)
    again = ReviewSampler(cfg.review, redactor=str.upper)  # the next start stores whatever the first one left
    await again.start()
    await again.stop()
    with ReviewStore(cfg.review.url) as store:
        assert store.sample_ids() == [reply.review_sample_id]
