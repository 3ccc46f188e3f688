"""Where invariants run: in check worker processes that a deadline can really stop (default), or in this process.

Why processes: the checks spend their time in C code that holds the GIL — spaCy's tokenizer (quadratic on a 31 KB run
of backticks), Presidio's and our regexes, pysbd. In a thread, one such call freezes the event loop: health checks,
every other call and SIGTERM wait, and `asyncio.wait_for` cannot fire. In a worker process the server's loop stays
free, and a check past its deadline is ended the only way that always works: the worker is killed (its verdict
becomes an `error` with reason `timeout`, decided by the invariant's on_error policy and counted in
`guardrail_fail_open_total`) and a fresh worker is started in its place.

Each worker loads every enabled invariant once (models, spaCy) and runs one case at a time — the unit of capacity
that admission control (`guardrail_server.admission`) hands out. Verdicts stream back as each invariant finishes, so
the ones done before an invariant hangs are kept; a stuck worker is killed as soon as the first overdue verdict is
`kill_grace_s` late (its loop can finish nothing more), and the verdicts still missing become `error`. Workers die with the server, even on SIGKILL (`childproc`).
Model metrics recorded inside workers (`guardrail_model_*`) are shipped back with each reply and exposed by the
server's own /metrics.

`InlineRunner` keeps the old in-process path (threads): for tests, notebooks and Ray actors, which are already a
process of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from guardrail_server.admission import Admission
from guardrail_server.childproc import protocol_streams, read_frame, start_child, watch_parent, write_frame
from guardrail_server.config import Config, zoo_settings
from guardrail_server.logs import get_logger
from guardrail_invariants.registry import REGISTRY, build_invariant
from guardrail_invariants.runner import ScheduledInvariant, error_verdict, run_checks, timeout_verdict
from guardrail_invariants.types import Case, Verdict

log = get_logger("guardrail.workers")

MODEL_METRIC_PREFIX = "guardrail_model_"


@dataclass(frozen=True, slots=True)
class InvariantInfo:
    """What the server process knows of an invariant that lives in the workers."""

    name: str
    threshold: float
    judge: str


class CheckRunner(Protocol):
    infos: dict[str, InvariantInfo]

    async def start(self) -> None: ...

    async def run(self, case: Case, names: Sequence[str], timeouts: dict[str, float],
                  deadline_s: float | None, *, prefer: int | None = None) -> list[Verdict]: ...

    async def close(self, timeout_s: float = 5.0) -> None: ...


# ------------------------------------------------------------------------------------------------ in this process


class InlineRunner:
    """The invariants in this process, their CPU work in threads (no hard deadline: see the module doc)."""

    def __init__(self, config: Config, zoo: Any) -> None:
        self.config = config
        self.zoo = zoo
        self.invariants: dict[str, Any] = {}
        self.infos: dict[str, InvariantInfo] = {}

    async def start(self) -> None:
        for name in self.config.enabled_invariants():
            self.invariants[name] = build_invariant(name, self.config.threshold(name), self.config.options(name),
                                                    self.zoo)
        await asyncio.gather(*(inv.load() for inv in self.invariants.values()))
        self.infos = {n: InvariantInfo(n, inv.threshold, getattr(inv, "judge", "")) for n, inv in
                      self.invariants.items()}

    async def run(self, case: Case, names: Sequence[str], timeouts: dict[str, float],
                  deadline_s: float | None, *, prefer: int | None = None) -> list[Verdict]:
        return await run_checks([ScheduledInvariant(self.invariants[n], timeouts[n]) for n in names], case, deadline_s)

    async def close(self, timeout_s: float = 5.0) -> None:
        await self.zoo.close()


# ------------------------------------------------------------------------------------------------ worker process


def worker_main(parent_pid: int) -> None:
    """Entry point of a check worker: `python -m guardrail_server.workers <server pid>` (see `childproc`)."""
    watch_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the server decides
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    requests, replies = protocol_streams()
    try:
        asyncio.run(_serve(requests, replies))
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the server went away


async def _serve(requests: Any, replies: Any) -> None:
    from dataclasses import replace

    from guardrail_models.zoo import ModelZoo

    loop = asyncio.get_running_loop()
    config_json, registry, intra_op_threads = await loop.run_in_executor(None, read_frame, requests)
    REGISTRY.update(registry)
    config = Config.model_validate_json(config_json)
    os.nice(config.workers.nice)
    try:
        zoo = ModelZoo(replace(zoo_settings(config), intra_op_threads=intra_op_threads))
        runner = InlineRunner(config, zoo)
        await runner.start()
    except Exception as exc:  # reported to the server, which refuses to start with this message
        write_frame(replies, ("failed", f"{type(exc).__name__}: {exc}"[:2000]))
        return
    write_frame(replies, ("ready", runner.infos, _model_metrics()))
    while True:  # until the server kills this worker or closes its stdin (EOFError)
        _, job, case, names, timeouts, deadline_s = await loop.run_in_executor(None, read_frame, requests)
        await _run_job(replies, runner, job, case, names, timeouts, deadline_s)


async def _run_job(replies: Any, runner: InlineRunner, job: int, case: Case, names: Sequence[str],
                   timeouts: dict[str, float], deadline_s: float | None) -> None:
    """Sends each verdict as soon as its invariant finishes, then `done` with this worker's model metrics."""

    async def one(name: str) -> None:
        (verdict,) = await runner.run(case, [name], timeouts, deadline_s)
        write_frame(replies, ("verdict", job, verdict))

    await asyncio.gather(*(one(n) for n in names))
    write_frame(replies, ("done", job, _model_metrics()))


