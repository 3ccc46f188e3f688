"""The process-wide model zoo: every model loads once and is shared by every invariant that uses it.

Shipped models live in `models/zoo/<name>/` (found through the package path, so an installed wheel works);
imported ones in `ZooSettings.models_dir/<name>/`, which wins on a name clash.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_models.batcher import DynamicBatcher
from guardrail_models.manifest import ModelManifest, load_manifest
from guardrail_models.runtime import DeviceUnavailableError, EmbeddingRuntime, NliRuntime, resolve_device

SHIPPED_DIR = Path(__file__).resolve().parent / "zoo"
DEFAULT_NLI = "minilm-groundedness-v2"
DEFAULT_EMBEDDER = "minilm-l6-embed"
# Pairs per model call on a GPU when `max_batch_size` is not set: a GPU runs a batch of 32 short pairs in about the
# time of one, so the pairs of a check (claims x windows, the invariants of a case together) share calls; on the CPU
# batching buys nothing (models/README.md) and dynamic int8 would make a pair's score depend on its batch-mates.
GPU_BATCH_SIZE = 32


class UnknownModelError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ZooSettings:
    models_dir: Path | None = None  # extra directory of imported models; the shipped ones are always found
    intra_op_threads: int = 0
    max_batch_size: int | None = None  # None: 1 on the CPU, GPU_BATCH_SIZE on CUDA (guardrail_server.config.ModelsConfig)
    device: str = "cpu"  # models.device: cpu | cuda | auto (guardrail_models.runtime.resolve_device)
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    default_nli: str = DEFAULT_NLI
    cache_size: int = 0  # model outputs kept per model (PredictionCache); 0 = none (the server: models.cache_size)


class PredictionCache:
    """A model's outputs by input, the least recently used dropped first: the same (premise, hypothesis) pair or text
    is scored once per process while it stays among the recent ones. Why: CheckGeneration checks each sentence as it
    ends and then the whole response at the close; the close's claims are the sentences already scored, against the
    same context windows (and a context recurs across requests). The model is deterministic for an input (each pair
    alone: `max_batch_size` 1), so a hit is the very value a new run would give. Keys are 16-byte digests."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(parts: tuple[str, ...]) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.digest()

    async def through(self, inputs: Sequence[tuple[str, ...]], compute: Any) -> np.ndarray:
        """The rows for `inputs`, computing (`await compute(missing inputs)`) only those not cached."""
        keys = [self.key(i) for i in inputs]
        with self._lock:
            rows: list[np.ndarray | None] = []
            for k in keys:
                row = self._rows.get(k)
                if row is not None:
                    self._rows.move_to_end(k)
                rows.append(row)
        missing = [i for i, row in enumerate(rows) if row is None]
        self.hits += len(rows) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = await compute([inputs[i] for i in missing])
            with self._lock:
                for i, row in zip(missing, fresh, strict=True):
                    rows[i] = self._rows[keys[i]] = np.array(row, copy=True)
                while len(self._rows) > self.size:
                    self._rows.popitem(last=False)
        return np.stack(rows)  # type: ignore[arg-type]


class _LoadedModel:
    """A runtime behind its batcher, with the manifest it was loaded from."""

    def __init__(self, runtime: NliRuntime | EmbeddingRuntime, batcher: DynamicBatcher, directory: Path,
                 cache_size: int = 0) -> None:
        self.runtime = runtime
        self.batcher = batcher
        self.directory = directory
        self.cache = PredictionCache(cache_size) if cache_size > 0 else None

    @property
    def manifest(self) -> ModelManifest:
        return self.runtime.manifest

    @property
    def name(self) -> str:
        return self.runtime.manifest.name


class NliModel(_LoadedModel):
    """A loaded NLI cross-encoder behind the shared batcher."""

    runtime: NliRuntime

    async def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(premise, hypothesis) pairs -> [n, 3] probabilities (entailment, neutral, contradiction)."""
        if self.cache is None or not pairs:
            return await self.batcher.predict(pairs)
        return await self.cache.through([tuple(p) for p in pairs], self.batcher.predict)

    def predict_sync(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Unbatched, blocking; for scripts and benchmarks, never on the event loop."""
        return self.runtime.predict(pairs)

    def token_count(self, text: str) -> int:
        return self.runtime.token_count(text)


