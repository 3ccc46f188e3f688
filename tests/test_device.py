"""`models.device` (issue 20, item 3): cpu | cuda | auto, chosen and checked on a machine without a GPU.

The CUDA path itself needs onnxruntime-gpu and a GPU (the -gpu image); here the selection logic is proved: auto runs on
the CPU, cuda without the CUDA execution provider (or with it but no usable GPU) refuses to start with one line naming
the key, and the batch size follows the device unless configured."""

from __future__ import annotations

import subprocess
import sys

import pytest

from guardrail_models import runtime
from guardrail_models.runtime import DeviceUnavailableError, open_session, resolve_device
from guardrail_models.zoo import GPU_BATCH_SIZE, SHIPPED_DIR, ModelZoo, ZooSettings
from guardrail_server.config import ConfigError, load_config, zoo_settings

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
EMBEDDER = SHIPPED_DIR / "minilm-l6-embed"


def test_selection_logic() -> None:
    assert resolve_device("cpu", WITH_CUDA) == "cpu"
    assert resolve_device("auto", CPU_ONLY) == "cpu"
    assert resolve_device("auto", WITH_CUDA) == "cuda"
    assert resolve_device("cuda", WITH_CUDA) == "cuda"
    with pytest.raises(DeviceUnavailableError, match=r"^models\.device: cuda requested.*onnxruntime-gpu"):
        resolve_device("cuda", CPU_ONLY)
    with pytest.raises(DeviceUnavailableError, match=r"^models\.device: 'gpu' is not one of"):
        resolve_device("gpu", WITH_CUDA)


def test_this_machine_runs_auto_on_the_cpu() -> None:
    assert "CUDAExecutionProvider" not in runtime.available_providers()  # the CPU onnxruntime package
    assert resolve_device("auto") == "cpu"
    zoo = ModelZoo(ZooSettings(device="auto", intra_op_threads=1))
    model = zoo.embedder()
    assert model.runtime.device == "cpu" and zoo.device == "cpu"
    assert model.runtime.session.get_providers() == ["CPUExecutionProvider"]
    assert model.batcher.max_batch_size == 1  # the CPU default: every pair alone, scores reproducible


def test_a_cuda_session_that_cannot_start_is_an_error_never_a_silent_cpu_session() -> None:
    """What a GPU image on a node without a visible GPU would do: the provider is asked for and does not start."""
    with pytest.raises(DeviceUnavailableError, match=r"^models\.device: cuda: .*could not start"):
        open_session(EMBEDDER / "model.onnx", 1, "cuda")


def test_auto_falls_back_to_the_cpu_when_the_cuda_provider_is_installed_but_cannot_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "available_providers", lambda: WITH_CUDA)  # as onnxruntime-gpu reports, GPU or not
    auto = ModelZoo(ZooSettings(device="auto", intra_op_threads=1)).embedder()
    assert auto.runtime.device == "cpu" and auto.batcher.max_batch_size == 1
    with pytest.raises(DeviceUnavailableError, match=r"^models\.device: cuda"):
        ModelZoo(ZooSettings(device="cuda", intra_op_threads=1)).embedder()


def test_the_batch_size_follows_the_device_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = runtime.open_session

    def fake_open(onnx_path, threads=0, device="cpu"):  # what a GPU would give: a session labelled cuda
        opened.append(device)
        return real_open(onnx_path, threads, "cpu")

    monkeypatch.setattr(runtime, "available_providers", lambda: WITH_CUDA)
    monkeypatch.setattr(runtime, "open_session", fake_open)
    cuda = ModelZoo(ZooSettings(device="cuda", intra_op_threads=1)).embedder()
    assert opened == ["cuda"] and cuda.runtime.device == "cuda"
    assert cuda.batcher.max_batch_size == GPU_BATCH_SIZE  # pairs of a check share GPU calls
    pinned = ModelZoo(ZooSettings(device="cuda", intra_op_threads=1, max_batch_size=4)).embedder()
    assert pinned.batcher.max_batch_size == 4


def test_config_validates_the_key_and_passes_it_to_the_zoo() -> None:
    config = load_config(None, environ={})
    assert config.models.device == "auto" and config.models.max_batch_size is None
    assert zoo_settings(config).device == "auto"
    assert zoo_settings(load_config(None, environ={}, overrides=[("models.device", "cuda")])).device == "cuda"
    with pytest.raises(ConfigError, match=r"models\.device"):
        load_config(None, environ={}, overrides=[("models.device", "gpu")])
    with pytest.raises(ConfigError, match=r"models\.max_batch_size"):
        load_config(None, environ={}, overrides=[("models.max_batch_size", 0)])
    env = load_config(None, environ={"GUARDRAIL_MODELS__DEVICE": "cpu"})
    assert env.models.device == "cpu"


def test_serve_with_cuda_and_no_cuda_provider_exits_2_naming_the_key(tmp_path) -> None:
    """Before any worker or model starts: one line, exit 2 (a configuration the machine cannot run)."""
    out = subprocess.run([sys.executable, "-m", "guardrail_server.cli", "serve", "--port", "0",
                          "--set", "models.device=cuda", "--set", "server.metrics_port=null",
                          "--set", "review.enabled=false"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if ln.startswith("guardrail serve:")]
    assert line.startswith("guardrail serve: models.device: cuda requested") and "onnxruntime-gpu" in line
    assert "Traceback" not in out.stderr


def test_the_gpu_image_installs_the_gpu_build_of_the_same_onnxruntime() -> None:
    """deploy/image/build.sh GPU=1 (the -gpu image): onnxruntime-gpu with its CUDA and cuDNN wheels, the pinned
    version, nothing else changed; the Dockerfile takes the variant as a build argument."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = root / "deploy" / "image" / "build.sh"

    def requirements(**env: str) -> list[str]:
        import os

        env = {**os.environ, "PYTHON": sys.executable, "PRINT_REQUIREMENTS": "1", **env}
        out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60, check=True)
        return out.stdout.split()

    cpu, gpu = requirements(), requirements(GPU="1")
    (pinned,) = [r for r in cpu if r.startswith("onnxruntime==")]
    version = pinned.split("==")[1]
    assert f"onnxruntime-gpu[cuda,cudnn]=={version}" in gpu and pinned not in gpu
    assert sorted(r for r in cpu if r != pinned) == sorted(r for r in gpu if not r.startswith("onnxruntime-gpu"))
    dockerfile = (root / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in dockerfile and 'io.guardrail.variant="${VARIANT}"' in dockerfile
