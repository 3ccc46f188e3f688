"""The one code path from a Case to a decision, shared by the gRPC servicer and the offline eval runner."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from guardrail_server import metrics
from guardrail_server.config import Config, zoo_settings  # noqa: F401 - zoo_settings re-exported
from guardrail_server.logs import get_logger
from guardrail_server.policy import Decision, decide, let_through_unchecked
from guardrail_server.validation import validate_case
from guardrail_server.admission import Admission, Kind, Shed
from guardrail_server.workers import CheckRunner, InlineRunner, InvariantInfo, ProcessRunner
from guardrail_invariants.registry import REGISTRY
from guardrail_invariants.types import Case, Outcome, Verdict
from guardrail_models.zoo import ModelZoo

log = get_logger("guardrail.engine")
FAIL_OPEN_REASONS = ("timeout", "exception", "worker_lost")  # finding kinds of an ERROR verdict


class Sampler(Protocol):
    def offer(
        self, case: Case, verdicts: Sequence[Verdict], decision: str, *, disagreements: Sequence[str] = ()
    ) -> str | None: ...


@dataclass(frozen=True)
class CheckResult:
    request_id: str
    decision: Decision
    verdicts: list[Verdict]
    duration_s: float
    review_sample_id: str | None = None
    disagreements: list[str] = field(default_factory=list)


class CheckEngine:
    """Runs the configured invariants on cases — in check workers (`workers.mode: process`) or in this process —
    behind admission control, and turns verdicts into a decision, metrics, a log line and a review sample."""

    def __init__(self, config: Config, *, zoo: ModelZoo | None = None, sampler: Sampler | None = None) -> None:
        self.config = config
        self.sampler = sampler
        a = config.admission
        self.admission = Admission(config.workers.count, max_queue=a.max_queue, max_wait_s=a.max_queue_wait_s,
                                   stream_share=a.stream_share)
        self.runner: CheckRunner = (
            ProcessRunner(config, self.admission) if config.workers.mode == "process"
            else InlineRunner(config, zoo or ModelZoo(zoo_settings(config))))
        self.invariants: dict[str, InvariantInfo] = {}
        self._described: list[dict[str, Any]] | None = None
        self.ready = False

    async def load(self) -> None:
        """Loads every enabled invariant (in every worker); returns only when all are warm."""
        await self.runner.start()
        self.invariants = dict(self.runner.infos)
        await asyncio.to_thread(self.describe)
        self.ready = True
        log.info("invariants_loaded", invariants=sorted(self.invariants), mode=self.config.workers.mode,
                 workers=self.config.workers.count)

    async def close(self, timeout_s: float = 5.0) -> None:
        self.admission.close()
        await self.runner.close(timeout_s)

    def validate(self, case: Case, requested: Sequence[str], *, response_required: bool = True) -> None:
        validate_case(case, requested, self.invariants.keys(), REGISTRY.keys(), self.config.limits,
                      response_required=response_required)

    def describe(self) -> list[dict[str, Any]]:
        """Every configured invariant and its policy. Built once at load: a disabled invariant's default threshold
        means importing its module (spaCy for pii_boundary: seconds), which must never happen on a call."""
        if self._described is None:
            self._described = [
                {
                    "name": name,
                    "enabled": policy.enabled,
                    "threshold": info.threshold if (info := self.invariants.get(name)) else self.config.threshold(name),
                    "on_fail": policy.on_fail,
                    "on_error": policy.on_error,
                    "on_partial": policy.on_partial,
                    "timeout_s": policy.timeout_s,
                    "judge": info.judge if info else "",
                }
                for name, policy in self.config.invariants.items()
            ]
        return self._described

    async def check(
        self, case: Case, requested: Sequence[str] = (), *, deadline_s: float | None = None, sample: bool = True,
        kind: Kind = "offline", prefer: int | None = None,
    ) -> CheckResult:
        """Validates, waits for a check slot (or raises `Shed`), runs the requested (or all enabled) invariants,
        decides, records metrics, logs, samples. `kind` is the admission class: "unary"/"stream" calls wait a
        bounded time, "offline" callers (evals, the CLI) wait as long as it takes."""
        self.validate(case, requested)
        started = time.perf_counter()
        if not case.request_id:
            case = replace(case, request_id=uuid.uuid4().hex)
        names = list(dict.fromkeys(requested)) or list(self.invariants)
        policies = self.config.invariants
        budget = None if deadline_s is None else deadline_s - self.config.admission.min_run_s
        try:
            async with self.admission.slot(kind, budget) as waited:
                remaining = None if deadline_s is None else max(0.0, deadline_s - waited)
                verdicts = await self.runner.run(case, names, {n: policies[n].timeout_s for n in names}, remaining,
                                                 prefer=prefer)
        except Shed as shed:
            metrics.SHED.labels(kind, shed.reason).inc()
            log.warning("shed", request_id=case.request_id, kind=kind, reason=shed.reason)
            raise
        verdicts = [_capped(v, self.config.limits.max_findings) for v in verdicts]
        decision = decide(verdicts, policies)
        disagreements = [v.invariant for v in verdicts if v.details.get("judges_disagree")]
        sample_id = None
        if sample and self.sampler is not None:
            sample_id = self.sampler.offer(case, verdicts, decision.value, disagreements=disagreements)
        duration = time.perf_counter() - started
        self._observe(case, verdicts, decision, duration, disagreements, sample_id)
        return CheckResult(case.request_id, decision, verdicts, duration, sample_id, disagreements)

    async def check_part(self, case: Case, names: Sequence[str], *, deadline_s: float | None,
                         kind: Kind = "generation", prefer: int | None = None) -> list[Verdict]:
        """Runs `names` on part of a response (a sentence, the text so far) behind admission control, without a
        decision, metrics, log line or review sample of its own: CheckGeneration's live checks
        (`guardrail_server.generation`). The response they belong to gets all of those once, from `check`, at its
        close. A generation check waits for a worker as long as `deadline_s` allows (else `Shed`)."""
        policies = self.config.invariants
        try:
            async with self.admission.slot(kind, deadline_s) as waited:
                remaining = None if deadline_s is None else max(0.0, deadline_s - waited)
                verdicts = await self.runner.run(case, names, {n: policies[n].timeout_s for n in names}, remaining,
                                                 prefer=prefer)
        except Shed as shed:
            metrics.SHED.labels(kind, shed.reason).inc()
            raise
        return [_capped(v, self.config.limits.max_findings) for v in verdicts]

    def _observe(
        self,
        case: Case,
        verdicts: list[Verdict],
        decision: Decision,
        duration: float,
        disagreements: list[str],
        sample_id: str | None,
    ) -> None:
        app = metrics.app_label(case.app, self.config.metrics.apps)
        policies = self.config.invariants
        for v in verdicts:
            metrics.CHECKS.labels(v.invariant, v.outcome.value, app).inc()
            metrics.CHECK_DURATION.labels(v.invariant).observe(v.latency_s)
            if v.coverage is not None and v.unchecked:
                metrics.PARTIAL_CHECKS.labels(v.invariant, v.coverage.reason).inc()
                metrics.UNCHECKED_CHARS.labels(v.invariant).inc(v.coverage.unchecked_chars)
            if let_through_unchecked(v, policies[v.invariant]):
                reason = ("partial" if v.outcome is not Outcome.ERROR else
                          next((f.kind for f in v.findings if f.kind in FAIL_OPEN_REASONS), "exception"))
                metrics.FAIL_OPEN.labels(v.invariant, reason).inc()
                log.warning("fail_open", request_id=case.request_id, invariant=v.invariant, reason=reason)
        for name in disagreements:
            metrics.JUDGE_DISAGREEMENTS.labels(name).inc()
        metrics.DECISIONS.labels(decision.value, app).inc()
        metrics.REQUEST_DURATION.observe(duration)
        log.info(
            "check",
            request_id=case.request_id,
            app=case.app,
            decision=decision.value,
            outcomes={v.invariant: v.outcome.value for v in verdicts},
            unchecked_chars={v.invariant: v.coverage.unchecked_chars for v in verdicts if v.coverage is not None},
            scores={v.invariant: round(v.score, 4) for v in verdicts},
            latency_ms={v.invariant: round(v.latency_s * 1000, 2) for v in verdicts},
            duration_ms=round(duration * 1000, 2),
            response_chars=len(case.response),
            passages=len(case.context),
            samples=len(case.samples),
            review_sample_id=sample_id,
        )


def _capped(verdict: Verdict, limit: int) -> Verdict:
    """At most `limit` findings per verdict (the first ones, in response order); the rest are counted, not listed."""
    if len(verdict.findings) <= limit:
        return verdict
    return replace(verdict, findings=verdict.findings[:limit],
                   details={**verdict.details, "findings_omitted": len(verdict.findings) - limit})
