"""Rendering the chart and laying out what its pod would see, for tests that start the guardrail with the chart's own
output: the ConfigMap's config.yaml, each Secret volume's keys as files, the emptyDirs — at host paths, as a kubelet
would mount them. tests/test_helm.py starts `guardrail serve` on them (paths rewritten), tests/test_image.py mounts them
into the image at the chart's paths."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "guardrail-sidecar"
GUARD_UID = 10001  # the image's user and group (the pod's fsGroup)

Doc = dict[str, Any]


def render(helm: str, chart: Path, *args: str) -> list[Doc]:
    out = subprocess.run([helm, "template", "rel", str(chart), "--namespace", "ns", *args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_fails(helm: str, *args: str) -> str:
    """stderr of a `helm template` that must fail."""
    out = subprocess.run([helm, "template", "rel", str(CHART), *args], capture_output=True, text=True)
    assert out.returncode != 0, out.stdout[:2000]
    return out.stderr


def config_map(docs: list[Doc]) -> Doc:
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"))


def rendered_config(docs: list[Doc]) -> dict[str, Any]:
    return yaml.safe_load(config_map(docs)["data"]["config.yaml"])


def guard_container(docs: list[Doc]) -> tuple[Doc, Doc]:
    """(the guardrail container, its pod spec) of the standalone Deployment."""
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "guardrail"), pod


@dataclass
class PodFiles:
    """mountPath -> host directory, and the config file the container reads."""

    mounts: dict[str, Path]
    config: Path

    def host_config(self, directory: Path) -> Path:
        """The rendered config with every mount path replaced by its host directory (for `guardrail serve` run
        directly, outside a container)."""
        mounts = sorted(self.mounts, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(m) for m in mounts) + r")(?=/|\s|$)", re.M)
        text = pattern.sub(lambda m: str(self.mounts[m.group(1)]), self.config.read_text())
        out = directory / "host-config.yaml"
        out.write_text(text)
        return out


def lay_out_pod(docs: list[Doc], root: Path, secrets: dict[str, dict[str, bytes]]) -> PodFiles:
    """Writes what the kubelet would mount into the guardrail container: ConfigMap keys, Secret keys (`secrets`:
    name -> key -> bytes; mode 0440, group GUARD_UID, as the chart's defaultMode and fsGroup give), emptyDirs owned by
    GUARD_UID."""
    container, pod = guard_container(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    mounts: dict[str, Path] = {}
    for m in container["volumeMounts"]:
        volume = volumes[m["name"]]
        host = root / m["name"]
        host.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, value in config_maps[volume["configMap"]["name"]]["data"].items():
                (host / key).write_text(value)
                (host / key).chmod(0o644)
        elif "secret" in volume:
            for key, value in secrets[volume["secret"]["secretName"]].items():
                (host / key).write_bytes(value)
                os.chown(host / key, 0, GUARD_UID)
                (host / key).chmod(0o440)
        elif "emptyDir" in volume:
            os.chown(host, GUARD_UID, GUARD_UID)
        else:
            raise AssertionError(f"volume type of {volume} not laid out")
        mounts[m["mountPath"]] = host
    return PodFiles(mounts, mounts["/etc/guardrail"] / "config.yaml")


# --- a release with TLS, mTLS, a token and an API key, and what a caller sees of it ----------------------------------

TOKEN = "tok-" + "c0ffee42" * 4
CHECKOUT_KEY = "key-checkout-" + "7e57ab1e" * 4


def secure_values(grpc_port: int, metrics_port: int, health_port: int) -> dict[str, Any]:
    """Chart values: mTLS from one Secret, a token and an app's API key from another, reference_integrity only (no
    model to load, so the server is SERVING in seconds)."""
    return {
        "ports": {"grpc": grpc_port, "metrics": metrics_port, "health": health_port},
        "tls": {"enabled": True, "secretName": "guardrail-tls", "clientCAKey": "ca.crt"},
        "auth": {"existingSecret": "guardrail-auth", "tokenKeys": ["token"], "apiKeys": {"checkout": "checkout"}},
        "config": {
            "workers": {"mode": "inline"},
            "invariants": {"reference_integrity": {"on_fail": "block"}, "entailment": {"enabled": False},
                           "pii_boundary": {"enabled": False}, "self_consistency": {"enabled": False}},
        },
    }


def secure_secrets(certs_dir: Path) -> tuple[dict[str, dict[str, bytes]], Any]:
    """The two Secrets' contents (a cert-manager-style TLS Secret, an auth Secret) and the client pair."""
    from tests.certs import CA

    certs_dir.mkdir(parents=True, exist_ok=True)
    ca = CA(certs_dir, "chart")
    server = ca.issue("guardrail", stem="server")
    client = ca.issue("app-checkout", client=True)
    secrets = {
        "guardrail-tls": {"tls.crt": server.cert.read_bytes(), "tls.key": server.key.read_bytes(),
                          "ca.crt": ca.pem.read_bytes()},
        "guardrail-auth": {"token": (TOKEN + "\n").encode(), "checkout": CHECKOUT_KEY.encode()},
    }
    return secrets, (ca, client)


def wait_health(target: str, alive: Any, timeout: float = 300.0) -> float:
    """Seconds until plaintext gRPC health at `target` says SERVING; `alive()` raises if the server died."""
    import time

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout:
            alive()
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise TimeoutError(f"{target} not SERVING after {timeout} s")


def assert_secure_release(grpc_port: int, ca: Any, client: Any) -> None:
    """What the values promise, seen by callers: plaintext refused, mTLS required, a credential required, a token
    admits any app, an API key pins its app."""
    import grpc
    import pytest

    from guardrail_client import TLS, Decision, GuardrailClient

    target = f"localhost:{grpc_port}"
    mtls = TLS(ca_file=str(ca.pem), cert_file=str(client.cert), key_file=str(client.key))
    case = {"response": "The tower is 330 m tall [2].", "context": [{"id": "1", "text": "The tower is 330 m."}]}
    with GuardrailClient(target, timeout=10) as plain, pytest.raises(grpc.RpcError) as info:
        plain.check(**case)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # no plaintext on the gRPC port
    with GuardrailClient(target, timeout=10, tls=TLS(ca_file=str(ca.pem)), token=TOKEN) as no_cert, \
            pytest.raises(grpc.RpcError) as info:
        no_cert.check(**case)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # mTLS: no client certificate, no handshake
    with GuardrailClient(target, timeout=10, tls=mtls) as anonymous, pytest.raises(grpc.RpcError) as info:
        anonymous.check(**case)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with GuardrailClient(target, timeout=10, tls=mtls, token=TOKEN) as operator:
        assert operator.check(**case, app="anything").decision is Decision.BLOCK  # [2] cites no passage
    with GuardrailClient(target, timeout=10, tls=mtls, token=CHECKOUT_KEY) as checkout:
        assert checkout.check(**case, app="checkout").decision is Decision.BLOCK
        with pytest.raises(grpc.RpcError) as info:
            checkout.check(**case, app="search")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
