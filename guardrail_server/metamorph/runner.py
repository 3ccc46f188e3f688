"""Runs a metamorphic test: seeds x relations -> pairs -> the system under test -> rows in the eval results schema.

Rows: one per pair x target, `case_id` = pair id, `invariant` = `RELATION@TARGET` (TARGET is an invariant for our
judges, `sut` for another system), outcome `pass` = the relation held, `fail` = violated, `skipped` = the pair does
not constrain the system (e.g. negating a claim the judge already rejects), `error` = a side errored. `score` is how
well the relation held (1 - score change for verdicts, token F1 for text); `threshold` is empty — the outcome is the
relation's decision. `question`/`response` are the follow-up's question and the follow-up's response (judges) or
answer (generators). Monotonicity rows: `case_id` = seed id, `invariant` = `monotonicity@TARGET`.

Every system call is cached by case content and target, so a seed shared by several relations is run once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from guardrail_server.evals.backends import run_bounded
from guardrail_server.evals.datasets import EvalCase, LoadedDataset
from guardrail_server.evals.results import (
    ResultWriter,
    done_keys,
    read_rows,
    write_malformed,
    write_manifest,
    write_parquet,
)
from guardrail_server.evals.runner import RunError, prepare_out_dir
from guardrail_server.logs import get_logger
from guardrail_server.metamorph.monotonicity import JUDGE_TARGETS, run_monotonicity
from guardrail_server.metamorph.relations import Relation
from guardrail_server.metamorph.sut import SystemUnderTest
from guardrail_server.metamorph.types import Output, Pair, case_key, case_to_dict, rng_for

log = get_logger("guardrail.metamorph")
PAIRS = "pairs.jsonl"
MONOTONICITY = "monotonicity.jsonl"


class RunSettings(BaseModel):
    """What a run does besides the relations themselves (recorded in run.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="global seed: the same seed, seeds and relations give the same pairs")
    concurrency: int = Field(16, ge=1, le=512, description="pairs in flight")
    max_pairs: int | None = Field(None, ge=1, description="stop generating after this many pairs")
    relations: bool = Field(True, description="run the relations (off: monotonicity only)")
    monotonicity: bool = Field(False, description="also run the monotonicity check")
    levels: int = Field(3, ge=2, le=10, description="nested contexts per monotonicity case")
    tolerance: int = Field(0, ge=0, description="monotonicity: allowed drop in specificity units")
    worst: int = Field(6, ge=0, le=100, description="worst examples per relation in the report")


@dataclass
class Generated:
    pairs: list[tuple[Pair, EvalCase, Relation]]
    seeds_used: int
    not_applicable: Counter[str] = field(default_factory=Counter)
    generated: Counter[str] = field(default_factory=Counter)
    transform_errors: list[str] = field(default_factory=list)
    seeds_refused: int = 0


@dataclass
class MetamorphOutcome:
    status: str
    out_dir: Path
    rows: list[dict[str, Any]]
    pairs: int
    tests: int
    sut_calls: int
    run_s: float
    elapsed_s: float
    generated: Generated | None = None

    @property
    def tests_per_s(self) -> float:
        return self.tests / self.run_s if self.run_s > 0 else 0.0


def seed_targets(item: EvalCase, targets: Sequence[str], kind: str) -> tuple[str, ...]:
    """Our judges run on a seed only where its dataset speaks to them (a PII dataset tests pii_boundary, not
    entailment); a seed without labels is for every judge."""
    if kind != "judges" or not item.expected:
        return tuple(targets)
    return tuple(t for t in targets if t in item.expected)


