"""Systems under test: what a metamorphic run calls with the source and the follow-up case of every pair.

- `JudgesSUT`: our own invariants through `CheckEngine.check` (the servicer's code path); one output per invariant.
- `OpenAISUT`: an OpenAI-compatible chat endpoint, asked the case's question with its context (the request
  `guardrail eval --sampler` sends), at temperature 0 with a fixed seed.
- `CallableSUT`: a Python function `module:function` (or `path/to/file.py:function`), sync or async, taking a
  `Case` and returning a string, a mapping `{text, label, score}` or an `Output`.

A generator (the last two) sees only the question and the context; its answer is the output. Our judges see the
response too: it is part of their input.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from guardrail_server.metamorph.types import FieldName, Output
from guardrail_invariants.types import Case, Outcome

SUT_TARGET = "sut"  # the one output of a generator


class SutError(ValueError):
    """The system under test cannot be set up as given (bad spec, unimportable callable)."""


class SystemUnderTest(Protocol):
    name: str
    kind: str  # "judges" | "generator"
    input_fields: tuple[FieldName, ...]

    async def start(self) -> tuple[str, ...]:
        """Loads or connects; returns the targets (outputs) it produces."""

    def accepts(self, case: Case) -> bool: ...

    async def run(self, case: Case, targets: Sequence[str]) -> dict[str, Output]: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class JudgesSUT:
    """Our invariants under test: the very `CheckEngine.check` the gRPC servicer calls (no review sampling)."""

    kind = "judges"
    input_fields: tuple[FieldName, ...] = ("question", "context", "response")

    def __init__(self, config: Any, invariants: Sequence[str] = ()) -> None:
        from guardrail_server.engine import CheckEngine

        self.config = config
        self.engine = CheckEngine(config)
        self.requested = tuple(invariants)
        self.name = "judges"
        self.thresholds: dict[str, float] = {}

    async def start(self) -> tuple[str, ...]:
        await self.engine.load()
        enabled = {name: inv.threshold for name, inv in self.engine.invariants.items()}
        unknown = [n for n in self.requested if n not in enabled]
        if unknown:
            raise SutError(f"invariant(s) {unknown} not enabled; enabled: {sorted(enabled)}")
        names = self.requested or tuple(enabled)
        self.thresholds = {n: enabled[n] for n in names}
        return tuple(names)

    def accepts(self, case: Case) -> bool:
        return bool(case.response.strip())

    async def run(self, case: Case, targets: Sequence[str]) -> dict[str, Output]:
        from guardrail_server.validation import InputError

        try:
            result = await self.engine.check(case, list(targets), sample=False)
        except InputError as err:
            return {t: Output(error=f"{err.code}: {err}", verdict=True) for t in targets}
        out = {}
        for v in result.verdicts:
            findings = tuple({"kind": f.kind, "start": f.start, "end": f.end, "message": f.message,
                              "passage_id": f.passage_id, "score": f.score} for f in v.findings)
            out[v.invariant] = Output(
                label=v.outcome.value if v.outcome is not Outcome.ERROR else None, score=float(v.score),
                error=v.error or ("error" if v.outcome is Outcome.ERROR else ""), judge=v.judge,
                latency_s=v.latency_s, verdict=True, findings=findings)
        return out

    async def close(self) -> None:
        await self.engine.close()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "invariants": self.thresholds,
                "judges": {n: i.judge for n, i in self.engine.invariants.items() if n in self.thresholds}}


def _coerce(value: Any, latency_s: float) -> Output:
    if isinstance(value, Output):
        return value
    if isinstance(value, str):
        return Output(text=value, latency_s=latency_s)
    if isinstance(value, Mapping):
        score = value.get("score")
        return Output(text=str(value.get("text", "") or ""),
                      label=None if value.get("label") is None else str(value["label"]),
                      score=None if score is None else float(score), latency_s=latency_s)
    raise TypeError(f"a system under test must return str, a mapping or Output, got {type(value).__name__}")


def load_callable(spec: str) -> Callable[[Case], Any]:
    """`package.module:function` or `path/to/file.py:function`."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise SutError(f"--sut {spec!r}: expected MODULE:FUNCTION (or FILE.py:FUNCTION), 'judges', or an http(s) URL")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise SutError(f"--sut {spec!r}: no such file {module_name}")
            loader_spec = importlib.util.spec_from_file_location(f"metamorph_sut_{path.stem}", path)
            if loader_spec is None or loader_spec.loader is None:
                raise SutError(f"--sut {spec!r}: cannot import {module_name}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[loader_spec.name] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SutError(f"--sut {spec!r}: cannot import {module_name} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SutError(f"--sut {spec!r}: {module_name} has no callable {attr!r}")
    return fn


class CallableSUT:
    """A Python function as the system under test (a model wrapper, a RAG pipeline, a toy in a test)."""

    kind = "generator"
    input_fields: tuple[FieldName, ...] = ("question", "context")

    def __init__(self, fn: Callable[[Case], Any] | str, *, name: str | None = None) -> None:
        self.spec = fn if isinstance(fn, str) else f"{fn.__module__}:{getattr(fn, '__qualname__', fn)}"
        self.fn = load_callable(fn) if isinstance(fn, str) else fn
        self.name = name or self.spec
        self.is_async = inspect.iscoroutinefunction(self.fn)

    async def start(self) -> tuple[str, ...]:
        return (SUT_TARGET,)

    def accepts(self, case: Case) -> bool:
        return True

    async def run(self, case: Case, targets: Sequence[str]) -> dict[str, Output]:
        started = time.perf_counter()
        try:
            if self.is_async:
                value = await self.fn(case)  # type: ignore[misc]
            else:
                value = await asyncio.to_thread(self.fn, case)
            return {SUT_TARGET: _coerce(value, time.perf_counter() - started)}
        except Exception as exc:  # the system's failure is a result (an error row), not a crash of the run
            return {SUT_TARGET: Output(error=f"{type(exc).__name__}: {str(exc)[:200]}")}

    async def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "callable": self.spec}


