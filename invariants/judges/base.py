"""The `Judge` protocol: anything that scores (premise, hypothesis) pairs as NLI probabilities.

Invariants that reason about support or contradiction (entailment, self-consistency, the citation support check)
ask a judge, not a model: the same invariant can then run with a neural NLI model, a non-neural alignment judge or an
LLM, and with two of them side by side, whose disagreement marks the cases that are genuinely hard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

NLI_COLUMNS: tuple[str, str, str] = ("entailment", "neutral", "contradiction")
Pair = tuple[str, str]


class JudgeError(RuntimeError):
    """A judge could not produce a judgement (endpoint down, malformed output). The invariant turns it into an
    ERROR verdict (or, for a secondary judge, into a recorded failure); it never escapes as a crash."""


@runtime_checkable
class Judge(Protocol):
    """Scores pairs. `family` names the training lineage: two judges of one family share blind spots, so an
    invariant refuses to pair them (see `guardrail_invariants.judges.config`)."""

    name: str
    family: str

    async def load(self) -> None: ...

    async def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        """(premise, hypothesis) pairs -> float array [n, 3]: P(entailment), P(neutral), P(contradiction)."""
        ...


def empty_scores() -> np.ndarray:
    return np.zeros((0, 3), dtype=np.float32)


def check_scores(scores: np.ndarray, n: int, judge: str) -> np.ndarray:
    """Guards the protocol's contract so that a misbehaving judge fails loudly, not silently."""
    arr = np.asarray(scores, dtype=np.float32)
    if arr.shape != (n, 3) or not np.all(np.isfinite(arr)):
        raise JudgeError(f"judge {judge!r} returned scores of shape {arr.shape}, expected ({n}, 3)")
    return arr
