"""The metrics a deployment's dashboards and alerts rely on, read from a real `guardrail serve` process's /metrics:
build info, per-invariant thresholds, series that exist at 0 before any traffic, and the bounded `app` label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from guardrail_server import metrics
from guardrail_server.client import GuardrailClient
from guardrail_server.config import ConfigError, load_config
from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
OUTCOMES = ("pass", "fail", "error", "skipped")


def samples(body: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(body) for s in fam.samples]


def value(body: str, name: str, **labels: str) -> float | None:
    """The one sample with exactly these labels (None when the series does not exist)."""
    found = [v for n, lab, v in samples(body) if n == name and lab == labels]
    assert len(found) <= 1
    return found[0] if found else None


def wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited with {proc.returncode}"
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{target} not SERVING after {timeout}s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`guardrail serve` (reference_integrity only: no model to load) with an app allow-list and a changed
    threshold; yields (gRPC target, metrics URL)."""
    tmp = tmp_path_factory.mktemp("served")
    port, metrics_port = free_port(), free_port()
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "metrics_port": metrics_port},
        "review": {"enabled": False},
        "metrics": {"apps": ["billing", "search"]},
        "invariants": {"reference_integrity": {"threshold": 0.75}, "entailment": {"enabled": False},
                       "pii_boundary": {"enabled": False}, "self_consistency": {"enabled": False}},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    proc = subprocess.Popen([sys.executable, "-m", "guardrail_server.cli", "serve", "--config", str(cfg)],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "wb"))
    try:
        wait_serving(f"127.0.0.1:{port}", proc)
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        proc.terminate()
        proc.wait(30)


def test_build_info_names_version_and_model_sha(served: tuple[str, str]) -> None:
    body = httpx.get(served[1]).text
    manifest = json.loads((SHIPPED_DIR / DEFAULT_NLI / "manifest.json").read_text())
    from importlib.metadata import version

    assert value(body, "guardrail_build_info", version=version("guardrail-sidecar"), model=DEFAULT_NLI,
                 model_sha256=manifest["onnx_sha256"]) == 1.0


def test_threshold_gauge_follows_config(served: tuple[str, str]) -> None:
    body = httpx.get(served[1]).text
    assert value(body, "guardrail_invariant_threshold", invariant="reference_integrity") == 0.75
    assert value(body, "guardrail_invariant_threshold", invariant="entailment") is None  # not enabled here


def test_series_exist_at_zero_before_traffic(served: tuple[str, str]) -> None:
    """Read before any Check of this module: every invariant x outcome x app series, every decision, shed and
    fail-open reason is already exported (at 0), so ratio panels never show "No data"."""
    body = httpx.get(served[1]).text
    for outcome in OUTCOMES:
        for app in ("billing", "search", "other", "unset"):
            assert value(body, "guardrail_checks_total", invariant="reference_integrity", outcome=outcome,
                         app=app) == 0.0
    for decision in ("allow", "flag", "block"):
        assert value(body, "guardrail_decisions_total", decision=decision, app="other") == 0.0
    for reason in metrics.SHED_REASONS:
        assert value(body, "guardrail_shed_total", kind="unary", reason=reason) is not None
    for reason in metrics.FAIL_OPEN_REASONS:
        assert value(body, "guardrail_fail_open_total", invariant="reference_integrity", reason=reason) is not None
    assert value(body, "guardrail_judge_disagreements_total", invariant="reference_integrity") == 0.0


def test_app_label_is_bounded_by_the_allow_list(served: tuple[str, str]) -> None:
    target, url = served
    before = httpx.get(url).text
    bad = "It opened in 1887 [7]."  # cites a passage that does not exist: reference_integrity fails
    with GuardrailClient(target) as guard:
        guard.check(bad, context=[{"id": "1", "text": "The tower opened in 1889."}], app="billing")
        for i in range(3):  # three distinct unlisted apps: one `other` series, not three new ones
            guard.check(bad, context=[{"id": "1", "text": "x"}], app=f"caller-{i}")
        guard.check("No citations here.", context=[{"id": "1", "text": "x"}])
    after = httpx.get(url).text

    def moved(**labels: str) -> float:
        return (value(after, "guardrail_checks_total", **labels) or 0.0) - (
            value(before, "guardrail_checks_total", **labels) or 0.0)

    assert moved(invariant="reference_integrity", outcome="fail", app="billing") == 1
    assert moved(invariant="reference_integrity", outcome="fail", app="other") == 3
    assert moved(invariant="reference_integrity", outcome="pass", app="unset") == 1
    apps = {lab.get("app") for n, lab, _ in samples(after) if n == "guardrail_checks_total"}
    assert apps == {"billing", "search", "other", "unset"}
    decided = {lab["app"]: v for n, lab, v in samples(after) if n == "guardrail_decisions_total" and lab["decision"] == "flag"}
    assert decided["billing"] >= 1 and decided["other"] >= 3


def test_app_label_mapping() -> None:
    assert metrics.app_label("billing", ["billing"]) == "billing"
    assert metrics.app_label("Billing", ["billing"]) == "other"
    assert metrics.app_label("", ["billing"]) == "unset"


@pytest.mark.parametrize("apps, message", [
    (["ok", "other"], "reserved"),
    (["has space"], "not a valid app name"),
    (["a", "a"], "duplicate"),
    ([f"app{i}" for i in range(101)], "at most 100"),
])
def test_app_allow_list_is_validated_naming_the_key(apps: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"metrics\.apps.*{message}"):
        load_config(None, environ={}, overrides=[("metrics.apps", apps)])
