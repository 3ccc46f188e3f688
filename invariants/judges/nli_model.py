"""An NLI cross-encoder from the model zoo as a judge; its family is the one in the model's manifest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from guardrail_invariants.judges.base import Pair, check_scores, empty_scores


class NliModelJudge:
    def __init__(self, zoo: Any, model: str | None = None) -> None:
        self.zoo = zoo
        self.model_name = model
        self.model: Any = None
        self.name = f"nli:{model}" if model else "nli"
        self.family = ""

    async def load(self) -> None:
        if self.model is None:
            self.model = await self.zoo.load_nli(self.model_name)
            self.name = f"nli:{self.model.manifest.name}"
            self.family = self.model.manifest.family
            await self.model.predict([("The sky is blue today.", "The sky is blue.")])  # warm before SERVING

    def token_count(self, text: str) -> int:
        return self.model.token_count(text)

    async def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        if self.model is None:
            await self.load()
        if not pairs:
            return empty_scores()
        return check_scores(await self.model.predict(list(pairs)), len(pairs), self.name)
