"""Channel security, credentials and retries for the clients.

- `TLS`: server verification against a CA file (or the system roots), optional client certificate for mTLS, optional
  server-name override (a sidecar reached as `localhost` whose certificate names the service).
- `token`: sent as `authorization: Bearer <token>` on every call; a server token or an app's API key alike.
- `RetryPolicy`: off by default (`max_attempts=1`). When enabled, RESOURCE_EXHAUSTED (the server shedding load) and
  UNAVAILABLE (not listening yet, restarting) are retried with capped exponential backoff and full jitter, within the
  call's deadline — never past it. A server may steer this with `grpc-retry-pushback-ms` trailing metadata (wait that
  long; negative = do not retry). A RESOURCE_EXHAUSTED that is about the request itself (an input limit: the message
  starts with the field name, or a message over the transport size limit) is not retried: it would fail again.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

Metadata = tuple[tuple[str, str], ...]

# An input-limit refusal names the field first ("response: 40000 characters exceeds ...", "context[3].text: ...").
_FIELD_ERROR = re.compile(r"^[a-z_]+(\[[^\]]*\])?(\.[a-z_]+(\[[^\]]*\])?)*: ")


@dataclass(frozen=True)
class TLS:
    """Client-side TLS. Paths are read when the client is created. `ca_file=None` trusts the system roots."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TLS: give cert_file and key_file together (client certificate for mTLS)")

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def resolve_tls(tls: TLS | bool | None) -> TLS | None:
    if tls is True:
        return TLS()
    return tls or None


def auth_metadata(token: str | None, extra: Sequence[tuple[str, str]] = ()) -> Metadata:
    """The per-call metadata: the bearer credential (if any) plus the caller's own entries."""
    if token is not None:
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise ValueError("token must be non-empty and contain no whitespace")
        return (("authorization", f"Bearer {token}"), *tuple(extra))
    return tuple(extra)


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first try: 1 = no retries (the default), 3 = up to two retries."""

    max_attempts: int = 1
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0
    retry_on: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy: backoffs must be >= 0 and multiplier >= 1")

    def backoff(self, attempt: int) -> float:
        """Full-jitter backoff before retry number `attempt` (1-based): spreads a herd of shed clients apart."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return random.uniform(0, cap)

    def next_delay(self, err: grpc.RpcError, attempt: int) -> float | None:
        """Seconds to wait before retrying after failed attempt number `attempt`, or None: do not retry.
        A server pushback (`grpc-retry-pushback-ms` trailing metadata, the gRPC retry convention) wins: its delay, or
        no retry when negative."""
        if attempt >= self.max_attempts:
            return None
        code = err.code() if hasattr(err, "code") else None
        if code not in self.retry_on:
            return None
        pushback = _pushback_ms(err)
        if pushback is not None:
            return None if pushback < 0 else pushback / 1000
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            details = (err.details() if hasattr(err, "details") else "") or ""
            if _FIELD_ERROR.match(details) or "larger than max" in details:
                return None
        return self.backoff(attempt)


def _pushback_ms(err: grpc.RpcError) -> int | None:
    try:
        trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    except Exception:  # a call that never reached the server may have no metadata to give
        return None
    for key, value in trailing or ():
        if key == "grpc-retry-pushback-ms":
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


NO_RETRY = RetryPolicy()


# gRPC health (grpc.health.v1) without the grpcio-health-checking dependency: the two messages are one field each.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1


def encode_health_request(service: str) -> bytes:
    data = service.encode("utf-8")
    if not data:
        return b""
    length = len(data)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x0a" + bytes(varint) + data


def decode_health_status(data: bytes) -> int:
    """`HealthCheckResponse.status` (field 1, varint); 0 (UNKNOWN) when absent."""
    i = 0
    status = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x07 != 0:  # only varints are expected in this message
            break
        value, shift = 0, 0
        while i < len(data):
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if tag >> 3 == 1:
            status = value
    return status
