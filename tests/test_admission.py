"""Admission control (guardrail_server.admission): slots, a bounded queue with a wait budget, stream quotas, shutdown.

The gRPC behaviour (RESOURCE_EXHAUSTED, per-reply errors on a stream, metrics) is in test_server.py and
test_load_slice.py; here the rules themselves, on a real event loop."""

from __future__ import annotations

import asyncio

import pytest

from guardrail_server.admission import Admission, Shed


def make(capacity: int = 1, max_queue: int = 2, max_wait_s: float = 0.2, stream_share: float = 0.5) -> Admission:
    return Admission(capacity, max_queue=max_queue, max_wait_s=max_wait_s, stream_share=stream_share)


async def hold(adm: Admission, kind: str, release: asyncio.Event, started: list[str], name: str) -> None:
    async with adm.slot(kind):  # type: ignore[arg-type]
        started.append(name)
        await release.wait()


async def test_a_free_slot_is_taken_at_once_and_a_waiter_gets_it_when_released() -> None:
    adm, release, started = make(), asyncio.Event(), []
    first = asyncio.ensure_future(hold(adm, "unary", release, started, "a"))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(hold(adm, "unary", asyncio.Event(), started, "b"))
    await asyncio.sleep(0.01)
    assert started == ["a"] and adm.queued("unary") == 1
    release.set()
    await first
    await asyncio.sleep(0.01)
    assert started == ["a", "b"]
    second.cancel()


async def test_a_full_queue_sheds_at_once_and_a_long_wait_sheds_after_the_budget() -> None:
    adm, release, started = make(max_queue=1, max_wait_s=0.2), asyncio.Event(), []
    running = asyncio.ensure_future(hold(adm, "unary", release, started, "run"))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(hold(adm, "unary", asyncio.Event(), started, "wait"))
    await asyncio.sleep(0.01)
    with pytest.raises(Shed) as full:
        async with adm.slot("unary"):
            pass
    assert full.value.reason == "queue_full"
    with pytest.raises(Shed) as late:
        await waiting
    assert late.value.reason == "queue_timeout"
    assert adm.queued() == 0 and adm.in_use["unary"] == 1  # the timed-out waiter left no trace
    release.set()
    await running
    assert adm.in_use["unary"] == 0


async def test_a_deadline_too_close_to_wait_is_shed_without_waiting() -> None:
    adm, release = make(), asyncio.Event()
    running = asyncio.ensure_future(hold(adm, "unary", release, [], "run"))
    await asyncio.sleep(0.01)
    with pytest.raises(Shed) as shed:
        async with adm.slot("unary", budget_s=0.0):
            pass
    assert shed.value.reason == "deadline"
    release.set()
    await running


async def test_streams_cannot_take_every_slot_or_starve_unary_callers() -> None:
    adm, release, started = make(capacity=2, max_queue=4, max_wait_s=1.0, stream_share=0.5), asyncio.Event(), []
    s1 = asyncio.ensure_future(hold(adm, "stream", release, started, "s1"))
    s2 = asyncio.ensure_future(hold(adm, "stream", release, started, "s2"))
    await asyncio.sleep(0.01)
    assert started == ["s1"]  # the second stream request waits although a slot is free ...
    u = asyncio.ensure_future(hold(adm, "unary", release, started, "u"))
    await asyncio.sleep(0.01)
    assert started == ["s1", "u"]  # ... which a unary caller takes at once, ahead of the older stream waiter
    with pytest.raises(Shed) as quota:  # the stream's share of the queue (2 of 4) is full at 2 waiters
        await asyncio.gather(hold(adm, "stream", release, started, "s3"), hold(adm, "stream", release, started, "s4"))
    assert quota.value.reason == "queue_full"
    release.set()
    await asyncio.gather(s1, s2, u, return_exceptions=True)
    assert "s2" in started


async def test_offline_callers_wait_without_limit_and_are_never_shed() -> None:
    adm, release, started = make(max_queue=0, max_wait_s=0.0), asyncio.Event(), []
    running = asyncio.ensure_future(hold(adm, "unary", release, started, "run"))
    await asyncio.sleep(0.01)
    offline = asyncio.ensure_future(hold(adm, "offline", asyncio.Event(), started, "eval"))
    await asyncio.sleep(0.3)
    assert started == ["run"] and not offline.done()
    release.set()
    await asyncio.sleep(0.01)
    assert started == ["run", "eval"]
    offline.cancel()


async def test_capacity_follows_live_workers() -> None:
    adm, started = make(capacity=0, max_wait_s=2.0), []
    waiting = asyncio.ensure_future(hold(adm, "unary", asyncio.Event(), started, "w"))
    await asyncio.sleep(0.05)
    assert started == []  # no worker up yet (or all being replaced)
    adm.resize(1)
    await asyncio.sleep(0.01)
    assert started == ["w"]
    waiting.cancel()


async def test_shutdown_sheds_the_queue_and_new_calls() -> None:
    adm, release = make(max_wait_s=5.0), asyncio.Event()
    running = asyncio.ensure_future(hold(adm, "unary", release, [], "run"))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(hold(adm, "unary", asyncio.Event(), [], "q"))
    await asyncio.sleep(0.01)
    adm.close()
    with pytest.raises(Shed) as q:
        await queued
    assert q.value.reason == "shutting_down"
    with pytest.raises(Shed):
        async with adm.slot("unary"):
            pass
    release.set()
    await running  # in-flight calls finish
