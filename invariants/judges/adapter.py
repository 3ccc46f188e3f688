"""Presents any judge with the surface of a zoo NLI model (`predict`, `token_count`, `manifest`, `name`).

Code written against a model (the entailment invariant's `score_claims`, the citation support check) can then run
a secondary judge through the very same windowing and aggregation as the primary, so the two are compared on equal
terms. A judge without a tokenizer gets the primary model's token counter (windows must fit the primary anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guardrail_invariants.judges.base import Judge


@dataclass(frozen=True)
class _Manifest:
    name: str
    family: str
    judge: dict[str, Any] = field(default_factory=dict)  # no fitted hybrid rule: scores are the judge's own


def approx_tokens(text: str) -> int:
    return int(len(text.split()) * 1.3) + 1


class JudgeAsModel:
    def __init__(self, judge: Judge, token_count: Callable[[str], int] | None = None) -> None:
        self.judge = judge
        self._count = token_count or getattr(judge, "token_count", None) or approx_tokens
        self.manifest = _Manifest(judge.name, judge.family)

    @property
    def name(self) -> str:
        return self.judge.name

    async def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        return await self.judge.score(pairs)

    def token_count(self, text: str) -> int:
        return self._count(text)
