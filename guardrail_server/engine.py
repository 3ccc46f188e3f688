"""The one code path from a Case to a decision, shared by the gRPC servicer and the offline eval runner."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from guardrail_server import metrics
from guardrail_server.config import Config
from guardrail_server.logs import get_logger
from guardrail_server.policy import Decision, decide
from guardrail_server.validation import validate_case
from invariants.base import Invariant
from invariants.registry import REGISTRY, build_invariant
from invariants.runner import ScheduledInvariant, run_checks
from invariants.types import Case, Verdict
from models.zoo import ModelZoo, ZooSettings

log = get_logger("guardrail.engine")


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


def zoo_settings(config: Config) -> ZooSettings:
    m = config.models
    return ZooSettings(
        models_dir=Path(m.dir) if m.dir else None,
        intra_op_threads=m.intra_op_threads,
        max_batch_size=m.max_batch_size,
        max_wait_ms=m.max_wait_ms,
        max_queue=m.max_queue,
    )


class CheckEngine:
    """Holds the configured invariants (loaded once) and runs them on cases."""

    def __init__(self, config: Config, *, zoo: ModelZoo | None = None, sampler: Sampler | None = None) -> None:
        self.config = config
        self.zoo = zoo or ModelZoo(zoo_settings(config))
        self.sampler = sampler
        self.invariants: dict[str, Invariant] = {}
        self.ready = False

    async def load(self) -> None:
        """Builds and loads every enabled invariant; returns only when all are warm."""
        for name, policy in self.config.enabled_invariants().items():
            self.invariants[name] = build_invariant(name, self.config.threshold(name), self.config.options(name), self.zoo)
        await asyncio.gather(*(inv.load() for inv in self.invariants.values()))
        self.ready = True
        log.info("invariants_loaded", invariants=sorted(self.invariants))

    async def close(self) -> None:
        await self.zoo.close()

    def validate(self, case: Case, requested: Sequence[str]) -> None:
        validate_case(case, requested, self.invariants.keys(), REGISTRY.keys(), self.config.limits)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, policy in self.config.invariants.items():
            inv = self.invariants.get(name)
            out.append(
                {
                    "name": name,
                    "enabled": policy.enabled,
                    "threshold": self.config.threshold(name),
                    "on_fail": policy.on_fail,
                    "on_error": policy.on_error,
                    "timeout_s": policy.timeout_s,
                    "judge": getattr(inv, "judge", "") if inv else "",
                }
            )
        return out

    async def check(
        self, case: Case, requested: Sequence[str] = (), *, deadline_s: float | None = None, sample: bool = True
    ) -> CheckResult:
        """Validates, runs the requested (or all enabled) invariants, decides, records metrics, logs, samples."""
        self.validate(case, requested)
        started = time.perf_counter()
        if not case.request_id:
            case = replace(case, request_id=uuid.uuid4().hex)
        names = list(dict.fromkeys(requested)) or list(self.invariants)
        policies = self.config.invariants
        scheduled = [ScheduledInvariant(self.invariants[n], policies[n].timeout_s) for n in names]
        verdicts = await run_checks(scheduled, case, deadline_s)
        decision = decide(verdicts, policies)
        disagreements = [v.invariant for v in verdicts if v.details.get("judges_disagree")]
        sample_id = None
        if sample and self.sampler is not None:
            sample_id = self.sampler.offer(case, verdicts, decision.value, disagreements=disagreements)
        duration = time.perf_counter() - started
        self._observe(case, verdicts, decision, duration, disagreements, sample_id)
        return CheckResult(case.request_id, decision, verdicts, duration, sample_id, disagreements)

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
        for v in verdicts:
            metrics.CHECKS.labels(v.invariant, v.outcome.value, app).inc()
            metrics.CHECK_DURATION.labels(v.invariant).observe(v.latency_s)
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
            scores={v.invariant: round(v.score, 4) for v in verdicts},
            latency_ms={v.invariant: round(v.latency_s * 1000, 2) for v in verdicts},
            duration_ms=round(duration * 1000, 2),
            response_chars=len(case.response),
            passages=len(case.context),
            samples=len(case.samples),
            review_sample_id=sample_id,
        )
