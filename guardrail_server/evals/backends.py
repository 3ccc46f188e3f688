"""Where cases run: in this process through `CheckEngine` (the servicer's own code path, its model batcher filled
by many concurrent cases), or through a running server over `CheckStream` (the production path end to end).
The Ray backend lives in `ray_engine.py`. Every backend yields `CaseResult`s in completion order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.config import Config
from guardrail_server.convert import decision_from_pb, request_from_case, verdict_from_pb
from guardrail_server.engine import CheckEngine
from guardrail_server.evals.datasets import EvalCase
from guardrail_server.evals.results import CaseResult
from guardrail_server.validation import InputError

Work = Sequence[tuple[EvalCase, tuple[str, ...]]]

_STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class Backend(Protocol):
    name: str

    async def start(self) -> dict[str, float]:
        """Loads or connects; returns the enabled invariants and their thresholds."""

    def run(self, work: Work) -> AsyncIterator[CaseResult]: ...

    async def close(self) -> None: ...


def input_error(code: str, message: str) -> str:
    return f"{code}: {message}"


async def run_bounded(work: Work, concurrency: int,
                      one: Callable[[EvalCase, tuple[str, ...]], Awaitable[CaseResult]]) -> AsyncIterator[CaseResult]:
    """Keeps `concurrency` cases in flight and yields each as it completes; cancels the rest when closed early."""
    it = iter(work)
    pending: set[asyncio.Task[CaseResult]] = set()

    def fill() -> None:
        while len(pending) < concurrency:
            nxt = next(it, None)
            if nxt is None:
                return
            pending.add(asyncio.ensure_future(one(*nxt)))

    fill()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.discard(task)
                yield task.result()
            fill()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


class LocalBackend:
    """In-process: the very `CheckEngine.check` the servicer calls (no review sampling)."""

    name = "local"

    def __init__(self, config: Config, concurrency: int = 16) -> None:
        self.engine = CheckEngine(config)
        self.concurrency = concurrency

    async def start(self) -> dict[str, float]:
        await self.engine.load()
        return {name: inv.threshold for name, inv in self.engine.invariants.items()}

    async def _one(self, item: EvalCase, names: tuple[str, ...]) -> CaseResult:
        try:
            result = await self.engine.check(item.case, names, sample=False)
        except InputError as err:
            return CaseResult(item, error=input_error(err.code, str(err)))
        return CaseResult(item, tuple(result.verdicts), result.decision.value)

    def run(self, work: Work) -> AsyncIterator[CaseResult]:
        return run_bounded(work, self.concurrency, self._one)

    async def close(self) -> None:
        await self.engine.close()


class RemoteBackend:
    """Through a running server: one `CheckStream` with a window of `concurrency` requests in flight."""

    name = "remote"

    def __init__(self, target: str, concurrency: int = 16, *, connect_timeout_s: float = 30.0) -> None:
        self.target = target
        self.client: Any = None
        self.concurrency = concurrency
        self.connect_timeout_s = connect_timeout_s

    async def start(self) -> dict[str, float]:
        from guardrail_server.client import AsyncGuardrailClient

        self.client = AsyncGuardrailClient(self.target)  # grpc.aio channels belong to the running loop
        await self.client.wait_ready(self.connect_timeout_s)
        listed = await self.client.list_invariants()
        return {i.name: i.threshold for i in listed.invariants if i.enabled}

    async def run(self, work: Work) -> AsyncIterator[CaseResult]:
        window = asyncio.Semaphore(self.concurrency)
        in_flight: dict[str, EvalCase] = {}

        async def requests() -> AsyncIterator[pb.CheckRequest]:
            for item, names in work:
                await window.acquire()
                in_flight[item.id] = item
                yield request_from_case(item.case, names)

        async for reply in self.client.check_stream(requests()):
            item = in_flight.pop(reply.request_id)
            window.release()
            if reply.error_code:
                code = _STATUS_NAMES.get(reply.error_code, str(reply.error_code))
                yield CaseResult(item, error=input_error(code, reply.error_message))
            else:
                verdicts = tuple(verdict_from_pb(r) for r in reply.raw.results)  # the client's CheckResult keeps the message
                yield CaseResult(item, verdicts, decision_from_pb(reply.decision).value)
        if in_flight:
            raise RuntimeError(f"server closed the stream with {len(in_flight)} case(s) unanswered")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