def generate(seeds: Sequence[EvalCase], relations: Sequence[Relation], sut: SystemUnderTest,
             targets: Sequence[str], settings: RunSettings) -> Generated:
    """Every (seed, relation, variant) pair, deterministically, in seed order."""
    out = Generated([], 0)
    cases = [s.case for s in seeds]
    for relation in relations:
        relation.prepare(cases)
    used = set()
    for item in seeds:
        if not sut.accepts(item.case):
            out.seeds_refused += 1
            continue
        mine = seed_targets(item, targets, sut.kind)
        for relation in relations:
            wanted = relation.targets_for(sut.kind, mine)
            if not wanted:
                continue
            fields = tuple(f for f in relation.fields_for(sut.kind) if f in sut.input_fields)
            for v in range(relation.options.variants):
                if settings.max_pairs is not None and len(out.pairs) >= settings.max_pairs:
                    out.seeds_used = len(used)
                    return out
                try:
                    t = relation.transform(item.case, rng_for(settings.seed, item.id, relation.key, v), fields)
                except Exception as exc:  # a user relation's bug is reported, not a crash half-way through a run
                    out.transform_errors.append(f"{relation.key} on {item.id}: {type(exc).__name__}: {exc}"[:300])
                    continue
                source = t.source if t is not None and t.source is not None else item.case
                if t is None or t.case == source:
                    out.not_applicable[relation.key] += 1
                    continue
                pid = f"{item.id}~{relation.key}" + (f"~{v}" if v else "")
                out.pairs.append((Pair(pid, relation.key, item.id, v, source, t.case, t.edits, wanted, t.mapping),
                                  item, relation))
                out.generated[relation.key] += 1
                used.add(item.id)
    out.seeds_used = len(used)
    return out


class CachedSut:
    """One call per (case content, target), however many pairs share the case; concurrent askers share the call."""

    def __init__(self, sut: SystemUnderTest) -> None:
        self.sut = sut
        self.cache: dict[tuple[str, str], asyncio.Future[dict[str, Output]]] = {}
        self.calls = 0

    async def __call__(self, case: Any, targets: Sequence[str]) -> dict[str, Output]:
        key = case_key(case)
        missing = [t for t in targets if (key, t) not in self.cache]
        if missing:
            self.calls += 1
            task = asyncio.ensure_future(self.sut.run(case, missing))
            for t in missing:
                self.cache[(key, t)] = task
        out = {}
        for t in targets:
            got = await asyncio.shield(self.cache[(key, t)])
            out[t] = got.get(t) or Output(error=f"the system returned no output for {t}", verdict=True)
        return out


