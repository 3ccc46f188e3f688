"""The time budget of the check now running: when an invariant stops starting new work and says `partial`.

A check that runs past its `timeout_s` is cut off by the runner and becomes an `error` with nothing checked — for a
32,000-character response, the whole of it. So the long checks work through a response front to back in small steps
(pii_boundary chunk by chunk, entailment claim by claim) and look at this deadline between steps: past its soft
point they start no new step and return what they found, with the spans they did not reach (`Coverage`). The gap
between the soft point and the timeout is the reserve for the step already running and for the reply.

`guardrail_invariants.runner.run_one` sets it around each check. Why a context variable: the `Invariant.check(case)`
protocol stays as it is (the test invariants, anyone's own), and the value follows the check into the tasks it
starts and into `asyncio.to_thread`. Outside the runner (a direct `check()` call in a test or a notebook) there is no
deadline and every step runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

# The soft point is at 85% of the budget, at most 1 s before the timeout: 5 s -> 4.25 s, 3 s -> 2.55 s, 2 s -> 1.7 s.
# The reserve must hold one step on busy cores (a 2,000-character spaCy chunk, a block of 8 claims: 0.1-0.5 s on two
# shared cores) plus building and sending the verdict.
SOFT_SHARE = 0.85
MAX_RESERVE_S = 1.0
STEP_MARGIN = 1.5  # a next step may take this much longer than the last one


@dataclass(frozen=True, slots=True)
class Deadline:
    """`soft` and `hard` are `time.perf_counter()` instants: stop starting steps at `soft`; `hard` is the timeout."""

    soft: float
    hard: float

    @classmethod
    def after(cls, seconds: float, *, now: float | None = None) -> Deadline:
        start = time.perf_counter() if now is None else now
        if not math.isfinite(seconds):
            return NO_DEADLINE
        seconds = max(0.0, seconds)
        return cls(start + seconds - min(MAX_RESERVE_S, seconds * (1.0 - SOFT_SHARE)), start + seconds)

    @property
    def limited(self) -> bool:
        return math.isfinite(self.hard)

    def expired(self, step_s: float = 0.0) -> bool:
        """Start no new step: past the soft point, or so close to it that a step like the last one (`step_s` seconds,
        x`STEP_MARGIN`: steps slow down several-fold on busy cores) would run past the middle of the reserve. The last
        step, not the slowest: a check's first step also pays for one-time work (embedding the context windows)."""
        now = time.perf_counter()
        return now >= self.soft or now + STEP_MARGIN * step_s >= self.soft + (self.hard - self.soft) / 2

    def late(self) -> bool:
        """Past the middle of the reserve: even cheap extra work (pii_boundary's pattern sweep) stops here, leaving
        the rest of the reserve to the step already running and to the reply."""
        return time.perf_counter() >= self.soft + (self.hard - self.soft) / 2

    def left(self) -> float:
        """Seconds until the soft point (negative once past it; inf without a deadline)."""
        return self.soft - time.perf_counter()

    def hard_left(self) -> float:
        """Seconds until the timeout itself: for cheap work that may still run after the soft point."""
        return self.hard - time.perf_counter()


NO_DEADLINE = Deadline(math.inf, math.inf)
_current: ContextVar[Deadline] = ContextVar("guardrail_check_deadline", default=NO_DEADLINE)


def current() -> Deadline:
    """The running check's deadline (`NO_DEADLINE` outside the runner)."""
    return _current.get()


@contextmanager
def within(deadline: Deadline) -> Iterator[Deadline]:
    """Runs the block (and the tasks and threads it starts) under `deadline`."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
