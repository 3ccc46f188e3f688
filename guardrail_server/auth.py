"""Authentication of gRPC calls: the interceptor that enforces the `server.auth` config section (its models,
`AuthConfig` and `Secret`, are data in `guardrail_server.config`).

Callers send `authorization: Bearer <credential>` metadata. A credential is either
- a **token** (`server.auth.tokens`): admits the call for any `app`; the request's `app` stays what the caller says, or
- an **API key** of one app (`server.auth.api_keys.<app>`): pins the call to that app. A request with an empty `app` is
  stamped with the key's app; a request naming another app is refused with PERMISSION_DENIED. So with API keys the
  `app` in logs, metrics and the review store is authenticated, not self-declared.

A missing, malformed or unknown credential is UNAUTHENTICATED, with one log line (method, peer, reason; never the
credential) and `guardrail_requests_rejected_total{code="UNAUTHENTICATED"}`.

gRPC health (`grpc.health.v1.Health/*`) stays open: Kubernetes gRPC probes cannot send metadata, and health answers
only SERVING/NOT_SERVING. Reflection and ListInvariants need a credential like Check (grpcurl: `-H 'authorization:
Bearer …'`).

Secrets come inline, from an environment variable or from a file (a mounted Kubernetes secret), are resolved once at
start-up, are never logged and print as `**********` in `guardrail config`. Presented credentials are compared as
SHA-256 digests with `hmac.compare_digest` against every configured secret (no early exit), so neither a secret's
content nor which secret matched leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import grpc

from guardrail_server import metrics
from guardrail_server.config import AuthConfig, Secret  # noqa: F401 - re-exported: the models live with the config
from guardrail_server.logs import get_logger

log = get_logger("guardrail.auth")

MAX_CREDENTIAL_BYTES = 4096
OPEN_SERVICES = ("/grpc.health.v1.Health/",)
PINNED_SERVICE = "/guardrail.v1.GuardrailService/"  # its requests carry `app`


Reason = Literal["missing", "malformed", "invalid", "app_mismatch"]


@dataclass(frozen=True)
class Principal:
    """Who the call is: `app` is set when an API key authenticated it (the call is pinned to that app)."""

    kind: Literal["token", "api_key"]
    app: str | None


class Authenticator:
    """Checks one `authorization` metadata value against the configured secrets in constant time."""

    def __init__(self, config: AuthConfig) -> None:
        entries: list[tuple[bytes, Principal]] = [
            (hashlib.sha256(s.reveal()).digest(), Principal("token", None)) for s in config.tokens
        ]
        for app, keys in config.api_keys.items():
            entries += [(hashlib.sha256(s.reveal()).digest(), Principal("api_key", app)) for s in keys]
        self._entries = entries

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal | Reason:
        values = [v for k, v in (metadata or ()) if k == "authorization"]
        if not values:
            return "missing"
        if len(values) > 1:
            return "malformed"
        value = values[0]
        raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
        scheme, _, credential = raw.partition(b" ")
        credential = credential.strip()
        if scheme.lower() != b"bearer" or not credential or len(credential) > MAX_CREDENTIAL_BYTES:
            return "malformed"
        digest = hashlib.sha256(credential).digest()
        found: Principal | None = None
        for expected, principal in self._entries:  # every entry is compared: no early exit
            if hmac.compare_digest(digest, expected):
                found = principal
        return found if found is not None else "invalid"


class _LogLimiter:
    """At most `per_second` auth-failure lines; the next line after a burst says how many were suppressed, so a
    credential-stuffing flood cannot flood the logs."""

    def __init__(self, per_second: float = 10.0) -> None:
        self.per_second = per_second
        self.allowance = per_second
        self.last = time.monotonic()
        self.suppressed = 0

    def allow(self) -> int | None:
        now = time.monotonic()
        self.allowance = min(self.per_second, self.allowance + (now - self.last) * self.per_second)
        self.last = now
        if self.allowance < 1.0:
            self.suppressed += 1
            return None
        self.allowance -= 1.0
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed


_STATUS: dict[Reason, grpc.StatusCode] = {
    "missing": grpc.StatusCode.UNAUTHENTICATED,
    "malformed": grpc.StatusCode.UNAUTHENTICATED,
    "invalid": grpc.StatusCode.UNAUTHENTICATED,
    "app_mismatch": grpc.StatusCode.PERMISSION_DENIED,
}
_DETAILS: dict[Reason, str] = {
    "missing": "missing credential: send metadata 'authorization: Bearer <token or API key>'",
    "malformed": "malformed credential: expected one 'authorization: Bearer <token or API key>'",
    "invalid": "invalid credential",
    "app_mismatch": "app: this API key is not valid for the requested app",
}


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses unauthenticated calls before the servicer (and before the request is even parsed); pins `app` for calls
    authenticated by an API key. Health checking is left open (see the module docstring)."""

    def __init__(self, config: AuthConfig) -> None:
        self.authenticator = Authenticator(config)
        self._limiter = _LogLimiter()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        outcome = self.authenticator.authenticate(handler_call_details.invocation_metadata)
        if isinstance(outcome, str):
            return self._deny(handler, method, outcome)
        if outcome.app is not None:
            return self._pin_app(handler, method, outcome.app)
        return handler

    def _refuse(self, method: str, reason: Reason, peer: str) -> tuple[grpc.StatusCode, str]:
        code = _STATUS[reason]
        metrics.REJECTED.labels(code.name).inc()
        suppressed = self._limiter.allow()
        if suppressed is not None:
            log.warning("auth_failed", method=method, reason=reason, code=code.name, peer=peer,
                        **({"suppressed": suppressed} if suppressed else {}))
        return code, _DETAILS[reason]

    def _deny(self, handler: grpc.RpcMethodHandler, method: str, reason: Reason) -> grpc.RpcMethodHandler:
        """A handler of the same shape that aborts. The request is not deserialized (raw bytes are ignored)."""

        async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
            code, details = self._refuse(method, reason, context.peer())
            await context.abort(code, details)

        kind = _kind(handler)
        return handler._replace(request_deserializer=None, **{kind: deny})  # type: ignore[attr-defined]

    def _pin_app(self, handler: grpc.RpcMethodHandler, method: str, app: str) -> grpc.RpcMethodHandler:
        """Wraps the behaviour so each request's `app` is the key's app (set when empty, refused when different)."""
        interceptor = self

        def pinned(request: Any) -> bool:
            if hasattr(request, "WhichOneof") and "start" in request.DESCRIPTOR.fields_by_name:
                # CheckGeneration: the first chunk carries the request (and its app); deltas carry none
                if request.WhichOneof("chunk") != "start":
                    return True
                request = request.start
            if not hasattr(request, "app"):  # ListInvariants; or an undecodable message, refused by the servicer
                return True
            if request.app == "":
                request.app = app
            return request.app == app

        kind = _kind(handler)
        behaviour = getattr(handler, kind)
        if not method.startswith(PINNED_SERVICE):
            return handler
        # The servicer's behaviours are awaited or iterated as whatever they turn out to be at call time (coroutine,
        # async generator, a decorated function): pinning must not silently drop out if the servicer changes shape.
        if kind == "unary_unary":

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if not pinned(request):
                    await context.abort(*interceptor._refuse(method, "app_mismatch", context.peer()))
                result = behaviour(request, context)
                return await result if inspect.isawaitable(result) else result

            return handler._replace(unary_unary=unary)  # type: ignore[attr-defined]
        if kind == "stream_stream":

            async def stream(request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                async def checked() -> AsyncIterator[Any]:
                    async for request in request_iterator:
                        if not pinned(request):
                            await context.abort(*interceptor._refuse(method, "app_mismatch", context.peer()))
                        yield request

                result = behaviour(checked(), context)
                if hasattr(result, "__aiter__"):
                    async for reply in result:
                        yield reply
                elif inspect.isawaitable(result):  # the writer form: replies go out through context.write
                    await result
                else:
                    for reply in result:
                        yield reply

            return handler._replace(stream_stream=stream)  # type: ignore[attr-defined]
        raise RuntimeError(f"{method}: a {kind} method in {PINNED_SERVICE} cannot be pinned to an app; refusing to serve "
                           "it unpinned")


def _kind(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "stream_stream"
    if handler.request_streaming:
        return "stream_unary"
    if handler.response_streaming:
        return "unary_stream"
    return "unary_unary"
