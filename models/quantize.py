"""Int8 quantization of an exported NLI model: dynamic (weights only) or static (weights + calibrated activations).

Why static exists: dynamic quantization computes each activation's scale at run time over the *whole batch*
tensor, so a pair's scores shift with its batch-mates (seen here: up to 0.42 in P(entailment) beside a long pair).
Static quantization fixes the activation scales from calibration data once, so a pair scores the same alone or
batched (it cost 3-4 SNLI points here, so the shipped model is dynamic and runs one pair per call). Only the weight
MatMuls/Gemms are quantized (the attention products of two activations stay float: quantizing them costs accuracy for
little speed). Needs `onnx` (the `[train]` extra): a build step, never run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def quantize_dynamic_int8(src: Path, dst: Path) -> None:
    """MatMul/Gemm weights to int8, one scale per output channel; activations quantized at run time.

    Measured on the shipped MiniLM (SNLI test, 1,002 pairs; `bench.entailment` variants): per-tensor weights with the
    embedding table quantized too cost 1.8 points vs fp32 (23 MB), per-channel with the embeddings 1.2 points,
    per-channel MatMul/Gemm only 0.5 points at ~2x fp32 speed (59 MB: the 30k x 384 embedding table stays float).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"])


def weight_matmuls(model_path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes with a constant (weight) input."""
    import onnx

    model = onnx.load(str(model_path))
    weights = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and any(i in weights for i in n.input)]


class _PairReader:
    """Feeds tokenized calibration pairs to the calibrator, a few at a time."""

    def __init__(self, encode: Any, pairs: Sequence[tuple[str, str]], input_names: Sequence[str], batch: int = 8):
        self.batches: Iterator[dict[str, np.ndarray]] = (
            {k: v for k, v in encode(pairs[i:i + batch]).items() if k in input_names}
            for i in range(0, len(pairs), batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)

    def rewind(self) -> None:  # pragma: no cover - the calibrator reads once
        raise NotImplementedError


def quantize_static_int8(src: Path, dst: Path, tokenizer_json: Path, calibration_pairs: Sequence[tuple[str, str]],
                         max_length: int = 192, percentile: float = 99.999) -> None:
    """Static int8 (QDQ, per-channel weights, percentile-calibrated activations) of the weight MatMuls only."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=max_length, strategy="only_first")
    tok.enable_padding(length=max_length)  # the percentile calibrator stacks batches: one shape for all

    def encode(pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        enc = tok.encode_batch(list(pairs))
        return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    inputs = [i.name for i in ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"]).get_inputs()]
    try:
        quantize_static(
            str(pre), str(dst), _PairReader(encode, calibration_pairs, inputs), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_quantize=weight_matmuls(pre),
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": percentile, "ActivationSymmetric": False, "WeightSymmetric": True})
    finally:
        pre.unlink(missing_ok=True)
