"""The secondary judges of one invariant: when they run, how their failures are contained, what they report.

Shared by every judge-backed invariant so that sampling, error containment and the `Verdict.details` layout are the
same everywhere: an invariant scores the case with its primary as before, hands the panel a function that scores
the case with any judge, and merges `panel.details(...)` into its verdict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from guardrail_invariants.disagreement import JudgeScore, case_key, in_sample, panel_details
from guardrail_invariants.judges import load_judges
from guardrail_invariants.judges.base import Judge, JudgeError
from guardrail_invariants.judges.config import JudgeSpec
from guardrail_invariants.types import Case

ScoreFn = Callable[[Judge], Awaitable[float]]


class SecondaryPanel:
    def __init__(self, judges: Sequence[Judge], thresholds: Sequence[float], fraction: float, margin: float) -> None:
        self.judges = list(judges)
        self.thresholds = list(thresholds)
        self.fraction = fraction
        self.margin = margin

    @classmethod
    async def load(cls, specs: Sequence[JudgeSpec], zoo: Any, invariant: str, threshold: float, fraction: float,
                   margin: float, primary: tuple[str, str] | None = None) -> SecondaryPanel:
        """Loads the secondary judges; `primary` = (name, family) of a primary the invariant runs itself, so the
        family rule also covers it."""
        judges = await load_judges(tuple(specs), zoo, invariant, extra=(primary,) if primary else ())
        return cls(judges, [s.threshold if s.threshold is not None else threshold for s in specs], fraction, margin)

    def due(self, case: Case) -> bool:
        return bool(self.judges) and in_sample(case_key(case.request_id, case.response), self.fraction)

    def start(self, case: Case, score: ScoreFn) -> list[asyncio.Task[JudgeScore]]:
        """Starts the secondaries (if this case is sampled) so they run concurrently with the primary."""
        if not self.due(case):
            return []
        return [asyncio.ensure_future(self._one(j, t, score)) for j, t in zip(self.judges, self.thresholds, strict=True)]

    async def _one(self, judge: Judge, threshold: float, score: ScoreFn) -> JudgeScore:
        started = time.perf_counter()
        try:
            value = await score(judge)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a secondary judge must never break the primary's verdict
            msg = str(exc) if isinstance(exc, JudgeError) else f"{type(exc).__name__}: {exc}"
            return JudgeScore(judge.name, judge.family, 0.0, threshold, time.perf_counter() - started, msg[:300])
        return JudgeScore(judge.name, judge.family, float(value), threshold, time.perf_counter() - started)

    @staticmethod
    def cancel(tasks: Sequence[asyncio.Task[JudgeScore]]) -> None:
        for task in tasks:
            task.cancel()

    async def details(self, primary: JudgeScore, tasks: Sequence[asyncio.Task[JudgeScore]]) -> dict[str, Any]:
        """`judges` (every judge's score), and `judges_disagree` when a secondary judged this case."""
        others = list(await asyncio.gather(*tasks))
        return panel_details(primary, others, self.margin)
