"""Admission control: a call runs only when a check slot is free, waits a bounded time for one, or is shed.

Why: on 2 cores the service completes a few full checks per second. Letting 64 calls in at once does not make more
of them finish — it makes all of them slow, until every invariant times out and fails open. A call that cannot start
soon enough to finish inside its deadline is refused at once with RESOURCE_EXHAUSTED (the caller retries or falls
back, and `guardrail_shed_total` says it happened), so the calls that are admitted keep their normal latency.

Slots are the capacity (one per check worker). Waiters are served oldest first, with two quotas: CheckStream calls may
hold at most `stream_share` of the slots and of the queue, so one busy stream cannot starve unary callers; offline
callers (`guardrail eval` in process) wait without limit and never count as shed.

The checks of a `CheckGeneration` stream (a sentence, a PII scan of the text so far, the final verdict) are kind
`generation`: the stream itself was admitted when it opened (`streaming.max_streams`), so its checks are never shed —
they wait, up to the stream's deadline, and any free slot serves them — but every unary or CheckStream waiter is
served before them, so streams cannot starve the other callers either. Each stream has at most two checks waiting
(`guardrail_server.generation`), so their queue is bounded by the open streams.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from guardrail_server import metrics

Kind = Literal["unary", "stream", "offline", "generation"]


class Shed(Exception):
    """The call was refused before any check ran; `reason` is a closed label value for the metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False)
class _Waiter:
    kind: Kind
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    since: float = field(default_factory=time.perf_counter)


def _granted(waiter: _Waiter) -> bool:
    f = waiter.future
    return f.done() and not f.cancelled() and f.exception() is None


class Admission:
    def __init__(self, capacity: int, *, max_queue: int, max_wait_s: float, stream_share: float) -> None:
        self.capacity = capacity
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.stream_share = stream_share
        self.in_use: dict[Kind, int] = {"unary": 0, "stream": 0, "offline": 0, "generation": 0}
        self._waiters: deque[_Waiter] = deque()
        self.closed = False

    # -- quotas ---------------------------------------------------------------------------------------------------
    @property
    def stream_slots(self) -> int:
        return max(1, math.floor(self.capacity * self.stream_share))

    @property
    def stream_queue(self) -> int:
        return max(1, math.floor(self.max_queue * self.stream_share))

    def _busy(self) -> int:
        return sum(self.in_use.values())

    def _may_start(self, kind: Kind) -> bool:
        return self._busy() < self.capacity and (kind != "stream" or self.in_use["stream"] < self.stream_slots)

    def queued(self, kind: Kind | None = None) -> int:
        return sum(1 for w in self._waiters if kind is None or w.kind == kind)

    def oldest_wait(self, kind: Kind) -> float:
        """Seconds the longest-waiting call of `kind` has waited so far (0 when none waits)."""
        now = time.perf_counter()
        return max((now - w.since for w in self._waiters if w.kind == kind and not w.future.done()), default=0.0)

    def resize(self, capacity: int) -> None:
        """Live capacity (a worker being replaced does not count); waiters start as soon as it grows."""
        self.capacity = max(0, capacity)
        self._wake()

    # -- acquire / release ----------------------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(self, kind: Kind, budget_s: float | None = None) -> AsyncIterator[float]:
        """Holds a slot for the block; yields the seconds waited. `budget_s` caps the wait below `max_wait_s` (the
        time the caller's deadline leaves before its checks could no longer finish)."""
        waited = await self._acquire(kind, budget_s)
        try:
            yield waited
        finally:
            self.in_use[kind] -= 1
            self._wake()

    async def _acquire(self, kind: Kind, budget_s: float | None) -> float:
        if self.closed:
            raise Shed("shutting_down", "server is shutting down; retry on another instance")
        # waiters are only ever those that cannot start (every release and resize grants what it can), so a call
        # that can start now does not queue behind them: a unary call takes a slot a stream may not
        if self._may_start(kind):
            self.in_use[kind] += 1
            metrics.ADMISSION_WAIT.observe(0.0)
            return 0.0
        if kind in ("unary", "stream"):
            if self.queued("unary") + self.queued("stream") >= self.max_queue:
                raise Shed("queue_full", f"server busy: {self.capacity} checks running and {self.max_queue} "
                                         "waiting; retry with backoff")
            if kind == "stream" and self.queued("stream") >= self.stream_queue:
                raise Shed("queue_full", "server busy: the stream's share of the queue is full; retry")
        if kind == "offline":
            limit = None
        elif kind == "generation":  # the stream was admitted at its start: its checks wait as long as it may run
            limit = budget_s
        else:
            limit = min(self.max_wait_s, budget_s if budget_s is not None else math.inf)
        if limit is not None and limit <= 0:
            raise Shed("deadline", "no check slot free and the call's deadline leaves no time to wait for one")
        waiter = _Waiter(kind)
        self._waiters.append(waiter)
        self._gauge()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=limit)
        except TimeoutError:
            if _granted(waiter):  # granted at the last moment: keep it
                return self._waited(started)
            self._forget(waiter)
            raise Shed("queue_timeout", f"no check slot free within {limit:.2f}s; retry with backoff") from None
        except asyncio.CancelledError:
            if _granted(waiter):
                self.in_use[kind] -= 1
                self._wake()
            else:
                self._forget(waiter)
            raise
        return self._waited(started)

    def _waited(self, started: float) -> float:
        waited = time.perf_counter() - started
        metrics.ADMISSION_WAIT.observe(waited)
        return waited

    def _forget(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        waiter.future.cancel()
        self._gauge()

    def _wake(self) -> None:
        """Grants free slots to waiters, oldest first; a stream waiter over its quota lets later unary ones pass;
        generation checks go after every other waiter."""
        granted = True
        while granted and self._waiters:
            granted = False
            for waiter in sorted(self._waiters, key=lambda w: w.kind == "generation"):  # stable: oldest first
                if waiter.future.done():
                    self._waiters.remove(waiter)
                    continue
                if self._may_start(waiter.kind):
                    self._waiters.remove(waiter)
                    self.in_use[waiter.kind] += 1
                    waiter.future.set_result(None)
                    granted = True
                    break
                if self._busy() >= self.capacity:
                    break
        self._gauge()

    def _gauge(self) -> None:
        for kind in ("unary", "stream", "generation"):
            metrics.ADMISSION_QUEUE_DEPTH.labels(kind).set(self.queued(kind))

    def close(self) -> None:
        """Shutdown: new calls are shed, queued ones too (in-flight ones finish)."""
        self.closed = True
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(Shed("shutting_down", "server is shutting down; retry"))
        self._waiters.clear()
        self._gauge()