class EmbeddingModel(_LoadedModel):
    """A loaded sentence encoder behind its own batcher (texts ride in the batcher's pair slots)."""

    runtime: EmbeddingRuntime

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> [n, d] unit vectors (cosine similarity = dot product)."""
        if self.cache is None or not texts:
            return await self.batcher.predict([(t, "") for t in texts])
        return await self.cache.through([(t, "") for t in texts], self.batcher.predict)


class ModelZoo:
    def __init__(self, settings: ZooSettings | None = None) -> None:
        self.settings = settings or ZooSettings()
        self._models: dict[str, NliModel | EmbeddingModel] = {}
        self._lock = threading.Lock()

    def model_dir(self, name: str | None = None) -> Path:
        name = name or self.settings.default_nli
        roots = ([Path(self.settings.models_dir)] if self.settings.models_dir else []) + [SHIPPED_DIR]
        for root in roots:
            if (root / name / "manifest.json").is_file():
                return root / name
        raise UnknownModelError(f"unknown model {name!r}; available: {self.available()}")

    def available(self) -> list[str]:
        roots = ([Path(self.settings.models_dir)] if self.settings.models_dir else []) + [SHIPPED_DIR]
        return sorted({p.parent.name for r in roots if r.is_dir() for p in r.glob("*/manifest.json")})

    def _open(self, cls: type[NliRuntime] | type[EmbeddingRuntime],
              directory: Path) -> tuple[NliRuntime | EmbeddingRuntime, int]:
        """A runtime on the configured device, and its batch size. `auto` falls back to the CPU when the CUDA
        provider is there but cannot start (no GPU visible); `cuda` raises DeviceUnavailableError instead."""
        device = resolve_device(self.settings.device)
        try:
            runtime = cls.from_dir(directory, threads=self.settings.intra_op_threads, device=device)
        except DeviceUnavailableError:
            if self.settings.device != "auto":
                raise
            device = "cpu"
            runtime = cls.from_dir(directory, threads=self.settings.intra_op_threads, device=device)
        size = self.settings.max_batch_size
        return runtime, size if size is not None else (GPU_BATCH_SIZE if device == "cuda" else 1)

    @property
    def device(self) -> str:
        """Where the loaded models run (`cpu` or `cuda`); the configured device before any model is loaded."""
        devices = {getattr(m.runtime, "device", "cpu") for m in self._models.values()}
        return "cuda" if "cuda" in devices else ("cpu" if devices else self.settings.device)

    def nli(self, name: str | None = None) -> NliModel:
        """Loads (once) and returns the named NLI model; the default name is the shipped model.

        Blocking (session creation takes ~1 s): call it from `load()` through `asyncio.to_thread`.
        """
        name = name or self.settings.default_nli
        with self._lock:
            model = self._models.get(name)
            if model is None:
                directory = self.model_dir(name)
                task = load_manifest(directory, verify=False).task
                if task != "nli":
                    raise UnknownModelError(f"model {name!r} is a {task} model, not an NLI model")
                runtime, batch = self._open(NliRuntime, directory)
                batcher = DynamicBatcher(runtime.predict, name=name, max_batch_size=batch,
                                         max_wait_ms=self.settings.max_wait_ms, max_queue=self.settings.max_queue)
                model = self._models[name] = NliModel(runtime, batcher, directory, self.settings.cache_size)
            if not isinstance(model, NliModel):
                raise UnknownModelError(f"model {name!r} is not an NLI model")
            return model

    def embedder(self, name: str | None = None) -> EmbeddingModel:
        """Loads (once) a sentence encoder; blocking, like `nli`."""
        name = name or DEFAULT_EMBEDDER
        with self._lock:
            model = self._models.get(name)
            if model is None:
                directory = self.model_dir(name)
                runtime, batch = self._open(EmbeddingRuntime, directory)
                batcher = DynamicBatcher(lambda pairs, rt=runtime: rt.embed([p for p, _ in pairs]), name=name,
                                         max_batch_size=batch,
                                         max_wait_ms=self.settings.max_wait_ms, max_queue=self.settings.max_queue)
                model = self._models[name] = EmbeddingModel(runtime, batcher, directory, self.settings.cache_size)
            if not isinstance(model, EmbeddingModel):
                raise UnknownModelError(f"model {name!r} is not an embedding model")
            return model

    async def load_embedder(self, name: str | None = None) -> EmbeddingModel:
        return await asyncio.to_thread(self.embedder, name)

    async def load_nli(self, name: str | None = None) -> NliModel:
        return await asyncio.to_thread(self.nli, name)

    async def warmup(self) -> None:
        """Runs every loaded model once (first-run allocations), so the first real request is not slow."""
        warm = [("The cat sat on the mat in the sun.", "A cat is sitting."), ("A short premise.", "Nothing.")]
        for model in list(self._models.values()):
            if isinstance(model, NliModel):
                await model.predict(warm)
            else:
                await model.embed([p for p, _ in warm])

    async def close(self) -> None:
        """Stops batchers; called on server shutdown."""
        for model in list(self._models.values()):
            await model.batcher.close()
        self._models.clear()