def _row(item: EvalCase, case_id: str, name: str, outcome: str, score: float, message: str, kind: str,
         followup_out: Output | None, question: str, response: str, error: str = "",
         findings: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    finding = [{"kind": kind, "start": -1, "end": -1, "message": message, "passage_id": "", "score": score}]
    extra = [{k: f.get(k) for k in ("kind", "start", "end", "message", "passage_id", "score")} for f in findings]
    return {"case_id": case_id, "invariant": name, "dataset": item.dataset, "task": item.task, "source": item.source,
            "outcome": outcome, "score": float(score), "threshold": None, "expected": None, "label": item.label,
            "decision": "", "judge": followup_out.judge if followup_out else "", "error": error,
            "latency_ms": round((followup_out.latency_s if followup_out else 0.0) * 1000, 3),
            "findings": json.dumps(extra or finding, ensure_ascii=False), "judges_disagree": None, "judges": None,
            "question": question, "response": response}


def pair_rows(pair: Pair, item: EvalCase, relation: Relation, src: dict[str, Output], fup: dict[str, Output],
              kind: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, record_outputs = [], {}
    edits = "; ".join(e.describe() for e in pair.edits)[:400]
    for t in pair.targets:
        s, f = src[t], fup[t]
        if s.error or f.error:
            outcome, score, message = "error", 0.0, f"{'source' if s.error else 'follow-up'} errored"
            error = s.error or f.error
        else:
            check = relation.check(s, f, pair)
            outcome = "skipped" if check.held is None else ("pass" if check.held else "fail")
            score, message, error = check.score, check.message, ""
        kind_name = {"pass": "relation_held", "fail": "relation_violated", "skipped": "relation_inconclusive",
                     "error": "relation_error"}[outcome]
        response = pair.followup.response if kind == "judges" else f.text
        rows.append(_row(item, pair.id, f"{relation.key}@{t}", outcome, score, f"{message} after {edits}",
                         kind_name, f, pair.followup.question, response, error))
        record_outputs[t] = {"outcome": outcome, "score": score, "message": message, "source": s.to_dict(),
                             "followup": f.to_dict()}
    record = {"pair_id": pair.id, "relation": relation.key, "seed_id": pair.seed_id, "variant": pair.variant,
              "dataset": item.dataset, "edits": [asdict(e) for e in pair.edits],
              "source": case_to_dict(pair.source), "followup": case_to_dict(pair.followup),
              "outputs": record_outputs}
    return rows, record


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def run_metamorph(sut: SystemUnderTest, relations: Sequence[Relation], loaded: LoadedDataset, out_dir: Path,
                        settings: RunSettings, *, stop: asyncio.Event | None = None, progress: bool = True,
                        run_info: dict[str, Any] | None = None, meter: Any = None,
                        resume: bool = False) -> MetamorphOutcome:
    """Generates the pairs, runs them (and monotonicity) on `sut`, writes the run directory. With `resume`, the
    pairs already in `out_dir` are not run again (generation is deterministic, so the same command regenerates the
    same pairs; a run with another seed or other relations is refused)."""
    out_dir = Path(out_dir)
    if not loaded.cases:
        raise RunError(f"no seed cases ({len(loaded.malformed)} malformed row(s) skipped): a run over 0 pairs "
                       "would pass every gate")
    previous = prepare_out_dir(out_dir, resume)
    if resume:
        _check_resumable(previous, settings, relations)
    done = done_keys(out_dir) if resume else set()
    stop = stop or asyncio.Event()
    started = time.perf_counter()
    cached = CachedSut(sut)
    try:
        try:
            targets = await sut.start()
        except Exception as exc:
            raise RunError(f"could not start the system under test {sut.name}: {type(exc).__name__}: {exc}") from exc
        gen = generate(loaded.cases, relations, sut, targets, settings) if settings.relations else Generated([], 0)
        mono_seeds: list[tuple[EvalCase, tuple[str, ...]]] = []
        if settings.monotonicity:
            wanted = JUDGE_TARGETS if sut.kind == "judges" else targets
            for item in loaded.cases:
                mt = tuple(t for t in seed_targets(item, targets, sut.kind) if t in wanted)
                if mt and sut.accepts(item.case):
                    mono_seeds.append((item, mt))
            if sut.kind != "judges" and meter is None:
                raise RunError("monotonicity on a generator needs the specificity meter (NLI model and spaCy)")
            if meter is not None:
                await meter.load()
        if not gen.pairs and not mono_seeds:
            raise RunError(f"no test pairs: none of the {len(relations)} relation(s) applies to the "
                           f"{len(loaded.cases)} seed case(s)")
        todo = [x for x in gen.pairs if any((x[0].id, f"{x[0].relation}@{t}") not in done for t in x[0].targets)]
        mono_todo = [m for m in mono_seeds if any((m[0].id, f"monotonicity@{t}") not in done for t in m[1])]
        manifest = {
            **previous, **(run_info or {}), "kind": "metamorph", "status": "running",
            "started_at": previous.get("started_at", _now()), "resumed_at": _now() if resume else None,
            "backend": sut.name, "sut": sut.describe(), "targets": list(targets),
            "relations": {r.key: {"family": r.family_name, "expect": r.expect, "doc": r.summary,
                                  "class": f"{type(r).__module__}.{type(r).__qualname__}",
                                  "options": r.options.model_dump(mode="json"),
                                  "generated": gen.generated.get(r.key, 0),
                                  "not_applicable": gen.not_applicable.get(r.key, 0)} for r in relations},
            "settings": settings.model_dump(mode="json"), "cases_total": len(loaded.cases),
            "seeds_used": gen.seeds_used, "seeds_refused": gen.seeds_refused, "pairs": len(gen.pairs),
            "monotonicity_cases": len(mono_seeds), "transform_errors": gen.transform_errors[:50],
            "malformed_rows": len(loaded.malformed),
            "invariants": sorted({f"{p.relation}@{t}" for p, _, _ in gen.pairs for t in p.targets}),
        }
        write_manifest(out_dir, manifest)
        write_malformed(out_dir, loaded.malformed)
        run_started = time.perf_counter()
        status, tests = await _execute(cached, todo, mono_todo, sut.kind, out_dir, settings, stop, progress, meter)
        run_s = time.perf_counter() - run_started
    finally:
        await sut.close()
    rows = read_rows(out_dir)
    write_parquet(out_dir, rows)
    elapsed = time.perf_counter() - started
    manifest.update(status=status, finished_at=_now(), rows=len(rows), sut_calls=cached.calls,
                    tests=sum(r["outcome"] in ("pass", "fail") for r in rows), tests_this_run=tests,
                    run_s=round(run_s, 3), elapsed_s=round(elapsed, 3),
                    tests_per_s=round(tests / run_s, 3) if run_s > 0 else None,
                    cases_done=len({r["case_id"] for r in rows}))
    write_manifest(out_dir, manifest)
    log.info("metamorph_done", status=status, pairs=len(gen.pairs), rows=len(rows), sut_calls=cached.calls,
             run_s=round(run_s, 2))
    return MetamorphOutcome(status, out_dir, rows, len(gen.pairs), tests, cached.calls, run_s, elapsed, gen)


def _check_resumable(previous: dict[str, Any], settings: RunSettings, relations: Sequence[Relation]) -> None:
    if previous.get("kind") != "metamorph":
        raise RunError("--resume: the run directory does not hold a metamorph run")
    was = previous.get("settings", {})
    for key in ("seed", "relations", "monotonicity", "levels", "max_pairs"):
        if was.get(key) != getattr(settings, key):
            raise RunError(f"--resume: {key} was {was.get(key)!r} in that run, now {getattr(settings, key)!r}; "
                           "resume with the same command")
    if sorted(previous.get("relations", {})) != sorted(r.key for r in relations):
        raise RunError("--resume: that run had other relations; resume with the same --relation flags")


async def _execute(cached: CachedSut, pairs: list[tuple[Pair, EvalCase, Relation]],
                   mono: list[tuple[EvalCase, tuple[str, ...]]], kind: str,
                   out_dir: Path, settings: RunSettings, stop: asyncio.Event, progress: bool,
                   meter: Any) -> tuple[str, int]:
    writer = ResultWriter(out_dir)
    pairs_fh = (out_dir / PAIRS).open("a", encoding="utf-8")
    mono_fh = (out_dir / MONOTONICITY).open("a", encoding="utf-8")
    total = len(pairs) + len(mono)
    bar = tqdm(total=total, unit="test", desc="metamorph", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1, mininterval=0.2 if sys.stderr.isatty() else 10.0)
    tests = 0

    async def one(kind_of: str, payload: Any) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
        if kind_of == "pair":
            pair, item, relation = payload
            src, fup = await asyncio.gather(cached(pair.source, pair.targets), cached(pair.followup, pair.targets))
            rows, record = pair_rows(pair, item, relation, src, fup, kind)
            return rows, record, PAIRS
        item, targets = payload
        levels, results = await run_monotonicity(item.case, targets, kind, cached, meter, settings.levels,
                                                 settings.tolerance)
        rows = []
        for r in results:
            outcome = "error" if r.error else ("pass" if r.held else "fail")
            message = r.findings[0]["message"] if r.findings else (
                f"no drop over {len(levels)} nested contexts" if not r.error else "a level errored")
            rows.append(_row(item, item.id, f"monotonicity@{r.target}", outcome, r.score, message,
                             "monotone" if outcome == "pass" else "monotonicity", None, item.case.question,
                             item.case.response if kind == "judges" else (r.levels[-1].get("output", "")
                                                                          if r.levels else ""),
                             r.error, r.findings))
        record = {"seed_id": item.id, "dataset": item.dataset, "question": item.case.question,
                  "targets": {r.target: {"held": r.held, "score": r.score, "findings": list(r.findings),
                                         "levels": list(r.levels), "error": r.error} for r in results}}
        return rows, record, MONOTONICITY

    work = [("pair", p) for p in pairs] + [("mono", m) for m in mono]

    async def consume() -> None:
        nonlocal tests
        async for rows, record, where in run_bounded(work, settings.concurrency, one):  # type: ignore[arg-type]
            writer.write(rows)
            fh = pairs_fh if where == PAIRS else mono_fh
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            tests += sum(r["outcome"] in ("pass", "fail") for r in rows)
            bar.update(1)

    task = asyncio.ensure_future(consume())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            return "complete", tests
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return "interrupted", tests
    finally:
        stopper.cancel()
        bar.close()
        writer.close()
        pairs_fh.close()
        mono_fh.close()
