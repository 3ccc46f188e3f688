"""The container image, built and run for real with Debian's podman: it builds without network inside the build
(deploy/image/build.sh on a base made by mmdebstrap), runs non-root on a read-only root filesystem, reports SERVING,
answers one Check, passes its own HEALTHCHECK and exits 0 within the grace period on SIGTERM.

Cached outside the repo (GUARDRAIL_DEPLOY_CACHE, default ~/.cache/guardrail-deploy): the Debian base tarball, the
dependency wheels (keyed by the pinned dependency list) and podman's layers. Warm, a run rebuilds only our wheel and the
last layers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_server.client import GuardrailClient
from tests.conftest import free_port
from tests.helm_support import (
    CHART,
    CHECKOUT_KEY,
    TOKEN,
    assert_secure_release,
    lay_out_pod,
    render,
    secure_secrets,
    secure_values,
    wait_health,
)

REPO = Path(__file__).resolve().parent.parent
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]  # crun cannot run in this cgroup layout
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]  # raising rlimits is not permitted here
BASE = "localhost/guardrail-base:bookworm"
TAG = "localhost/guardrail-sidecar:test"
GRACE_S = 10.0  # server.grace_period_s in deploy/image/config.yaml


def _podman_usable() -> str | None:
    """None when podman can build and run here, else the reason it cannot."""
    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (`make deploy-deps` installs podman, runc and mmdebstrap)"
    probe = subprocess.run([*PODMAN, "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"podman cannot run here: {probe.stderr.strip()[:300]}"
    return None


pytestmark = [
    pytest.mark.skipif(_podman_usable() is not None, reason=str(_podman_usable())),
    # a cold machine builds the Debian base, every dependency wheel and the layers first (minutes); warm is ~1 minute
    pytest.mark.timeout(1800),
]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """Builds the image (base from Debian packages, wheels from the host) and reports build time and size."""
    env = {**os.environ, "PODMAN": " ".join(PODMAN), "PYTHON": sys.executable}
    started = time.monotonic()
    subprocess.run([str(REPO / "deploy/image/debian-base.sh")], env=env, check=True, capture_output=True, timeout=900)
    base_s = time.monotonic() - started
    env.update(ENGINE="podman", ENGINE_FLAGS=" ".join(PODMAN[1:]), TAG=TAG, BASE_IMAGE=BASE,
               BUILD_STAGE_TAG=f"{TAG}-build", BUILD_FLAGS=" ".join(["--network", "host", *LIMITS]))
    build = subprocess.run([str(REPO / "deploy/image/build.sh")], env=env, capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    for title in ("guardrail-sidecar", "guardrail-sidecar-build"):  # earlier runs' images (~1 GB each), not the cache
        podman("image", "prune", "--force", "--filter", f"label=org.opencontainers.image.title={title}", check=False)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", TAG).stdout.strip())
    print(f"\nimage {TAG}: base {base_s:.0f} s, build {time.monotonic() - started - base_s:.0f} s, "
          f"size {size / 1e6:.0f} MB")
    yield TAG


def wait_serving(target: str, name: str, timeout: float = 300.0) -> float:
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout:
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", f"container {state}: {podman('logs', name, check=False).stderr[-3000:]}"
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            except grpc.RpcError:
                pass
            time.sleep(1)
    raise TimeoutError(f"not SERVING after {timeout} s: {podman('logs', name, check=False).stderr[-3000:]}")


def test_image_metadata(image: str) -> None:
    """Non-root, SIGTERM, a HEALTHCHECK, the gRPC and metrics ports (docker format keeps all of them)."""
    fmt = "{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck.Test}}|{{json .Config.ExposedPorts}}"
    user, stop, health, ports = podman("image", "inspect", "--format", fmt, image).stdout.strip().split("|")
    assert user == "10001:10001"
    assert stop == "SIGTERM"
    assert "guardrail-healthcheck" in health
    assert "50051/tcp" in ports and "9464/tcp" in ports


def test_container_serves_a_check_and_drains_on_sigterm(image: str, tmp_path: Path) -> None:
    data = tmp_path / "data"  # the volume a pod gets as an emptyDir; the root filesystem stays read-only
    data.mkdir()
    os.chown(data, 10001, 10001)
    port, metrics_port = free_port(), free_port()
    name = f"guardrail-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, *LIMITS, "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "-v", f"{data}:/var/lib/guardrail", "-e", f"GUARDRAIL_SERVER__PORT={port}",
           "-e", f"GUARDRAIL_SERVER__METRICS_PORT={metrics_port}", image)
    try:
        ready_s = wait_serving(f"127.0.0.1:{port}", name)
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("healthcheck", "run", name, check=False).returncode == 0  # the image's own HEALTHCHECK

        with GuardrailClient(f"127.0.0.1:{port}", timeout=60) as guard:
            reply = guard.check("The tower is 330 m tall [1]. It opened in 1887 [2].",
                                question="How tall is the Eiffel Tower?",
                                context=[{"id": "1", "text": "The Eiffel Tower is 330 metres tall."}])
        outcomes = {r.invariant: r.outcome for r in reply.results}
        assert set(outcomes) == {"reference_integrity", "entailment", "pii_boundary", "self_consistency"}
        assert outcomes["reference_integrity"] == pb.FAIL  # [2] cites no passage
        assert reply.decision == pb.FLAG  # the default policy flags, never blocks

        body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'guardrail_build_info{model="minilm-groundedness' in body
        assert (data / "review.db").exists()  # the review store lives on the volume, not the read-only root

        started = time.monotonic()
        podman("kill", "--signal", "TERM", name)
        code = int(podman("wait", name, timeout=GRACE_S + 30).stdout.strip())
        took = time.monotonic() - started
        print(f"\nSERVING after {ready_s:.1f} s; SIGTERM -> exit {code} in {took:.1f} s")
        assert code == 0
        assert took < GRACE_S
        assert '"stopped"' in podman("logs", name).stderr
    finally:
        podman("rm", "-f", name, check=False)


def test_container_serves_the_charts_tls_and_auth_release(image: str, tmp_path: Path) -> None:
    """The Helm chart's output in the image, mounted where the pod mounts it: the ConfigMap at /etc/guardrail, the TLS
    Secret at /etc/guardrail-tls, the auth Secret at /etc/guardrail-auth (mode 0440, group 10001: the chart's
    defaultMode and fsGroup), emptyDirs for data and /tmp; read-only root. mTLS, a token and an API key work; the
    kubelet's plaintext health port answers; the image's own HEALTHCHECK finds that port in the rendered config."""
    sys.path.insert(0, str(REPO / "deploy" / "tools"))
    from helm_bin import helm_path

    ports = free_port(), free_port(), free_port()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(secure_values(*ports)))
    docs = render(str(helm_path()), CHART, "--values", str(values))
    secrets, (ca, client) = secure_secrets(tmp_path / "certs")
    files = lay_out_pod(docs, tmp_path / "pod", secrets)
    volumes = []
    for mount, host in files.mounts.items():
        volumes += ["-v", f"{host}:{mount}" + (":ro" if mount.startswith("/etc/") else "")]
    name = f"guardrail-chart-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, *LIMITS, "--network", "host", "--read-only", *volumes, image)

    def alive() -> None:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"container {state}: {podman('logs', name, check=False).stderr[-3000:]}"

    try:
        wait_health(f"127.0.0.1:{ports[2]}", alive)
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        assert_secure_release(ports[0], ca, client)
        logs = podman("logs", name).stderr
        assert '"tls": true' in logs and '"mtls": true' in logs and '"auth": "tokens+api_keys"' in logs
        assert TOKEN not in logs and CHECKOUT_KEY not in logs
    finally:
        podman("rm", "-f", name, check=False)


def _documented_podman_run() -> str:
    """The `podman ... run` line of README's "Image" section for machines like this one, continuation lines joined."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("make image IMAGE_BASE=localhost/guardrail-base:bookworm"):]
    block = block[:block.index("```")].replace("\\\n", " ")
    (line,) = [line for line in block.splitlines() if " run -d " in line]
    return line


