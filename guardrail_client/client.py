"""`GuardrailClient` (blocking) and `AsyncGuardrailClient` (asyncio): the same surface, over guardrail.v1.

Results are `CheckResult`s (see `results`): `print(reply.decision)` prints ALLOW / FLAG / BLOCK. Failed calls raise
`grpc.RpcError` (`grpc.aio.AioRpcError` on the async client) with the server's status code and message, as the stubs
would. Every unary call has a deadline (`timeout`, per client or per call); retries (off by default) stay inside it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import grpc

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from guardrail_client.generation import GenerationEvent, event_from_pb, generation_chunks
from guardrail_client.results import CheckResult
from guardrail_client.transport import (
    HEALTH_CHECK,
    NO_RETRY,
    SERVING,
    TLS,
    RetryPolicy,
    auth_metadata,
    decode_health_status,
    encode_health_request,
    resolve_tls,
)

T = TypeVar("T")


class PassageAttrs(Protocol):
    id: str
    text: str


PassageLike = str | Mapping[str, str] | PassageAttrs
RequestLike = pb.CheckRequest | Mapping[str, Any]


def _enum_value(field: Any, value: Any) -> Any:
    """An enum field accepts its number, its proto name (`SENSITIVITY_PRIVATE`) or the short name (`private`)."""
    if not isinstance(value, str):
        return value
    values = field.enum_type.values_by_name
    if value in values:
        return values[value].number
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", field.enum_type.name).upper()
    full = f"{prefix}_{value.upper()}"
    if full in values:
        return values[full].number
    raise ValueError(f"{field.name}: {value!r} is not one of {sorted(values)}")


def _passage(p: PassageLike, index: int) -> pb.Passage:
    if isinstance(p, str):
        return pb.Passage(id=str(index), text=p)
    if isinstance(p, Mapping):
        fields = pb.Passage.DESCRIPTOR.fields_by_name
        unknown = sorted(set(p) - set(fields))
        if unknown:  # a typo (`titel`) must not silently drop data
            raise ValueError(f"context[{index - 1}]: unknown passage field(s) {unknown}; known: {sorted(fields)}")
        kwargs = {k: (_enum_value(fields[k], v) if fields[k].enum_type is not None else v)
                  for k, v in p.items() if v is not None}
        kwargs["id"] = str(kwargs.get("id", "") or "")
        return pb.Passage(**kwargs)
    return pb.Passage(id=p.id, text=p.text, title=getattr(p, "title", "") or "", url=getattr(p, "url", "") or "")


def build_request(
    response: str,
    *,
    question: str = "",
    context: Sequence[PassageLike] = (),
    samples: Sequence[str] = (),
    invariants: Iterable[str] = (),
    request_id: str = "",
    app: str = "",
    metadata: Mapping[str, str] | None = None,
) -> pb.CheckRequest:
    """A `CheckRequest`. Passages may be strings (id = 1-based position), dicts or objects with id/text[/title/url]."""
    return pb.CheckRequest(
        request_id=request_id,
        app=app,
        question=question,
        context=[_passage(p, i) for i, p in enumerate(context, start=1)],
        response=response,
        samples=list(samples),
        invariants=list(invariants),
        metadata=dict(metadata or {}),
    )


def _as_request(item: RequestLike) -> pb.CheckRequest:
    if isinstance(item, pb.CheckRequest):
        return item
    kwargs = dict(item)
    return build_request(kwargs.pop("response"), **kwargs)


class _Base:
    def __init__(
        self,
        target: str,
        *,
        timeout: float,
        tls: TLS | bool | None,
        token: str | None,
        retry: RetryPolicy | None,
        metadata: Sequence[tuple[str, str]],
        options: Sequence[tuple[str, Any]],
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.target = target
        self.timeout = timeout
        self.retry = retry or NO_RETRY
        self._tls = resolve_tls(tls)
        self._metadata = auth_metadata(token, metadata)
        self._options = [*(self._tls.options() if self._tls else []), *options]

    def _budget(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout


class GuardrailClient(_Base):
    """Blocking client; thread-safe (one channel, many threads). Use as a context manager or call `close()`.

    `tls`: None/False = plaintext, True = TLS with the system roots, `TLS(...)` = CA file, client cert (mTLS), server
    name. `token`: bearer token or the app's API key. `timeout`: default deadline in seconds for unary calls.
    `retry`: `RetryPolicy(max_attempts=3)` to retry overload/unavailable; off by default.
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        timeout: float = 10.0,
        tls: TLS | bool | None = None,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
    ) -> None:
        super().__init__(target, timeout=timeout, tls=tls, token=token, retry=retry, metadata=metadata,
                         options=options)
        if channel is None:
            if self._tls is not None:
                channel = grpc.secure_channel(target, self._tls.credentials(), options=self._options)
            else:
                channel = grpc.insecure_channel(target, options=self._options)
        self._channel = channel
        self._stub = pb_grpc.GuardrailServiceStub(channel)
        self._health = channel.unary_unary(HEALTH_CHECK, request_serializer=None, response_deserializer=None)

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        deadline = time.monotonic() + self._budget(timeout)
        attempt = 1
        while True:
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 0.001), metadata=self._metadata)
            except grpc.RpcError as err:
                pause = self.retry.next_delay(err, attempt)
                if pause is None or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
                attempt += 1

    def check(self, response: str, *, timeout: float | None = None, **kwargs: Any) -> CheckResult:
        """Checks one response. kwargs: question, context, samples, invariants, request_id, app, metadata."""
        return CheckResult.from_pb(self._call(self._stub.Check, build_request(response, **kwargs), timeout))

    def check_request(self, request: pb.CheckRequest, *, timeout: float | None = None) -> CheckResult:
        return CheckResult.from_pb(self._call(self._stub.Check, request, timeout))

    def check_stream(self, requests: Iterable[RequestLike], *, timeout: float | None = None) -> Iterator[CheckResult]:
        """Many requests over one `CheckStream`; results come as they finish (match them by `request_id`). A refused
        request is a result with `error_code`, not an exception. `timeout` bounds the whole stream (default none).
        Not retried: replies already received cannot be taken back."""
        call = self._stub.CheckStream((_as_request(r) for r in requests), timeout=timeout, metadata=self._metadata)
        for reply in call:
            yield CheckResult.from_pb(reply)

    def check_generation(self, chunks: Iterable[str], *, timeout: float | None = None, **kwargs: Any
                         ) -> Iterator[GenerationEvent]:
        """Checks a response while it is being generated (CheckGeneration). `chunks`: its text deltas as the model
        produces them, cut anywhere (an iterator that blocks until the next token is fine: it is read in gRPC's
        thread). Yields the server's events as they come (see `guardrail_client.generation`): GenerationStarted,
        then a SentenceResult per sentence as it ends and LeakResults as personal data appears, then one
        GenerationResult — the final verdict, equal to `check` on the full text, or `cut` by a BLOCK (stop
        generating). kwargs: question, context, samples, invariants, request_id, app, metadata. `timeout` bounds the
        whole stream (default: the server's streaming.max_duration_s). Not retried; stop iterating to cancel."""
        start = build_request("", **kwargs)
        accepted = threading.Event()

        def requests() -> Iterator[pb.GenerationChunk]:
            # the text goes out only once the server has accepted the stream (its first reply): a refused stream
            # (auth, limits, overload) then ends with its own status, not a write racing the refusal
            chunks_out = generation_chunks(start, chunks)
            yield next(chunks_out)
            accepted.wait()
            if not call.done():
                yield from chunks_out

        call = self._stub.CheckGeneration(requests(), timeout=timeout, metadata=self._metadata)
        try:
            for reply in call:
                accepted.set()
                yield event_from_pb(reply)
        finally:
            accepted.set()
            call.cancel()  # a no-op once the call has ended

    def list_invariants(self, *, timeout: float | None = None) -> pb.ListInvariantsResponse:
        return self._call(self._stub.ListInvariants, pb.ListInvariantsRequest(), timeout)

    def health(self, service: str = "", *, timeout: float | None = None) -> bool:
        """True when gRPC health reports SERVING (the server is warm). Sends no credential: health is open."""
        raw = self._health(encode_health_request(service), timeout=self._budget(timeout))
        return decode_health_status(raw) == SERVING

    def wait_until_serving(self, timeout_s: float = 60.0, service: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.health(service, timeout=1.0):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.target} did not report SERVING within {timeout_s:.0f}s")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GuardrailClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGuardrailClient(_Base):
    """asyncio client with the same surface as `GuardrailClient`. Create it inside the event loop that uses it (a
    grpc.aio channel belongs to one loop)."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        timeout: float = 10.0,
        tls: TLS | bool | None = None,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(target, timeout=timeout, tls=tls, token=token, retry=retry, metadata=metadata,
                         options=options)
        if self._tls is not None:
            self._channel = grpc.aio.secure_channel(target, self._tls.credentials(), options=self._options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=self._options)
        self._stub = pb_grpc.GuardrailServiceStub(self._channel)
        self._health = self._channel.unary_unary(HEALTH_CHECK, request_serializer=None, response_deserializer=None)

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._budget(timeout)
        attempt = 1
        while True:
            remaining = deadline - loop.time()
            try:
                return await method(request, timeout=max(remaining, 0.001), metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                pause = self.retry.next_delay(err, attempt)
                if pause is None or loop.time() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
                attempt += 1

    async def check(self, response: str, *, timeout: float | None = None, **kwargs: Any) -> CheckResult:
        """Checks one response. kwargs: question, context, samples, invariants, request_id, app, metadata."""
        return CheckResult.from_pb(await self._call(self._stub.Check, build_request(response, **kwargs), timeout))

    async def check_request(self, request: pb.CheckRequest, *, timeout: float | None = None) -> CheckResult:
        return CheckResult.from_pb(await self._call(self._stub.Check, request, timeout))

    async def check_stream(
        self, requests: AsyncIterable[RequestLike] | Iterable[RequestLike], *, timeout: float | None = None
    ) -> AsyncIterator[CheckResult]:
        """Many requests over one `CheckStream` (sync or async iterable of requests or kwargs dicts); results come as
        they finish, matched by `request_id`; a refused request is a result with `error_code`. Not retried."""

        async def outgoing() -> AsyncIterator[pb.CheckRequest]:
            if isinstance(requests, AsyncIterable):
                async for item in requests:
                    yield _as_request(item)
            else:
                for item in requests:
                    yield _as_request(item)

        call = self._stub.CheckStream(outgoing(), timeout=timeout, metadata=self._metadata)
        async for reply in call:
            yield CheckResult.from_pb(reply)

    async def check_generation(
        self, chunks: AsyncIterable[str] | Iterable[str], *, timeout: float | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationEvent]:
        """`GuardrailClient.check_generation` for asyncio: `chunks` may be an async iterable of text deltas (an LLM
        stream) or a plain one."""
        start = build_request("", **kwargs)
        accepted = asyncio.Event()

        async def outgoing() -> AsyncIterator[pb.GenerationChunk]:
            yield pb.GenerationChunk(start=start)
            await accepted.wait()  # see GuardrailClient.check_generation
            if call.done():
                return
            if isinstance(chunks, AsyncIterable):
                async for delta in chunks:
                    if delta:
                        yield pb.GenerationChunk(delta=delta)
            else:
                for delta in chunks:
                    if delta:
                        yield pb.GenerationChunk(delta=delta)
            yield pb.GenerationChunk(close=pb.GenerationClose())

        call = self._stub.CheckGeneration(outgoing(), timeout=timeout, metadata=self._metadata)
        try:
            async for reply in call:
                accepted.set()
                yield event_from_pb(reply)
        finally:
            accepted.set()
            call.cancel()

    async def list_invariants(self, *, timeout: float | None = None) -> pb.ListInvariantsResponse:
        return await self._call(self._stub.ListInvariants, pb.ListInvariantsRequest(), timeout)

    async def health(self, service: str = "", *, timeout: float | None = None) -> bool:
        raw = await self._health(encode_health_request(service), timeout=self._budget(timeout))
        return decode_health_status(raw) == SERVING

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until the channel is connected (not necessarily SERVING: see `wait_until_serving`)."""
        await asyncio.wait_for(self._channel.channel_ready(), timeout)

    async def wait_until_serving(self, timeout_s: float = 60.0, service: str = "") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            try:
                if await self.health(service, timeout=1.0):
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.target} did not report SERVING within {timeout_s:.0f}s")

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncGuardrailClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def wait_until_serving(
    target: str, timeout_s: float = 60.0, service: str = "", *, tls: TLS | bool | None = None
) -> None:
    """Polls gRPC health until the server reports SERVING (it does so only once its invariants are warm)."""
    async with AsyncGuardrailClient(target, tls=tls) as client:
        await client.wait_until_serving(timeout_s, service)
