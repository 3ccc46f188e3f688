"""Samples live traffic for review without ever slowing or failing a Check — and without claiming a sample a
crash could lose.

`offer()` runs on the request path: a few comparisons, a token bucket, one random draw, a raw snapshot of the
case (`records.raw_record`), one `write()` of it to the intake journal (`intake.py`: durable against the death
of the process once `write()` returns; fsynced by the writer every ~100 ms) and a `put_nowait` on a bounded
queue. Only then does it return the sample id that the Check reply carries. If the journal cannot be written
(disk full, read-only volume) the sample is still queued, best effort, but the reply does not claim it.

Everything slow happens in one background writer thread: redaction (in a child process, `redaction.py`), the
database, the spool. When the store is down or slow, redacted samples go to the on-disk spool; while the spool
holds anything, new samples go behind it, so replay keeps the original order. A journal line is released once
its sample is committed to the store or fsynced in the spool. At start-up whatever a killed process left in
the journal is redacted and stored again; inserts are idempotent on the sample id, so nothing is doubled.
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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail_server.config import ReviewConfig
from guardrail_server.review import metrics as m
from guardrail_server.review.intake import IntakeJournal, IntakeLockedError
from guardrail_server.review.keys import hash_key, load_key
from guardrail_server.review.records import (
    Pending,
    RecordOptions,
    Redactor,
    default_redactor,
    new_id,
    raw_record,
    redact_record,
)
from guardrail_server.review.redaction import RedactionWorker, cached, picklable
from guardrail_server.review.spool import Spool, SpoolLockedError
from guardrail_server.review.store import ReviewStore
from guardrail_invariants.types import Case, Outcome, Verdict

log = logging.getLogger(__name__)

BATCH_SIZE = 200
REDACT_BATCH_SIZE = 8
REPLAY_BUDGET = 2000  # records replayed per writer iteration, so replay never starves fresh samples
MAX_BACKOFF_S = 30.0
INTAKE_DIR = "intake"
_DEFER: Any = {"deferred": True}  # marker: past the shutdown deadline, left in the intake journal


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


@dataclass(slots=True)
class _Item:
    """A raw record on its way to the store, and the journal line to release once it is safe."""

    raw: dict[str, Any]
    journal: IntakeJournal | None
    seq: int | None


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
        key = load_key(getattr(config, "key_file", None))
        self.options = RecordOptions(
            hash_key=hash_key(key) if key else None,
            seal_key=key if getattr(config, "encrypt_raw_text", False) else None,
        )
        self._entities = getattr(config, "redact_entities", None)
        if self._entities is not None:
            from guardrail_invariants.pii import REDACT_ENTITIES

            unknown = sorted(set(self._entities) - set(REDACT_ENTITIES))
            if unknown:  # a typo must not silently keep a kind of PII in the store
                raise ValueError(f"review.redact_entities: unknown entity types {unknown}; "
                                 f"known: {sorted(REDACT_ENTITIES)}")
        self._explicit_redactor = redactor
        self._redact: Redactor | None = None
        self._worker: RedactionWorker | None = None
        self._rng = rng
        self._clock = clock
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=config.queue_size)
        self._recovered: deque[_Item] = deque()
        self._adopted: list[IntakeJournal] = []
        self._offer_lock = threading.Lock()
        self._high_water = max(1, config.queue_size // 2)
        self._buckets: dict[str, _Bucket] = {}
        self.store = ReviewStore(config.url, write_timeout_s=config.write_timeout_s)
        self.spool = Spool(config.spool_dir)
        self._key = key
        self.intake = IntakeJournal(Path(config.spool_dir) / INTAKE_DIR, key=key)
        self._healthy = False
        self._backoff = 0.5
        self._next_retry = 0.0
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self.counts = {"offered": 0, "sampled": 0, "dropped": 0, "stored": 0, "spooled": 0, "replayed": 0,
                       "recovered": 0, "unacknowledged": 0, "deferred": 0}

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the redactor, opens the store, recovers what a killed process left in the intake journal and
        replays the spool (store down: keeps spooling and retries)."""
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
                    worker = RedactionWorker(redact, self.options, entities=self._entities)
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
        except OSError as exc:  # e.g. a read-only volume: run on; failed writes stay in the intake journal
            log.error("review: cannot open spool %s (%s)", self.config.spool_dir, type(exc).__name__)
        self._recover()
        m.SPOOL_DEPTH.set(self.spool.depth)
        self._try_store()

    def _recover(self) -> None:
        """Queues (ahead of new samples) what dead processes left in this spool directory's intake journals."""
        journals: list[IntakeJournal] = []
        with self._offer_lock:
            try:
                self.intake.open()
            except IntakeLockedError:
                self._switch_intake()
            except OSError as exc:
                log.error("review: cannot open the intake journal (%s); samples are not acknowledged",
                          type(exc).__name__)
            journals.append(self.intake)
        base = Path(self.config.spool_dir)
        for d in sorted(base.glob(f"{INTAKE_DIR}*")) if base.is_dir() else []:
            if not d.is_dir() or d == self.intake.dir or d == base / INTAKE_DIR:
                continue
            orphan = IntakeJournal(d, key=self._key)
            try:
                orphan.open()  # its owner is gone if we get the lock
            except OSError:
                continue
            journals.append(orphan)
            self._adopted.append(orphan)
        for journal in journals:
            try:
                leftovers = journal.take_leftovers()
            except OSError as exc:
                log.error("review: cannot read intake journal %s (%s)", journal.dir, type(exc).__name__)
                continue
            n = 0
            for seq, records in leftovers:
                for raw in records:
                    self._recovered.append(_Item(raw, journal, seq))
                    n += 1
            if n:
                self.counts["recovered"] += n
                m.RECOVERED.inc(n)
                log.warning("review: recovered %d samples a stopped or killed process left in %s", n, journal.dir)
            if journal.unreadable:
                m.WRITE_ERRORS.labels("intake").inc(journal.unreadable)
        m.INTAKE_DEPTH.set(self.intake.depth)

    def _switch_intake(self) -> None:
        fallback = Path(self.config.spool_dir) / f"{INTAKE_DIR}-{socket.gethostname()}-{os.getpid()}"
        log.error("review: intake journal %s is used by another process; journaling to %s", self.intake.dir, fallback)
        self.intake = IntakeJournal(fallback, key=self._key)
        self.intake.open()

    def _in_thread_redactor(self) -> Redactor:
        if self._redact is None:
            self._redact = cached(self._explicit_redactor or default_redactor(self._entities))
        return self._redact

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Drains the queue into the store or the spool, then closes both. What cannot be redacted and written
        within `timeout_s` stays in the intake journal for the next start (unredacted text never reaches the
        store or the spool)."""
        if self._thread is None:
            return
        self._deadline = time.monotonic() + timeout_s * 0.8
        self._stop.set()
        await asyncio.to_thread(self._thread.join, timeout_s)
        if self._thread.is_alive():
            log.error("review writer did not finish within %.1fs", timeout_s)
        self._thread = None

    # -- hot path -----------------------------------------------------------------------------------------

    def offer(
        self, case: Case, verdicts: Sequence[Verdict], decision: str, *, disagreements: Sequence[str] = ()
    ) -> str | None:
        """Returns the new sample id if the case is sampled and journaled (so it survives a crash), else None.
        Never raises; never waits for the store, redaction or an fsync."""
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
            raw = raw_record(Pending(sample_id, time.time(), case, tuple(verdicts), decision, tuple(reasons),
                                     tuple(disagreements)))
            with self._offer_lock:
                if self._queue.full():
                    m.DROPS.labels("queue_full").inc()
                    self.counts["dropped"] += 1
                    return None
                journal, seq = self.intake, None
                try:
                    try:
                        seq = journal.append(raw)
                    except IntakeLockedError:
                        self._switch_intake()
                        journal = self.intake
                        seq = journal.append(raw)
                except OSError as exc:
                    m.WRITE_ERRORS.labels("intake").inc()
                    log.error("review: intake journal write failed (%s); sample kept in memory only and not "
                              "acknowledged", type(exc).__name__)
                self._queue.put_nowait(_Item(raw, journal, seq))
            m.SAMPLES.labels(reasons[0]).inc()
            self.counts["sampled"] += 1
            if seq is None:
                self.counts["unacknowledged"] += 1
                return None
            return sample_id
        except Exception:  # noqa: BLE001 - sampling must never fail a Check
            log.exception("review: offer failed")
            return None

    # -- writer thread ------------------------------------------------------------------------------------

    def _try_store(self) -> bool:
        """Opens the store if needed and replays part of the spool; returns whether the store is healthy."""
        try:
            if not self.store.is_open:
                self.store.open()
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

    def _take(self, timeout: float, limit: int = BATCH_SIZE) -> list[_Item]:
        batch: list[_Item] = []
        while self._recovered and len(batch) < limit:
            batch.append(self._recovered.popleft())
        if batch:
            return batch
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

    def _records(self, batch: list[_Item]) -> list[dict[str, Any] | None]:
        raws = [it.raw for it in batch]
        if self._worker is not None:
            try:
                return self._worker.records(raws)
            except Exception as exc:  # noqa: BLE001 - e.g. the worker cannot restart: redact this batch here
                log.warning("review: redaction worker failed (%s); redacting in-process", type(exc).__name__)
        redact = None if self.config.store_raw_text else self._in_thread_redactor()
        out: list[dict[str, Any] | None] = []
        for raw in raws:
            if self._stop.is_set() and time.monotonic() > self._deadline:
                out.append(_DEFER)  # stays in the intake journal for the next start
                continue
            try:
                out.append(redact_record(raw, redact, self.options))
            except Exception as exc:  # noqa: BLE001 - one bad case must not sink the batch
                log.error("review: could not serialise a sample (%s)", type(exc).__name__)
                out.append(None)
        return out

    def _write(self, batch: list[_Item], records: list[dict[str, Any] | None]) -> None:
        deferred = [it for it, r in zip(batch, records, strict=True) if r is _DEFER]
        if deferred:
            self._defer(deferred)
        good = [(it, r) for it, r in zip(batch, records, strict=True) if r is not None and r is not _DEFER]
        for it, r in zip(batch, records, strict=True):
            if r is None:
                m.DROPS.labels("redaction_error").inc()
                self.counts["dropped"] += 1
                self._release(it)
        if not good:
            return
        recs = [r for _, r in good]
        # a backlog (or one left at shutdown) goes to the spool: an fsynced append beats a database round trip
        backlog = self._queue.qsize() >= (BATCH_SIZE if self._stop.is_set() else self._high_water)
        if self._healthy and not self.spool.depth and not backlog:
            try:
                self.store.insert_samples(recs)
                m.STORED.labels("direct").inc(len(recs))
                self._release(*(it for it, _ in good))
                self.counts["stored"] += len(recs)
                return
            except Exception as exc:  # noqa: BLE001
                m.WRITE_ERRORS.labels("store").inc()
                log.warning("review store write failed (%s); spooling %d samples", type(exc).__name__, len(recs))
                self._healthy = False
                self._next_retry = time.monotonic() + self._backoff
        try:
            self.spool.append(recs)
            m.SPOOL_DEPTH.set(self.spool.depth)
            self._release(*(it for it, _ in good))
            self.counts["spooled"] += len(recs)
        except Exception as exc:  # noqa: BLE001 - the samples stay in the intake journal for the next start
            m.WRITE_ERRORS.labels("spool").inc()
            kept = [it for it, _ in good if it.seq is not None]
            lost = len(good) - len(kept)
            self.counts["deferred"] += len(kept)
            if lost:
                m.DROPS.labels("spool_error").inc(lost)
                self.counts["dropped"] += lost
            log.error("review: spool append failed (%s); %d samples stay in the intake journal, %d lost",
                      type(exc).__name__, len(kept), lost)
        m.SPOOL_DEPTH.set(self.spool.depth)

    def _release(self, *items: _Item) -> None:
        for it in items:
            if it.journal is not None and it.seq is not None:
                try:
                    it.journal.done(it.seq)
                except OSError as exc:
                    log.warning("review: could not release an intake segment (%s)", type(exc).__name__)

    def _leave_remaining(self) -> None:
        """Shutdown deadline passed: journaled samples stay for the next start; the rest are dropped."""
        items = list(self._recovered)
        self._recovered.clear()
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._defer(items)

    def _defer(self, items: Sequence[_Item]) -> None:
        left = sum(1 for it in items if it.seq is not None)
        lost = len(items) - left
        self.counts["deferred"] += left
        if left:
            log.warning("review: shutdown deadline passed; %d samples stay in the intake journal for the next start",
                        left)
        if lost:
            m.DROPS.labels("shutdown").inc(lost)
            self.counts["dropped"] += lost
            log.error("review: shutdown deadline passed; %d samples that were never journaled are dropped", lost)

    def _sync_intake(self) -> None:
        try:
            self.intake.sync()
        except OSError as exc:
            m.WRITE_ERRORS.labels("intake").inc()
            log.error("review: intake journal fsync failed (%s)", type(exc).__name__)

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping and time.monotonic() > self._deadline:
                    self._leave_remaining()
                    break
                self._sync_intake()  # group commit: what offer() wrote since the last round
                # redaction takes ~10-100 ms a sample: small batches keep the stop deadline and the store fresh
                limit = BATCH_SIZE if self.config.store_raw_text else REDACT_BATCH_SIZE
                batch = self._take(timeout=0.0 if stopping else 0.1, limit=limit)
                m.QUEUE_DEPTH.set(self._queue.qsize())
                if batch:
                    self._write(batch, self._records(batch))
                    m.INTAKE_DEPTH.set(self.intake.depth)
                elif stopping:
                    break
                idle = self._queue.qsize() < self._high_water
                if idle and (self.spool.depth or not self._healthy) and time.monotonic() >= self._next_retry:
                    self._try_store()
                for journal in [j for j in self._adopted if j.remove_if_empty()]:
                    self._adopted.remove(journal)
            if self.spool.depth and time.monotonic() < self._deadline:
                self._try_store()
        except Exception:  # noqa: BLE001 - the writer must not die silently
            log.exception("review writer crashed")
        finally:
            m.QUEUE_DEPTH.set(self._queue.qsize())
            m.INTAKE_DEPTH.set(self.intake.depth)
            self.intake.close()
            for journal in self._adopted:
                journal.close()
            self._adopted.clear()
            self.spool.close()
            self.store.close()
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