def _model_metrics() -> list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]:
    """This process's `guardrail_model_*` families: (name, type, documentation, samples)."""
    from prometheus_client import REGISTRY as PROM

    return [(f.name, f.type, f.documentation, [(s.name, dict(s.labels), s.value) for s in f.samples])
            for f in PROM.collect() if f.name.startswith(MODEL_METRIC_PREFIX)]


# ------------------------------------------------------------------------------------------------ the pool


class _Worker:
    """One worker process and the thread that reads its replies into the event loop."""

    def __init__(self, slot: int, process: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.slot = slot
        self.process = process
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._loop = loop
        # a daemon thread: blocked on a pipe it must never keep the server from exiting
        self.reader = threading.Thread(target=self._read, name=f"check-worker-{slot}-reader", daemon=True)
        self.reader.start()
        self.jobs = 0

    def _read(self) -> None:
        while True:
            try:
                msg = read_frame(self.process.stdout)
            except (EOFError, OSError, ValueError):
                msg = ("eof",)
            except Exception as exc:  # an unreadable reply: the worker is no longer trusted
                msg = ("eof", f"{type(exc).__name__}")
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
                self._loop.call_soon_threadsafe(self.inbox.put_nowait, msg)
            if msg[0] == "eof":
                return

    def send(self, obj: Any) -> None:
        write_frame(self.process.stdin, obj)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.stdin.close()


class ProcessRunner:
    """`count` check workers; a job goes to an idle one (admission guarantees there is one)."""

    def __init__(self, config: Config, admission: Admission) -> None:
        self.config = config
        self.admission = admission
        self.count = config.workers.count
        self.infos: dict[str, InvariantInfo] = {}
        self._idle: list[_Worker] = []
        self._all: dict[int, _Worker] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="check-worker-start")
        self._metrics = WorkerMetrics()
        self._replacing: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._draining = 0
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._closing = False
        self._job = 0
        self.restarts = 0

    @property
    def live(self) -> int:
        return len(self._all)

    @property
    def capacity(self) -> int:
        """Workers that can take a case now: live ones not still busy with a case whose caller gave up."""
        return self.live - self._draining

    async def start(self) -> None:
        self._metrics.install()
        self.admission.resize(0)
        results = await asyncio.gather(*(self._spawn(slot) for slot in range(self.count)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.close(1.0)
            raise RuntimeError(f"check worker failed to start: {failures[0]}") from failures[0]
        log.info("check_workers_ready", workers=self.count, invariants=sorted(self.infos))

    async def _spawn(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        process = await loop.run_in_executor(self._executor, start_child, "guardrail_server.workers")
        self._procs.add(process)
        worker = _Worker(slot, process, loop)
        try:
            worker.send((self.config.model_dump_json(), dict(REGISTRY), self.config.workers.intra_op_threads))
            msg = await worker.inbox.get()
        except BaseException:  # cancelled (shutdown) or the pipe broke: never leave a half-started worker behind
            self._discard(worker)
            raise
        if msg[0] != "ready" or self._closing:
            self._discard(worker)
            reason = msg[1] if msg[0] == "failed" and len(msg) > 1 else "exited while loading"
            raise RuntimeError(reason)
        _, infos, snapshot = msg
        self.infos = infos
        self._metrics.update(slot, snapshot)
        self._all[slot] = worker
        self._idle.append(worker)
        self.admission.resize(self.capacity)

    async def run(self, case: Case, names: Sequence[str], timeouts: dict[str, float],
                  deadline_s: float | None, *, prefer: int | None = None) -> list[Verdict]:
        """`prefer`: run on worker `prefer % count` when it is idle (its model cache holds what the caller's earlier
        checks scored: a CheckGeneration's sentences, then its final verdict), else on any idle worker."""
        started = time.perf_counter()
        if not self._idle:  # admission is sized to live workers; only a race with a dying worker lands here
            return [self._lost_verdict(n, "worker_lost", 0.0, started, len(case.response)) for n in names]
        worker = next((w for w in self._idle if prefer is not None and w.slot == prefer % self.count), None)
        if worker is not None:
            self._idle.remove(worker)
        else:
            worker = self._idle.pop()
        self._job += 1
        job = self._job
        limits = {n: timeouts[n] if deadline_s is None else min(timeouts[n], deadline_s) for n in names}
        grace = self.config.workers.kill_grace_s
        verdicts: dict[str, Verdict] = {}
        try:
            # in a thread: a case of a few MB fills the 64 KiB pipe many times over, and the loop must not wait on it
            await asyncio.to_thread(worker.send, ("check", job, case, list(names), timeouts, deadline_s))
            lost = await self._collect(worker, job, names, limits, started, verdicts)
        except asyncio.CancelledError:
            self._finish_in_background(worker, job, names, limits, started)
            raise
        except (OSError, ValueError):
            lost = "worker_lost"
        self._release(worker, lost)
        overdue = {n for n in names if n not in verdicts and started + limits[n] + grace <= time.perf_counter()}
        return [verdicts.get(n) or self._lost_verdict(n, lost if n in overdue else "worker_lost", limits[n], started,
                                                      len(case.response))
                for n in names]

    async def _collect(self, worker: _Worker, job: int, names: Sequence[str], limits: dict[str, float],
                       started: float, verdicts: dict[str, Verdict]) -> str:
        """Gathers the job's verdicts into `verdicts`; returns "" when done, else why the worker must go."""
        grace = self.config.workers.kill_grace_s
        while True:
            # the worker times each invariant out itself; if an invariant's verdict is still missing `grace` after
            # its limit, the worker's loop is stuck (GIL held, hung in C) and only killing it helps
            pending = [limits[n] for n in names if n not in verdicts]
            # every verdict in: `done` follows at once (it carries only the model metrics)
            hard_stop = started + min(pending) + grace if pending else time.perf_counter() + grace
            try:
                msg = await asyncio.wait_for(worker.inbox.get(), timeout=max(0.0, hard_stop - time.perf_counter()))
            except TimeoutError:
                return "timeout"
            if msg[0] == "eof":
                return "worker_lost"
            if msg[1] != job:
                continue  # defensive: a job's replies all arrive before the next job is sent
            if msg[0] == "verdict":
                verdicts[msg[2].invariant] = msg[2]
            elif msg[0] == "done":
                self._metrics.update(worker.slot, msg[2])
                return ""

    def _release(self, worker: _Worker, lost: str) -> None:
        if self._closing:  # close() is stopping every worker: none was lost, none is replaced (no warning on Ctrl-C)
            self._discard(worker)
            return
        if lost or not worker.alive:
            self._retire(worker, lost or "worker_lost")
        else:
            worker.jobs += 1
            self._idle.append(worker)
            self.admission.resize(self.capacity)

    def _finish_in_background(self, worker: _Worker, job: int, names: Sequence[str], limits: dict[str, float],
                              started: float) -> None:
        """The caller gave up (deadline passed, stream cancelled) but the worker is still on its case: it stays out
        of the pool — and out of admission's capacity — until the case finishes or is stopped at its deadline."""
        self._draining += 1
        self.admission.resize(self.capacity)

        async def finish() -> None:
            lost = "worker_lost"
            try:
                lost = await self._collect(worker, job, names, limits, started, {})
            finally:
                self._draining -= 1
                self._release(worker, lost)

        task = asyncio.ensure_future(finish())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lost_verdict(self, name: str, reason: str, limit: float, started: float, response_chars: int) -> Verdict:
        threshold = self.infos[name].threshold if name in self.infos else 0.0
        if reason == "timeout":
            return timeout_verdict(name, threshold, f"check exceeded {limit:.3f}s (worker stopped)", started,
                                   response_chars)
        return error_verdict(name, threshold, "worker_lost", "check stopped: its worker died or was stopped for "
                             "another invariant that overran", started)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        self._procs.discard(worker.process)

    def _retire(self, worker: _Worker, reason: str) -> None:
        """Kills a worker that overran or died, and starts its replacement in the background."""
        self._discard(worker)
        self._all.pop(worker.slot, None)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        self._metrics.retire(worker.slot)
        self.admission.resize(self.capacity)
        self.restarts += 1
        log.warning("check_worker_replaced", slot=worker.slot, reason=reason, pid=worker.process.pid)
        if not self._closing:
            task = asyncio.ensure_future(self._replace(worker.slot))
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)

    async def _replace(self, slot: int) -> None:
        delay = self.config.workers.restart_delay_s
        while not self._closing:
            try:
                await self._spawn(slot)
                return
            except Exception as exc:
                log.error("check_worker_restart_failed", slot=slot, error=str(exc)[:300], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stops every worker at once. Workers hold nothing worth a graceful exit (models are read-only, results
        already went back), and tearing down their interpreters would cost seconds of the shutdown grace period."""
        self._closing = True
        for task in [*self._replacing, *self._background]:
            task.cancel()
        processes = list(self._procs)  # every worker started, ready or still loading
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()
        loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + timeout_s
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await loop.run_in_executor(self._executor, process.wait, max(0.0, deadline - time.perf_counter()))
        self._procs.clear()
        self._all.clear()
        self._idle.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._metrics.uninstall()


def _in_process_model_metrics() -> tuple[Any, ...]:
    """This process's own model metrics, which WorkerMetrics stands in for while process workers run."""
    from guardrail_models import batcher

    return batcher.BATCH_SIZE, batcher.QUEUE_DEPTH, batcher.INFERENCE_SECONDS


class WorkerMetrics:
    """Re-exposes the workers' `guardrail_model_*` metrics on the server's /metrics: the latest snapshot of each live
    worker, plus the counters of retired workers, so totals never go backwards when a worker is replaced."""

    def __init__(self) -> None:
        self._latest: dict[int, list[Any]] = {}
        self._retired: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._meta: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._installed = False

    def install(self) -> None:
        """Takes the place of this process's own (idle) model metrics in the default registry."""
        if self._installed:
            return
        from prometheus_client import REGISTRY as PROM

        for metric in _in_process_model_metrics():
            with contextlib.suppress(KeyError):
                PROM.unregister(metric)
        PROM.register(self)
        self._installed = True

    def uninstall(self) -> None:
        """Gives the default registry back its in-process model metrics (a later in-process model reports again)."""
        if not self._installed:
            return
        from prometheus_client import REGISTRY as PROM

        with contextlib.suppress(KeyError):
            PROM.unregister(self)
        for metric in _in_process_model_metrics():
            with contextlib.suppress(ValueError):
                PROM.register(metric)
        self._installed = False

    def update(self, slot: int, snapshot: list[Any]) -> None:
        with self._lock:
            self._latest[slot] = snapshot
            for name, kind, doc, _ in snapshot:
                self._meta[name] = (kind, doc)

    def retire(self, slot: int) -> None:
        with self._lock:
            for name, kind, _, samples in self._latest.pop(slot, []):
                if kind == "gauge":
                    continue
                for sample, labels, value in samples:
                    if sample.endswith("_created"):
                        continue
                    key = (sample, tuple(sorted(labels.items())))
                    self._retired[key] = self._retired.get(key, 0.0) + value

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import Metric

        with self._lock:
            totals: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
            for snapshot in self._latest.values():
                for name, _, _, samples in snapshot:
                    family = totals.setdefault(name, {})
                    for sample, labels, value in samples:
                        if sample.endswith("_created"):
                            continue
                        key = (sample, tuple(sorted(labels.items())))
                        family[key] = family.get(key, 0.0) + value
            for (sample, labels), value in self._retired.items():
                name = next((n for n in self._meta if sample.startswith(n)), None)
                if name is not None:
                    family = totals.setdefault(name, {})
                    family[(sample, labels)] = family.get((sample, labels), 0.0) + value
            meta = dict(self._meta)
        for name, family in totals.items():
            kind, doc = meta.get(name, ("untyped", ""))
            metric = Metric(name, doc, kind)
            for (sample, labels), value in sorted(family.items()):
                metric.add_sample(sample, dict(labels), value)
            yield metric


if __name__ == "__main__":  # run through the importable module, so what the worker pickles names its real classes
    from guardrail_server.workers import worker_main as _main

    _main(int(sys.argv[1]))
