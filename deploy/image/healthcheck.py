#!/usr/bin/env python3
"""Container HEALTHCHECK: exit 0 iff the gRPC health service says SERVING on the port the config names.

It reads only `server.*` from $GUARDRAIL_CONFIG and the GUARDRAIL_SERVER__* env overrides, the same precedence as
`guardrail serve`, instead of importing the full config model: that pulls in every invariant (~10 s), too slow for
a probe."""

from __future__ import annotations

import os
import sys
from typing import Any

import yaml


def server_settings(environ: dict[str, str]) -> dict[str, Any]:
    """`server:` from the config file, then GUARDRAIL_SERVER__<KEY> overrides (values parse as YAML)."""
    settings: dict[str, Any] = {}
    path = environ.get("GUARDRAIL_CONFIG")
    if path and os.path.isfile(path):
        with open(path) as fh:
            settings.update((yaml.safe_load(fh) or {}).get("server") or {})
    prefix = "GUARDRAIL_SERVER__"
    for key, raw in environ.items():
        if key.startswith(prefix) and "__" not in key[len(prefix):]:
            settings[key[len(prefix):].lower()] = yaml.safe_load(raw)
    return settings


def probe_target(settings: dict[str, Any]) -> str:
    """The plaintext health port when one is configured (TLS servers expose it for probes), else the gRPC port;
    a wildcard bind is probed on loopback."""
    port = settings.get("health_port") or settings.get("port", 50051)
    host = settings.get("health_host") or settings.get("host") or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main() -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = probe_target(server_settings(dict(os.environ)))
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    except grpc.RpcError as exc:
        print(f"{target}: {exc.code().name}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
