"""Converts a local Hugging Face sequence-classification NLI checkpoint into a zoo model (ONNX [+int8] + manifest).

Needs the `[train]` extra (torch, transformers, onnx); they are imported lazily so the run time never needs them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardrail_models.manifest import ModelManifest, canonical_label, sha256_file
from guardrail_models.quantize import quantize_dynamic_int8


def _labels_from_config(config: Any) -> list[str]:
    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    labels = [id2label[i] for i in sorted(id2label)]
    if len(labels) != 3:
        raise ValueError(f"expected a 3-way NLI head, the checkpoint has {len(labels)} labels: {labels}")
    for label in labels:
        canonical_label(label)
    return labels


def export_onnx(model: Any, tokenizer: Any, path: Path, opset: int = 17) -> list[str]:
    """Exports logits with dynamic batch and sequence axes; returns the input names used."""
    import torch

    model = model.eval()
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    sample = tokenizer(["a premise sentence here", "another"], ["a hypothesis", "one more hypothesis"],
                       return_tensors="pt", padding=True)
    args = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}

    class _Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: Any) -> Any:
            return self.inner(**dict(zip(names, tensors, strict=True))).logits

    with torch.no_grad():
        torch.onnx.export(_Logits(model), args, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    return names


def _write_tokenizer(src_dir: Path, tokenizer: Any, out_dir: Path) -> None:
    src = src_dir / "tokenizer.json"
    if src.is_file():
        shutil.copyfile(src, out_dir / "tokenizer.json")
        return
    tmp = out_dir / "_tok"
    tokenizer.save_pretrained(str(tmp))
    shutil.copyfile(tmp / "tokenizer.json", out_dir / "tokenizer.json")
    shutil.rmtree(tmp)


def import_hf_checkpoint(
    src_dir: Path | str,
    out_dir: Path | str,
    name: str,
    family: str,
    license: str,
    quantize: bool = True,
    *,
    source: str = "",
    labels: Sequence[str] | None = None,
    max_length: int | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    keep_fp32: bool = False,
) -> ModelManifest:
    """Local HF checkpoint dir -> `out_dir/{model.onnx, tokenizer.json, manifest.json}`.

    `labels` overrides the checkpoint's id2label (needed when it only says LABEL_0..2). With `quantize`, model.onnx
    is the dynamic-int8 file; `keep_fp32` also keeps the float export as model.fp32.onnx (for benchmarks).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(src_dir), use_fast=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(src_dir))
    label_list = list(labels) if labels else _labels_from_config(model.config)
    fp32 = out_dir / "model.fp32.onnx"
    export_onnx(model, tokenizer, fp32)
    final = out_dir / "model.onnx"
    if quantize:
        quantize_dynamic_int8(fp32, final)
        if not keep_fp32:
            fp32.unlink()
    else:
        fp32.replace(final)
    _write_tokenizer(src_dir, tokenizer, out_dir)
    limit = max_length or min(int(getattr(model.config, "max_position_embeddings", 512) or 512), 512)
    manifest = ModelManifest(
        name=name,
        family=family,
        architecture=str((getattr(model.config, "architectures", None) or [type(model).__name__])[0]),
        source=source or str(src_dir),
        license=license,
        labels=label_list,
        max_length=limit,
        onnx_file=final.name,
        onnx_sha256=sha256_file(final),
        tokenizer_file="tokenizer.json",
        quantization="dynamic-int8-per-channel (MatMul/Gemm weights)" if quantize else "none",
        training=training or {},
        metrics=metrics or {},
    )
    manifest.write(out_dir)
    return manifest


def read_manifest_json(out_dir: Path | str) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))