class OpenAISUT:
    """An OpenAI-compatible chat endpoint (vLLM, Ollama, a hosted API, the application's own proxy)."""

    kind = "generator"
    input_fields: tuple[FieldName, ...] = ("question", "context")

    def __init__(self, endpoint: str, model: str, *, api_key_env: str | None = None, temperature: float = 0.0,
                 seed: int = 0, timeout_s: float = 60.0, retries: int = 2, max_tokens: int | None = 512,
                 system_prompt: str | None = None) -> None:
        from guardrail_server.llm_sampler import SYSTEM_PROMPT
        from guardrail_invariants.judges.openai_client import ChatClient

        if not model:
            raise SutError("an endpoint under test needs --sut-model (the model id it serves)")
        self.client = ChatClient(endpoint, model, api_key_env=api_key_env, timeout_s=timeout_s, retries=retries)
        self.endpoint, self.model = endpoint, model
        self.temperature, self.seed, self.max_tokens = temperature, seed, max_tokens
        self.system_prompt = system_prompt or SYSTEM_PROMPT
        self.name = f"{endpoint}#{model}"

    async def start(self) -> tuple[str, ...]:
        return (SUT_TARGET,)

    def accepts(self, case: Case) -> bool:
        return bool(case.question.strip())  # the request is the question (with its context)

    async def run(self, case: Case, targets: Sequence[str]) -> dict[str, Output]:
        from guardrail_server.llm_sampler import messages_for
        from guardrail_invariants.judges.openai_client import ChatError

        started = time.perf_counter()
        try:
            text = await self.client.complete(messages_for(case, self.system_prompt), temperature=self.temperature,
                                              max_tokens=self.max_tokens, seed=self.seed)
        except (ChatError, ValueError) as exc:
            return {SUT_TARGET: Output(error=str(exc)[:300])}
        return {SUT_TARGET: Output(text=text.strip(), latency_s=time.perf_counter() - started, judge=self.model)}

    async def close(self) -> None:
        await self.client.aclose()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": self.endpoint, "model": self.model, "temperature": self.temperature,
                "seed": self.seed}


def build_sut(spec: str, *, config: Any = None, invariants: Sequence[str] = (), model: str | None = None,
              api_key_env: str | None = None) -> SystemUnderTest:
    """`judges` (default), an http(s) URL (with `model`), or `module:function`."""
    if spec == "judges":
        return JudgesSUT(config, invariants)
    if invariants:
        raise SutError("--invariant selects our judges; it does not apply to an external system under test")
    if spec.startswith(("http://", "https://")):
        return OpenAISUT(spec, model or "", api_key_env=api_key_env)
    return CallableSUT(spec)


Runner = Callable[[Case, Sequence[str]], Awaitable[dict[str, Output]]]
