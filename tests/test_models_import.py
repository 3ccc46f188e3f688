"""`models import`: a tiny randomly initialized HF checkpoint round-trips to ONNX (+int8) and back through the zoo.

Needs the `[train]` extra (torch, transformers, onnx); skipped with the reason when they are not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="models import needs torch: pip install '.[train]' (torch==2.13.0)")
transformers = pytest.importorskip("transformers", reason="models import needs transformers: pip install '.[train]'")
pytest.importorskip("onnx", reason="models import needs onnx: pip install '.[train]'")

from guardrail_models.importer import import_hf_checkpoint  # noqa: E402
from guardrail_models.manifest import load_manifest  # noqa: E402
from guardrail_models.runtime import NliRuntime  # noqa: E402
from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR, ModelZoo, ZooSettings  # noqa: E402

PAIRS = [("A man is playing a guitar on stage.", "A man plays music."),
         ("The Danube flows into the Black Sea.", "The river ends in the North Sea."),
         ("Two dogs run through a field.", "Animals are outside.")]
# deliberately not the canonical order: the runtime must map it back
ID2LABEL = {0: "CONTRADICTION", 1: "ENTAILMENT", 2: "NEUTRAL"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    src = tmp_path_factory.mktemp("hf") / "tiny-nli"
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(SHIPPED_DIR / DEFAULT_NLI / "tokenizer.json"), unk_token="[UNK]", sep_token="[SEP]",
        pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=3, id2label=ID2LABEL,
                        label2id={v: k for k, v in ID2LABEL.items()})
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(str(src))
    tok.save_pretrained(str(src))
    return src, model, tok


def torch_probs(model, tok) -> np.ndarray:
    feats = tok([p for p, _ in PAIRS], [h for _, h in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**feats).logits, -1).numpy()


def test_fp32_import_round_trips_exactly(checkpoint, tmp_path: Path) -> None:
    src, model, tok = checkpoint
    out = tmp_path / "tiny-fp32"
    manifest = import_hf_checkpoint(src, out, "tiny-fp32", family="bert", license="Apache-2.0", quantize=False)
    assert manifest.labels == ["CONTRADICTION", "ENTAILMENT", "NEUTRAL"]
    assert manifest.max_length == 128 and manifest.quantization == "none"
    assert load_manifest(out).onnx_sha256 == manifest.onnx_sha256
    got = NliRuntime.from_dir(out).predict(PAIRS)
    expected = torch_probs(model, tok)[:, [1, 2, 0]]  # -> (entailment, neutral, contradiction)
    np.testing.assert_allclose(got, expected, atol=1e-4)


async def test_int8_import_loads_through_the_zoo(checkpoint, tmp_path: Path) -> None:
    src, model, tok = checkpoint
    root = tmp_path / "models"
    import_hf_checkpoint(src, root / "tiny-int8", "tiny-int8", family="bert", license="Apache-2.0", quantize=True,
                         source="test checkpoint", metrics={"note": "random weights"})
    assert json.loads((root / "tiny-int8" / "manifest.json").read_text())["quantization"].startswith("dynamic-int8")
    assert not (root / "tiny-int8" / "model.fp32.onnx").exists()
    zoo = ModelZoo(ZooSettings(models_dir=root))
    assert "tiny-int8" in zoo.available() and DEFAULT_NLI in zoo.available()
    nli = await zoo.load_nli("tiny-int8")
    got = await nli.predict(PAIRS)
    expected = torch_probs(model, tok)[:, [1, 2, 0]]
    np.testing.assert_allclose(got, expected, atol=0.05)
    await zoo.close()