def test_the_documented_podman_run_works_and_publishes_on_loopback_only(image: str) -> None:
    """README's podman command, as written (image tag, names and host ports substituted): the flags these machines need
    (runc, cgroupfs, fixed rlimits), a named volume the non-root user can write, gRPC and metrics published on 127.0.0.1
    only — another address of this host is refused — the HEALTHCHECK, and a clean stop."""
    import shlex
    import socket

    port, metrics_port = free_port(), free_port()
    name, volume = f"guardrail-doc-{uuid.uuid4().hex[:8]}", f"guardrail-doc-{uuid.uuid4().hex[:8]}"
    line = _documented_podman_run()
    for old, new in (("guardrail-sidecar:dev", image), ("--name guardrail ", f"--name {name} "),
                     ("guardrail-data:", f"{volume}:"), ("127.0.0.1:50051:", f"127.0.0.1:{port}:"),
                     ("127.0.0.1:9464:", f"127.0.0.1:{metrics_port}:")):
        assert line.count(old) == 1, (old, line)
        line = line.replace(old, new)
    argv = shlex.split(line)
    assert argv[:3] == PODMAN[:3] and argv[3:5] == [PODMAN[3], "run"], argv  # the flags this machine needs
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    try:
        wait_serving(f"127.0.0.1:{port}", name)
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 200
        others = [a for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
                  if ":" not in a and not a.startswith("127.")]
        for address in others:  # published on loopback only
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(3)
                s.connect((address, port))
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        assert podman("exec", name, "test", "-s", "/var/lib/guardrail/review.db").returncode == 0  # volume writable
        podman("stop", name, timeout=60)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        podman("rm", "-f", name, check=False)
        podman("volume", "rm", "-f", volume, check=False)
