"""The process-wide model zoo: every model loads once and is shared by every invariant that uses it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ZooSettings:
    models_dir: Path | None = None  # extra directory of imported models; the shipped ones are always found
    intra_op_threads: int = 0
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 4096


class ModelZoo:
    def __init__(self, settings: ZooSettings | None = None) -> None:
        self.settings = settings or ZooSettings()

    async def close(self) -> None:
        """Stops batchers; called on server shutdown."""
