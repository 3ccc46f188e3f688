"""A trainable checkpoint recovered from the shipped int8 ONNX judge scores as the ONNX file does."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="recovery needs torch: pip install '.[train]' (make test installs it)")

from guardrail_models.training.recover import check, dequantized_state, recover  # noqa: E402
from guardrail_models.training.train import backbone_dir  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "models/zoo/minilm-groundedness-v2"
PAIRS = [
    ("The Eiffel Tower is 330 metres tall.", "The Eiffel Tower is 330 metres tall."),
    ("The Eiffel Tower is 330 metres tall.", "The Eiffel Tower is 120 metres tall."),
    ("A man is playing a guitar on stage.", "A man is performing music."),
    ("A man is playing a guitar on stage.", "A woman is sleeping at home."),
    ("The museum opens at 9am and closes at 5pm.", "The museum is closed all day."),
    ("The company was founded in 1998 in Oslo.", "The company is based in Oslo."),
    ("Two dogs run through the snow.", "Animals are outside."),
    ("The river flows through Vienna and Budapest.", "The river flows through Paris."),
] * 3


def test_every_weight_is_recovered_in_hf_layout() -> None:
    state = dequantized_state(SHIPPED / "model.onnx")
    assert state["bert.encoder.layer.0.attention.self.query.weight"].shape == (384, 384)
    assert state["bert.encoder.layer.5.intermediate.dense.weight"].shape == (1536, 384)
    assert state["classifier.weight"].shape == (3, 384)
    assert not any(k.endswith(("_scale", "_zero_point", "_quantized")) for k in state)


def test_the_recovered_model_agrees_with_the_onnx_file(tmp_path: Path) -> None:
    try:
        backbone = backbone_dir("minilm")
    except ModuleNotFoundError:
        pytest.skip("the backbone package is not installed: make train-deps")
    out = recover(SHIPPED, tmp_path / "v2", backbone)
    assert (out / "recovered_from.json").is_file()
    agreement = check(SHIPPED, out, PAIRS)
    assert agreement["argmax_agreement"] >= 0.95, agreement
    assert agreement["mean_entailment_gap"] < 0.05, agreement
