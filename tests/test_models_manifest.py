"""Manifests: the shipped model verifies; a tampered ONNX file is refused; label order is honoured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from guardrail_models.manifest import CANONICAL_LABELS, ManifestError, ModelManifest, load_manifest
from guardrail_models.runtime import NliRuntime
from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR, ModelZoo, UnknownModelError, ZooSettings

SHIPPED = SHIPPED_DIR / DEFAULT_NLI


def test_shipped_model_has_a_complete_verified_manifest() -> None:
    m = load_manifest(SHIPPED)
    assert m.name == DEFAULT_NLI and m.license and m.source and m.family
    assert [x.lower() for x in m.labels] == list(CANONICAL_LABELS)
    assert m.quantization.startswith("dynamic-int8")
    assert m.training.get("seed") is not None and m.training.get("data")
    assert (SHIPPED / m.onnx_file).stat().st_size < 70_000_000  # int8 weights; fp32 would be 91 MB


@pytest.fixture()
def copy_of_shipped(tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(SHIPPED, dst)
    return dst


def test_sha256_mismatch_refuses_to_load(copy_of_shipped: Path) -> None:
    onnx = copy_of_shipped / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(copy_of_shipped)
    with pytest.raises(ManifestError, match="refusing to load"):
        NliRuntime.from_dir(copy_of_shipped)


def test_zoo_refuses_a_tampered_imported_model(copy_of_shipped: Path) -> None:
    manifest = json.loads((copy_of_shipped / "manifest.json").read_text())
    manifest["onnx_sha256"] = "0" * 64
    (copy_of_shipped / "manifest.json").write_text(json.dumps(manifest))
    zoo = ModelZoo(ZooSettings(models_dir=copy_of_shipped.parent))
    with pytest.raises(ManifestError, match="sha256"):
        zoo.nli("copy")
    with pytest.raises(UnknownModelError, match="available"):
        zoo.nli("no-such-model")


def test_label_order_is_mapped_to_canonical_columns(copy_of_shipped: Path) -> None:
    pairs = [("A dog runs across the grass in a park.", "An animal is outside."),
             ("A dog runs across the grass in a park.", "A cat sleeps on the sofa.")]
    canonical = NliRuntime.from_dir(copy_of_shipped).predict(pairs)
    manifest = json.loads((copy_of_shipped / "manifest.json").read_text())
    # pretend the same ONNX outputs were labelled in another order: columns must be permuted accordingly
    manifest["labels"] = ["neutral", "contradiction", "entailment"]
    (copy_of_shipped / "manifest.json").write_text(json.dumps(manifest))
    permuted = NliRuntime.from_dir(copy_of_shipped).predict(pairs)
    np.testing.assert_allclose(permuted, canonical[:, [2, 0, 1]], atol=1e-6)


def test_invalid_labels_are_refused() -> None:
    base = dict(name="x", family="f", architecture="a", source="s", license="l", max_length=128, onnx_sha256="0")
    with pytest.raises(ValueError):
        ModelManifest(labels=["entailment", "neutral", "neutral"], **base)
    with pytest.raises(ValueError):
        ModelManifest(labels=["LABEL_0", "LABEL_1", "LABEL_2"], **base)
    assert ModelManifest(labels=["CONTRADICTION", "ENTAILMENT", "NEUTRAL"], **base).column_order() == [1, 2, 0]
