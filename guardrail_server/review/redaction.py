"""Redaction off the server's interpreter: Presidio + spaCy cost tens of milliseconds per text and hold the
GIL while they run, so redacting in a thread of the server process would delay the event loop (and so every
Check's p99). A one-process pool (spawn, so it is safe next to gRPC) turns pending samples into redacted
records; the writer thread just waits on the future, without the GIL.

Identical texts (retrieved passages repeat a lot) are redacted once: an LRU cache in the worker.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from guardrail_server.review.records import Pending, Redactor, to_record

log = logging.getLogger(__name__)

CACHE_SIZE = 2048
CACHE_MAX_CHARS = 8000
TIMEOUT_S = 120.0

_redact: Redactor | None = None


def cached(redact: Redactor) -> Redactor:
    """Memoises short texts; long ones are rare and would make the cache a memory hog."""
    memo = functools.lru_cache(maxsize=CACHE_SIZE)(redact)

    def run(text: str) -> str:
        return memo(text) if len(text) <= CACHE_MAX_CHARS else redact(text)

    return run


def picklable(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - lambdas, closures, bound methods of odd objects
        return False
    return True


def _init(redact: Redactor | None) -> None:
    """Runs in the worker process. Lowest CPU priority: redaction is background work and must yield the cores to
    the server's checks (on a 2-core sidecar it otherwise shows up in Check p99 under load)."""
    global _redact
    os.nice(19)
    if redact is None:
        from guardrail_server.review.records import default_redactor

        redact = default_redactor()
    redact("warm up the redactor: Jane Doe, jane@example.com")
    _redact = cached(redact)


def _records(batch: Sequence[Pending]) -> list[dict[str, Any]]:
    return [to_record(p, _redact) for p in batch]


class RedactionWorker:
    """One worker process that redacts batches of pending samples into records."""

    def __init__(self, redact: Redactor | None) -> None:
        self._redact = redact
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_init, initargs=(self._redact,)
        )
        self._pool.submit(_records, []).result(timeout=TIMEOUT_S)  # load and warm before the first sample

    def records(self, batch: Sequence[Pending]) -> list[dict[str, Any]]:
        if self._pool is None:
            raise RuntimeError("redaction worker not started")
        try:
            return self._pool.submit(_records, list(batch)).result(timeout=TIMEOUT_S)
        except BrokenProcessPool:
            log.error("review: redaction worker died; restarting it")
            self.start()
            return self._pool.submit(_records, list(batch)).result(timeout=TIMEOUT_S)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
