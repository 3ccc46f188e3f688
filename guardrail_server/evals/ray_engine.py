"""`--engine ray`: the same runner on Ray Data, for datasets that outgrow one machine.

Cases stream through `map_batches` into a pool of `EngineWorker` actors; each actor builds one `CheckEngine`
(models load once per worker) and runs its batch concurrently on its own event loop, so the model batcher fills
batches exactly as in-process. Results come back to the driver, which writes them like any other backend.
Without an address a local Ray starts on this machine; with one, the job joins that cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from guardrail_server.config import Config
from guardrail_server.convert import case_from_dict
from guardrail_server.evals.backends import Work, input_error
from guardrail_server.evals.results import CaseResult
from guardrail_invariants.types import Case, Finding, Outcome, Verdict


def case_to_dict(case: Case) -> dict[str, Any]:
    return {"response": case.response, "question": case.question, "request_id": case.request_id, "app": case.app,
            "context": [{"id": p.id, "text": p.text, "title": p.title, "url": p.url} for p in case.context],
            "samples": list(case.samples), "metadata": dict(case.metadata)}


def verdict_to_dict(v: Verdict) -> dict[str, Any]:
    return {"invariant": v.invariant, "outcome": v.outcome.value, "score": v.score, "threshold": v.threshold,
            "latency_s": v.latency_s, "judge": v.judge, "error": v.error,
            "findings": [{"kind": f.kind, "message": f.message, "start": f.start, "end": f.end,
                          "passage_id": f.passage_id, "score": f.score} for f in v.findings]}


def verdict_from_dict(d: dict[str, Any]) -> Verdict:
    return Verdict(invariant=d["invariant"], outcome=Outcome(d["outcome"]), score=d["score"], threshold=d["threshold"],
                   findings=tuple(Finding(**f) for f in d["findings"]), latency_s=d["latency_s"], judge=d["judge"],
                   error=d["error"])


class EngineWorker:
    """A Ray Data actor: one engine per worker process, loaded in __init__, reused for every batch."""

    def __init__(self, config: dict[str, Any], concurrency: int) -> None:
        from guardrail_server.engine import CheckEngine

        self.loop = asyncio.new_event_loop()
        self.engine = CheckEngine(Config.model_validate(config))
        self.loop.run_until_complete(self.engine.load())
        self.concurrency = concurrency

    async def _one(self, case_json: str, names_json: str, slots: asyncio.Semaphore) -> str:
        from guardrail_server.validation import InputError

        async with slots:
            try:
                result = await self.engine.check(case_from_dict(json.loads(case_json)), json.loads(names_json),
                                                 sample=False)
            except InputError as err:
                return json.dumps({"error": input_error(err.code, str(err))})
        return json.dumps({"decision": result.decision.value, "verdicts": [verdict_to_dict(v) for v in result.verdicts]})

    async def _batch(self, cases: list[str], names: list[str]) -> list[str]:
        slots = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._one(c, n, slots) for c, n in zip(cases, names, strict=True))))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.loop.run_until_complete(self._batch([str(c) for c in batch["case"]],
                                                       [str(n) for n in batch["names"]]))
        return {"id": batch["id"], "result": np.array(out, dtype=object)}


class RayBackend:
    name = "ray"

    def __init__(self, config: Config, *, address: str | None = None, workers: int = 1, concurrency: int = 16,
                 batch_size: int = 64, num_cpus: int | None = None, cpus_per_worker: float = 1.0) -> None:
        self.config = config
        self.address = address
        self.workers = workers
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.num_cpus = num_cpus
        self.cpus_per_worker = cpus_per_worker
        self._started_ray = False

    async def start(self) -> dict[str, float]:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING, "configure_logging": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.num_cpus:
                kwargs["num_cpus"] = self.num_cpus
            await asyncio.to_thread(ray.init, **kwargs)
            self._started_ray = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
        return {name: self.config.threshold(name) for name in self.config.enabled_invariants()}

    async def run(self, work: Work) -> AsyncIterator[CaseResult]:
        import ray

        if not work:
            return
        for handler in logging.getLogger("ray.data").handlers:  # keep Ray Data's INFO lines in its log file only
            if type(handler).__name__ != "SessionFileHandler":
                handler.setLevel(logging.WARNING)
        by_id = {item.id: item for item, _ in work}
        ds = ray.data.from_items(
            [{"id": item.id, "case": json.dumps(case_to_dict(item.case)), "names": json.dumps(list(names))}
             for item, names in work],
            override_num_blocks=max(1, min(len(work) // self.batch_size + 1, 64 * self.workers)),
        )
        ds = ds.map_batches(
            EngineWorker,
            fn_constructor_kwargs={"config": self.config.model_dump(mode="json"), "concurrency": self.concurrency},
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus_per_worker,  # Ray sizes the worker's thread pools (OMP/onnxruntime) from this
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue(maxsize=4 * self.batch_size)
        stop = threading.Event()

        def pump() -> None:
            try:
                for row in ds.iter_rows():
                    if stop.is_set():
                        return
                    asyncio.run_coroutine_threadsafe(queue.put(row), loop).result()
            except BaseException as exc:  # surfaced on the event loop, not lost in the thread
                if not stop.is_set():
                    asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
                return
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        thread = threading.Thread(target=pump, name="ray-results", daemon=True)
        thread.start()
        try:
            while (row := await queue.get()) is not None:
                if isinstance(row, BaseException):
                    raise row
                data = json.loads(row["result"])
                item = by_id[str(row["id"])]
                if "error" in data:
                    yield CaseResult(item, error=data["error"])
                else:
                    yield CaseResult(item, tuple(verdict_from_dict(v) for v in data["verdicts"]), data["decision"])
        finally:
            stop.set()
            while not queue.empty():
                queue.get_nowait()

    async def close(self) -> None:
        if self._started_ray:
            import ray

            await asyncio.to_thread(ray.shutdown)
            self._started_ray = False
