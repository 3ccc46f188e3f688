"""The loop watch names what blocked the event loop: a stall's stack is logged while it lasts, code locations only."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import pytest

from guardrail_server import metrics
from guardrail_server.logs import configure_logging
from guardrail_server.loop_watch import LoopWatch


def _late_ticks(le: float) -> float:
    count = bucket = 0.0
    for m in metrics.LOOP_LAG.collect():
        for s in m.samples:
            if s.name.endswith("_count"):
                count = s.value
            elif s.name.endswith("_bucket") and float(s.labels["le"]) == le:
                bucket = s.value
    return count - bucket


def _blocks_the_loop_with_secret(secret: str) -> None:
    time.sleep(0.35)  # a synchronous call on the loop: what the watch exists to catch


async def test_a_blocked_loop_is_measured_and_its_stack_logged(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    watch = LoopWatch(interval_s=0.02, stall_s=0.1)
    before = _late_ticks(0.25)
    watch.start()
    try:
        await asyncio.sleep(0.1)
        _blocks_the_loop_with_secret("alice@example.com")
        await asyncio.sleep(0.1)
    finally:
        watch.stop()
    assert _late_ticks(0.25) - before >= 1  # the metric saw a tick more than 250 ms late
    events = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "event_loop_stall" in line]
    assert len(events) == 1, events  # one event per stall, however long the watchdog watched it
    stall = events[0]
    assert stall["level"] == "warning" and stall["late_ms"] > 100
    assert any(frame.endswith(" _blocks_the_loop_with_secret") and "tests/test_loop_watch.py:" in frame
               for frame in stall["stack"]), stall["stack"]
    assert "alice@example.com" not in json.dumps(stall)  # code locations, never arguments


async def test_a_busy_but_responsive_loop_logs_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    watch = LoopWatch(interval_s=0.02, stall_s=0.1)
    watch.start()
    try:
        for _ in range(20):
            time.sleep(0.01)  # short synchronous slices, each well under the stall bound
            await asyncio.sleep(0)
    finally:
        watch.stop()
    assert "event_loop_stall" not in capfd.readouterr().err


_SERVE = """
import asyncio, gc, os, signal, sys
sys.path.insert(0, os.getcwd())
from tests.conftest import make_config
from guardrail_server.server import GuardrailServer

async def main():
    task = asyncio.create_task(GuardrailServer(make_config({"test_keyword": {}})).serve_forever())
    for _ in range(1200):
        if gc.get_freeze_count():
            break
        await asyncio.sleep(0.05)
    print(f"frozen={gc.get_freeze_count()}", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    await task

asyncio.run(main())
"""


def test_the_serving_process_freezes_its_start_up_heap() -> None:
    """Full collections run on the loop thread; start-up's objects must not be walked by each (see server.py)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _SERVE], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("frozen=")]
    assert int(line.removeprefix("frozen=")) > 10_000  # the modules, config and stubs loaded before SERVING


def _gc_pauses(generation: str) -> float:
    for m in metrics.GC_PAUSE.collect():
        for s in m.samples:
            if s.name.endswith("_count") and s.labels["generation"] == generation:
                return s.value
    return 0.0


def test_collections_are_timed_and_a_long_one_is_logged(capfd: pytest.CaptureFixture[str]) -> None:
    from guardrail_server.loop_watch import GcPauses

    configure_logging("info", "json")
    pauses = GcPauses(stall_s=0.0)  # every collection counts as long here
    before = _gc_pauses("2")
    pauses.install()
    try:
        gc.collect()
    finally:
        pauses.uninstall()
    assert _gc_pauses("2") == before + 1
    (event,) = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "gc_pause" in line]
    assert event["generation"] == 2 and event["ms"] >= 0 and event["level"] == "warning"
    assert pauses not in gc.callbacks
