"""Samples live traffic for review without ever slowing or failing a Check.

`offer()` runs on the request path: a few comparisons, a token bucket, one random draw, a uuid and a
`put_nowait` on a bounded queue. Everything slow (redaction, the database, fsync) happens in one background
writer thread. When the store is down or slow the writer appends to the on-disk spool; while the spool holds
anything, new samples go behind it, so replay keeps the original order. Inserts are idempotent on sample id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from guardrail_server.config import ReviewConfig
from guardrail_server.review import metrics as m
from guardrail_server.review.records import Pending, Redactor, default_redactor, new_id, to_record
from guardrail_server.review.redaction import RedactionWorker, cached, picklable
from guardrail_server.review.spool import Spool, SpoolLockedError
from guardrail_server.review.store import ReviewStore
from invariants.types import Case, Outcome, Verdict

log = logging.getLogger(__name__)

BATCH_SIZE = 200
REDACT_BATCH_SIZE = 8
REPLAY_BUDGET = 2000  # records replayed per writer iteration, so replay never starves fresh samples
MAX_BACKOFF_S = 30.0


class _Bucket:
    """Token bucket: `rate` tokens per minute, burst of one minute's worth."""

    __slots__ = ("capacity", "per_s", "tokens", "stamp")

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = max(per_minute, 1.0) if per_minute > 0 else 0.0
        self.per_s = per_minute / 60.0
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        if self.capacity <= 0:
            return False
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_s)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ReviewSampler:
    """Decides what to sample and moves samples to the review store (or spool) in the background."""

    def __init__(
        self,
        config: ReviewConfig,
        *,
        redactor: Callable[[str], str] | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._explicit_redactor = redactor
        self._redact: Redactor | None = None
        self._worker: RedactionWorker | None = None
        self._rng = rng
        self._clock = clock
        self._queue: queue.Queue[Pending] = queue.Queue(maxsize=config.queue_size)
        self._high_water = max(1, config.queue_size // 2)
        self._buckets: dict[str, _Bucket] = {}
        self.store = ReviewStore(config.url, write_timeout_s=config.write_timeout_s)
        self.spool = Spool(config.spool_dir)
        self._store_open = False
        self._healthy = False
        self._backoff = 0.5
        self._next_retry = 0.0
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self.counts = {"offered": 0, "sampled": 0, "dropped": 0, "stored": 0, "spooled": 0, "replayed": 0}

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the redactor, opens the store and replays the spool (store down: keeps spooling and retries)."""
        if not self.config.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._deadline = float("inf")
        await asyncio.to_thread(self._prepare)
        self._thread = threading.Thread(target=self._run, name="review-writer", daemon=True)
        self._thread.start()

    def _prepare(self) -> None:
        if not self.config.store_raw_text:
            redact = self._explicit_redactor
            if picklable(redact):
                try:
                    worker = RedactionWorker(redact)
                    worker.start()
                    self._worker = worker
                except Exception as exc:  # noqa: BLE001 - fall back to redacting in the writer thread
                    log.warning("review: redaction worker unavailable (%s); redacting in-process", type(exc).__name__)
            if self._worker is None:
                try:
                    self._in_thread_redactor()("warm up the redactor: Jane Doe, jane@example.com")
                except Exception as exc:  # noqa: BLE001 - records.py withholds text the redactor fails on
                    log.error("review: redactor failed to warm up (%s)", type(exc).__name__)
        try:
            self.spool.open()
        except SpoolLockedError:
            fallback = Path(self.config.spool_dir) / f"{socket.gethostname()}-{os.getpid()}"
            log.error("review: spool %s is used by another process; spooling to %s", self.config.spool_dir, fallback)
            self.spool = Spool(fallback).open()
        except OSError as exc:  # e.g. a read-only volume: run on, every store failure becomes a counted drop
            log.error("review: cannot open spool %s (%s); samples are lost while the store is down",
                      self.config.spool_dir, type(exc).__name__)
        m.SPOOL_DEPTH.set(self.spool.depth)
        self._try_store()

    def _in_thread_redactor(self) -> Redactor:
        if self._redact is None:
            self._redact = cached(self._explicit_redactor or default_redactor())
        return self._redact

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Drains the queue into the store or the spool, then closes both. What cannot be redacted and written
        within `timeout_s` is dropped (and counted): unredacted text never goes to disk."""
        if self._thread is None:
            return
        self._deadline = time.monotonic() + timeout_s * 0.8
        self._stop.set()
        await asyncio.to_thread(self._thread.join, timeout_s)
        if self._thread.is_alive():
            log.error("review writer did not finish within %.1fs; %d samples lost", timeout_s, self._queue.qsize())
        self._thread = None

    # -- hot path -----------------------------------------------------------------------------------------

    def offer(
        self, case: Case, verdicts: Sequence[Verdict], decision: str, *, disagreements: Sequence[str] = ()
    ) -> str | None:
        """Returns the new sample id if the case is sampled (and queued), else None. Never raises or blocks."""
        try:
            if not self.config.enabled:
                return None
            self.counts["offered"] += 1
            reasons: list[str] = []
            if disagreements:
                reasons.append("disagreement")
            failing = [v.invariant for v in verdicts if v.outcome is Outcome.FAIL]
            if failing:
                now = self._clock()
                took = False
                for name in failing:
                    bucket = self._buckets.get(name)
                    if bucket is None:
                        bucket = self._buckets[name] = _Bucket(self.config.failure_rate_limit_per_minute, now)
                    took = bucket.take(now) or took
                if took or reasons:
                    reasons.append("failure")
            if self.config.random_rate > 0 and self._rng() < self.config.random_rate:
                reasons.append("random")
            if not reasons:
                return None
            sample_id = new_id()
            item = Pending(sample_id, time.time(), case, tuple(verdicts), decision, tuple(reasons), tuple(disagreements))
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                m.DROPS.labels("queue_full").inc()
                self.counts["dropped"] += 1
                return None
            m.SAMPLES.labels(reasons[0]).inc()
            self.counts["sampled"] += 1
            return sample_id
        except Exception:  # noqa: BLE001 - sampling must never fail a Check
            log.exception("review: offer failed")
            return None

    # -- writer thread ------------------------------------------------------------------------------------

    def _try_store(self) -> bool:
        """Opens the store if needed and replays part of the spool; returns whether the store is healthy."""
        try:
            if not self._store_open:
                self.store.open()
                self._store_open = True
            if self.spool.depth:
                n = self.spool.replay(self._insert_replayed, budget=REPLAY_BUDGET)
                if n:
                    log.info("review: replayed %d spooled samples", n)
            self._healthy = True
            self._backoff = 0.5
        except Exception as exc:  # noqa: BLE001 - any store failure means: spool and retry later
            m.WRITE_ERRORS.labels("store").inc()
            log.warning("review store unavailable (%s); spooling", type(exc).__name__)
            self._healthy = False
            self._next_retry = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        m.SPOOL_DEPTH.set(self.spool.depth)
        return self._healthy

    def _insert_replayed(self, records: list[dict]) -> None:
        self.store.insert_samples(records)
        self.counts["replayed"] += len(records)
        m.STORED.labels("replay").inc(len(records))

    def _take(self, timeout: float, limit: int = BATCH_SIZE) -> list[Pending]:
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _records(self, batch: list[Pending]) -> list[dict]:
        if self._worker is not None:
            try:
                return self._worker.records(batch)
            except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable detail: redact this batch here
                log.warning("review: redaction worker failed (%s); redacting in-process", type(exc).__name__)
        redact = None if self.config.store_raw_text else self._in_thread_redactor()
        out = []
        for i, p in enumerate(batch):
            if self._stop.is_set() and time.monotonic() > self._deadline:
                m.DROPS.labels("shutdown").inc(len(batch) - i)
                self.counts["dropped"] += len(batch) - i
                log.error("review: shutdown deadline passed; %d samples dropped", len(batch) - i)
                break
            try:
                out.append(to_record(p, redact))
            except Exception:  # noqa: BLE001 - one bad case must not sink the batch
                log.exception("review: could not serialise sample %s", p.id)
                m.DROPS.labels("spool_error").inc()
        return out

    def _write(self, records: list[dict]) -> None:
        # a backlog (or one left at shutdown) goes to the spool: an fsynced append beats a database round trip
        backlog = self._queue.qsize() >= (BATCH_SIZE if self._stop.is_set() else self._high_water)
        if self._healthy and not self.spool.depth and not backlog:
            try:
                self.store.insert_samples(records)
                self.counts["stored"] += len(records)
                m.STORED.labels("direct").inc(len(records))
                return
            except Exception as exc:  # noqa: BLE001
                m.WRITE_ERRORS.labels("store").inc()
                log.warning("review store write failed (%s); spooling %d samples", type(exc).__name__, len(records))
                self._healthy = False
                self._next_retry = time.monotonic() + self._backoff
        try:
            self.spool.append(records)
            self.counts["spooled"] += len(records)
        except Exception:  # noqa: BLE001
            m.WRITE_ERRORS.labels("spool").inc()
            m.DROPS.labels("spool_error").inc(len(records))
            self.counts["dropped"] += len(records)
            log.exception("review: spool append failed; %d samples lost", len(records))
        m.SPOOL_DEPTH.set(self.spool.depth)

    def _drop_remaining(self) -> None:
        lost = 0
        while True:
            try:
                self._queue.get_nowait()
                lost += 1
            except queue.Empty:
                break
        if lost:
            m.DROPS.labels("shutdown").inc(lost)
            self.counts["dropped"] += lost
            log.error("review: shutdown deadline passed; %d queued samples dropped", lost)

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping and time.monotonic() > self._deadline:
                    self._drop_remaining()
                    break
                # redaction takes ~10-100 ms a sample: small batches keep the stop deadline and the store fresh
                limit = BATCH_SIZE if self.config.store_raw_text else REDACT_BATCH_SIZE
                batch = self._take(timeout=0.0 if stopping else 0.1, limit=limit)
                m.QUEUE_DEPTH.set(self._queue.qsize())
                if batch:
                    self._write(self._records(batch))
                elif stopping:
                    break
                idle = self._queue.qsize() < self._high_water
                if idle and (self.spool.depth or not self._healthy) and time.monotonic() >= self._next_retry:
                    self._try_store()
            if self.spool.depth and time.monotonic() < self._deadline:
                self._try_store()
        except Exception:  # noqa: BLE001 - the writer must not die silently
            log.exception("review writer crashed")
        finally:
            m.QUEUE_DEPTH.set(self._queue.qsize())
            self.spool.close()
            self.store.close()
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
            self._store_open = False
