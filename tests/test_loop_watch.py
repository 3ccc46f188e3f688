"""The loop watch names what blocked the event loop: a stall's stack is logged while it lasts, code locations only."""

from __future__ import annotations

import asyncio
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
