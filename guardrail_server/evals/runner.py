"""Runs an eval: datasets -> a backend -> result rows, incrementally, with progress, clean interruption and resume.

The runner knows no invariant by name: it runs whatever the backend reports as enabled (optionally filtered)
and writes whatever verdicts come back, so a newly registered invariant shows up without changes here.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from guardrail_server.evals.backends import Backend
from guardrail_server.evals.datasets import EvalCase, LoadedDataset, Malformed
from guardrail_server.evals.results import (
    RESULTS_JSONL,
    ResultWriter,
    done_keys,
    read_manifest,
    read_rows,
    rows_for,
    write_malformed,
    write_manifest,
    write_parquet,
)

Status = Literal["complete", "interrupted"]


class RunError(RuntimeError):
    """The run cannot start as asked (existing output without --resume, unknown invariant, ...)."""


@dataclass
class RunOutcome:
    status: Status
    out_dir: Path
    cases_total: int
    cases_done: int
    rows: list[dict[str, Any]]
    invariants: list[str]
    elapsed_s: float
    run_s: float = 0.0
    cases_run: int = 0
    malformed: list[Malformed] = field(default_factory=list)

    @property
    def cases_per_s(self) -> float:
        """Throughput of this invocation once warm (model loading excluded)."""
        return self.cases_run / self.run_s if self.run_s > 0 else 0.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def prepare_out_dir(out_dir: Path, resume: bool) -> dict[str, Any]:
    """Refuses to mix two runs in one directory; with `resume` returns the previous manifest."""
    manifest = read_manifest(out_dir)
    has_results = (out_dir / RESULTS_JSONL).exists()
    if resume:
        if not manifest:
            raise RunError(f"{out_dir}: nothing to resume (no run.json)")
        return manifest
    if has_results or manifest:
        raise RunError(f"{out_dir} already holds a run; pass --resume to continue it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    return {}


def select_invariants(enabled: dict[str, float], requested: Sequence[str]) -> list[str]:
    unknown = [n for n in requested if n not in enabled]
    if unknown:
        raise RunError(f"invariant(s) {unknown} not enabled here; enabled: {sorted(enabled)}")
    return list(dict.fromkeys(requested)) or list(enabled)


def plan(cases: Sequence[EvalCase], invariants: Sequence[str], done: set[tuple[str, str]]
         ) -> list[tuple[EvalCase, tuple[str, ...]]]:
    """Each case with the invariants it still lacks; fully done cases drop out (resume loses and repeats nothing)."""
    work = []
    for item in cases:
        missing = tuple(n for n in invariants if (item.id, n) not in done)
        if missing:
            work.append((item, missing))
    return work


async def run_eval(
    backend: Backend,
    loaded: LoadedDataset,
    out_dir: Path,
    *,
    requested: Sequence[str] = (),
    resume: bool = False,
    stop: asyncio.Event | None = None,
    progress: bool = True,
    run_info: dict[str, Any] | None = None,
) -> RunOutcome:
    """Runs every (case, invariant) pair not yet in `out_dir`; stops cleanly when `stop` is set."""
    out_dir = Path(out_dir)
    if not loaded.cases:
        raise RunError(f"no cases to evaluate ({len(loaded.malformed)} malformed row(s) skipped): a run over 0 cases "
                       "would pass every gate")
    previous = prepare_out_dir(out_dir, resume)
    stop = stop or asyncio.Event()
    started = time.perf_counter()
    try:
        try:
            enabled = await backend.start()
        except Exception as exc:  # a model that fails to load is a setup problem, not a crash
            raise RunError(f"could not start the {backend.name} backend: {type(exc).__name__}: {exc}") from exc
        invariants = select_invariants(enabled, requested or previous.get("requested_invariants", []))
        done = done_keys(out_dir) if resume else set()
        work = plan(loaded.cases, invariants, done)
        manifest = {
            **previous,
            **(run_info or {}),
            "status": "running",
            "started_at": previous.get("started_at", _now()),
            "resumed_at": _now() if resume else None,
            "backend": backend.name,
            "invariants": invariants,
            "thresholds": {n: enabled[n] for n in invariants},
            "requested_invariants": list(requested or previous.get("requested_invariants", [])),
            "cases_total": len(loaded.cases),
            "malformed_rows": len(loaded.malformed),
        }
        write_manifest(out_dir, manifest)
        write_malformed(out_dir, loaded.malformed)
        run_started = time.perf_counter()
        status, cases_run = await _consume(backend, work, invariants, out_dir, stop, progress, total=len(loaded.cases))
        run_s = time.perf_counter() - run_started
    finally:
        await backend.close()
    rows = read_rows(out_dir)
    write_parquet(out_dir, rows)
    elapsed = time.perf_counter() - started
    finished_cases = {r["case_id"] for r in rows}
    manifest.update(status=status, finished_at=_now(), cases_done=len(finished_cases), rows=len(rows),
                    elapsed_s=round(elapsed, 3), run_s=round(run_s, 3), cases_run=cases_run)
    write_manifest(out_dir, manifest)
    return RunOutcome(status, out_dir, len(loaded.cases), len(finished_cases), rows, invariants, elapsed, run_s,
                      cases_run, loaded.malformed)


async def _consume(backend: Backend, work: list[tuple[EvalCase, tuple[str, ...]]], invariants: Sequence[str],
                   out_dir: Path, stop: asyncio.Event, progress: bool, total: int) -> tuple[Status, int]:
    writer = ResultWriter(out_dir)
    bar = tqdm(total=total, initial=total - len(work), unit="case", desc=f"eval[{backend.name}]",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
               mininterval=0.2 if sys.stderr.isatty() else 10.0)  # CI logs get a line every 10 s, not every case

    work_index = {item.id: names for item, names in work}
    count = 0

    async def consume_all() -> None:
        nonlocal count
        async for result in backend.run(work):
            writer.write(rows_for(result, work_index[result.item.id]))
            count += 1
            bar.update(1)

    task = asyncio.ensure_future(consume_all())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            return "complete", count
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return "interrupted", count
    finally:
        stopper.cancel()
        bar.close()
        writer.close()
