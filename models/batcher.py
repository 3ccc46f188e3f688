"""Dynamic micro-batching: pairs from concurrent callers (online requests, offline cases) share model batches.

One model call per batch amortizes the per-call overhead and keeps the cores busy with larger matrix products.
A batch closes when it holds `max_batch_size` pairs or `max_wait_ms` has passed since its first pair; while one batch
runs (in a worker thread, never on the event loop), the next one fills. Pairs are sorted by length inside a batch,
and long batches are split into similar-length sub-batches, so short pairs are not padded to the longest one.
The queue is bounded: when it is full, `predict` waits (back-pressure) instead of growing memory without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Gauge, Histogram

BATCH_SIZE = Histogram("guardrail_model_batch_size", "Pairs per model batch", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
QUEUE_DEPTH = Gauge("guardrail_model_queue_depth", "Pairs waiting for a model batch", ["model"])
INFERENCE_SECONDS = Histogram("guardrail_model_inference_seconds", "Model time of one batch", ["model"],
                              buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))

PredictFn = Callable[[Sequence[tuple[str, str]]], np.ndarray]


@dataclass(slots=True)
class _Item:
    pair: tuple[str, str]
    future: asyncio.Future


class BatcherClosedError(RuntimeError):
    pass


class DynamicBatcher:
    def __init__(self, fn: PredictFn, *, name: str = "model", max_batch_size: int = 32, max_wait_ms: float = 2.0,
                 max_queue: int = 4096, split_ratio: float = 2.0) -> None:
        if max_batch_size < 1 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be >= 1")
        self.fn = fn
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.split_ratio = split_ratio
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._closed = False
        self.batches = 0
        self.pairs = 0

    def _ensure_started(self) -> asyncio.Queue[_Item]:
        if self._closed:
            raise BatcherClosedError(f"batcher {self.name!r} is closed")
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.max_queue)
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")
        return self._queue

    async def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Scores pairs through shared batches; returns rows in the caller's order."""
        if not pairs:
            return np.zeros((0, 3), dtype=np.float32)
        queue = self._ensure_started()
        loop = asyncio.get_running_loop()
        futures = []
        for pair in pairs:
            fut = loop.create_future()
            await queue.put(_Item((pair[0], pair[1]), fut))
            futures.append(fut)
        QUEUE_DEPTH.labels(self.name).set(queue.qsize())
        rows = await asyncio.gather(*futures)
        return np.stack(rows).astype(np.float32, copy=False)

    async def _collect(self, queue: asyncio.Queue[_Item]) -> list[_Item]:
        first = await queue.get()
        batch = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    def _chunks(self, pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        """Splits length-sorted pairs where the length more than `split_ratio`-folds (keeps chunks >= 4)."""
        chunks: list[list[tuple[str, str]]] = [[]]
        base = 0
        for pair in pairs:
            n = len(pair[0]) + len(pair[1])
            if len(chunks[-1]) >= 4 and n > self.split_ratio * max(base, 1):
                chunks.append([])
            if not chunks[-1]:
                base = n
            chunks[-1].append(pair)
        return chunks

    def _infer(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        started = time.perf_counter()
        out = np.concatenate([self.fn(c) for c in self._chunks(pairs)])
        INFERENCE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return out

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = await self._collect(queue)
            QUEUE_DEPTH.labels(self.name).set(queue.qsize())
            live = [it for it in batch if not it.future.done()]
            if not live:
                continue
            live.sort(key=lambda it: len(it.pair[0]) + len(it.pair[1]))
            BATCH_SIZE.labels(self.name).observe(len(live))
            try:
                probs = await asyncio.to_thread(self._infer, [it.pair for it in live])
            except Exception as e:  # noqa: BLE001 - every waiting caller must get the error, the loop must survive
                for it in live:
                    if not it.future.done():
                        it.future.set_exception(e)
                continue
            self.batches += 1
            self.pairs += len(live)
            for it, row in zip(live, probs, strict=True):
                if not it.future.done():
                    it.future.set_result(row)

    async def close(self) -> None:
        """Stops the worker; pairs still queued fail with BatcherClosedError."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(BatcherClosedError(f"batcher {self.name!r} closed"))
