"""ONNX Runtime NLI cross-encoder: HF `tokenizers` + onnxruntime, no torch at run time.

Always returns probabilities in canonical column order (entailment, neutral, contradiction), whatever label order
the model was trained with, so callers never deal with per-model label layouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_models.canonical import NORMALIZERS
from guardrail_models.manifest import ModelManifest, load_manifest


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's instruction-set flags (empty where /proc/cpuinfo is not readable)."""
    try:
        return set(Path(cpuinfo).read_text().split())
    except OSError:
        return set()


def int8_kernels(cpuinfo: str = "/proc/cpuinfo") -> str:
    """Which family of int8 kernels onnxruntime runs here: `vnni` (AVX512-VNNI, AVX-VNNI or AMX dot products) or
    `no-vnni` (AVX2: u8 x s8 products summed through VPMADDUBSW, which saturates int16). The same int8 model gives
    slightly different scores on the two, so measured figures say which one they were measured on."""
    return "vnni" if cpu_flags(cpuinfo) & {"avx512_vnni", "avx_vnni", "amx_int8"} else "no-vnni"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


DEVICES = ("cpu", "cuda", "auto")
CUDA_PROVIDER = "CUDAExecutionProvider"


class DeviceUnavailableError(RuntimeError):
    """The configured `models.device` cannot be used here; the message names the key and what to do."""


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (the CPU package: no CUDA; onnxruntime-gpu: CUDA too)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_device(requested: str, providers: Sequence[str] | None = None) -> str:
    """`models.device` -> the device the sessions run on, `cpu` or `cuda`.

    cpu: always the CPU. cuda: onnxruntime's CUDA execution provider, or DeviceUnavailableError when this build has
    none (the CPU `onnxruntime` package: install `onnxruntime-gpu`, i.e. use the -gpu image). auto: cuda when the
    provider is there, else cpu. A build with the provider on a machine without a usable GPU is found out when the
    sessions open (`open_session`): an error for cuda, the CPU for auto."""
    if requested not in DEVICES:
        raise DeviceUnavailableError(f"models.device: {requested!r} is not one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    has_cuda = CUDA_PROVIDER in (available_providers() if providers is None else providers)
    if requested == "cuda" and not has_cuda:
        found = ", ".join(available_providers() if providers is None else providers) or "none"
        raise DeviceUnavailableError(
            "models.device: cuda requested, but this onnxruntime has no CUDAExecutionProvider (providers: "
            f"{found}); install onnxruntime-gpu (the -gpu image, deploy/image/build.sh GPU=1) or set models.device "
            "to cpu or auto")
    return "cuda" if has_cuda else "cpu"


def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu finds CUDA and cuDNN installed from PyPI (nvidia-* wheels, the -gpu image) only once they are
    loaded (onnxruntime >= 1.21: `preload_dlls`); a system CUDA on the library path needs nothing."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - a system installation may still work; open_session says if it does not
            pass


def open_session(onnx_path: Path, threads: int = 0, device: str = "cpu") -> Any:
    """An onnxruntime session with every graph optimization; `threads` > 0 pins intra-op threads (one inter-op).
    `device` is a resolved device (`resolve_device`): `cuda` runs on the CUDA execution provider (nodes it has no
    kernel for fall back to the CPU), and fails with DeviceUnavailableError when the provider cannot start (no GPU
    visible, a driver or CUDA library missing) — never a silent fall back to the CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if device != "cuda":
        return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    _preload_cuda_libraries()
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                       providers=[CUDA_PROVIDER, "CPUExecutionProvider"])
    except Exception as exc:
        raise DeviceUnavailableError(f"models.device: cuda: the CUDA execution provider failed to open "
                                     f"{onnx_path.name}: {type(exc).__name__}: {str(exc)[:300]}") from None
    if CUDA_PROVIDER not in session.get_providers():
        raise DeviceUnavailableError(
            "models.device: cuda: onnxruntime could not start its CUDA execution provider here (no GPU visible, or "
            "the NVIDIA driver or a CUDA/cuDNN library missing); set models.device to cpu or auto")
    return session


class NliRuntime:
    """One ONNX session + tokenizer. `predict` is synchronous and thread-safe (onnxruntime sessions are)."""

    def __init__(self, manifest: ModelManifest, onnx_path: Path, tokenizer_path: Path, threads: int = 0,
                 max_length: int | None = None, device: str = "cpu") -> None:
        from tokenizers import Tokenizer

        self.manifest = manifest
        self.device = device
        self.max_length = min(max_length or manifest.max_length, manifest.max_length)
        self.session = open_session(onnx_path, threads, device)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        pad_id = self.tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            pad_id = self.tokenizer.token_to_id("<pad>") or 0
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self.tokenizer.id_to_token(pad_id) or "[PAD]")
        self._order = manifest.column_order()
        self._normalize = NORMALIZERS[manifest.input_normalization] if manifest.input_normalization else None

    @classmethod
    def from_dir(cls, directory: Path | str, threads: int = 0, *, onnx_path: Path | None = None,
                 max_length: int | None = None, device: str = "cpu") -> NliRuntime:
        """Loads `<dir>/manifest.json` (sha256-checked unless another ONNX file is given explicitly, e.g. fp32)."""
        directory = Path(directory)
        manifest = load_manifest(directory, verify=onnx_path is None)
        return cls(manifest, Path(onnx_path) if onnx_path else directory / manifest.onnx_file,
                   directory / manifest.tokenizer_file, threads, max_length, device)

    def encode(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        norm = self._normalize
        encs = self.tokenizer.encode_batch([(norm(p), norm(h)) if norm else (p, h) for p, h in pairs])
        feeds = {"input_ids": np.asarray([e.ids for e in encs], dtype=np.int64),
                 "attention_mask": np.asarray([e.attention_mask for e in encs], dtype=np.int64),
                 "token_type_ids": np.asarray([e.type_ids for e in encs], dtype=np.int64)}
        return {k: v for k, v in feeds.items() if k in self.input_names}

    def token_count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(premise, hypothesis) pairs -> [n, 3] probabilities (entailment, neutral, contradiction)."""
        if not pairs:
            return np.zeros((0, 3), dtype=np.float32)
        (logits,) = self.session.run(["logits"] if "logits" in self._outputs() else None, self.encode(pairs))
        return softmax(np.asarray(logits, dtype=np.float32))[:, self._order]

    def _outputs(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]


class EmbeddingRuntime:
    """Sentence encoder: mean-pooled, L2-normalized last hidden state (sentence-transformers convention)."""

    def __init__(self, manifest: ModelManifest, onnx_path: Path, tokenizer_path: Path, threads: int = 0,
                 device: str = "cpu") -> None:
        from tokenizers import Tokenizer

        self.manifest = manifest
        self.device = device
        self.session = open_session(onnx_path, threads, device)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(manifest.max_length)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0)

    @classmethod
    def from_dir(cls, directory: Path | str, threads: int = 0, *, device: str = "cpu") -> EmbeddingRuntime:
        directory = Path(directory)
        manifest = load_manifest(directory)
        return cls(manifest, directory / manifest.onnx_file, directory / manifest.tokenizer_file, threads, device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        encs = self.tokenizer.encode_batch(list(texts))
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": np.asarray([e.ids for e in encs], dtype=np.int64), "attention_mask": mask,
                 "token_type_ids": np.asarray([e.type_ids for e in encs], dtype=np.int64)}
        (hidden,) = self.session.run(None, {k: v for k, v in feeds.items() if k in self.input_names})
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
