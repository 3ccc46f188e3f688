"""One manifest per model: where it came from, its license, how to read its outputs, and a checksum we enforce.

The sha256 check is the point: a manifest describes exactly one ONNX file, so metrics and label order can never
silently apply to a different artifact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CANONICAL_LABELS: tuple[str, str, str] = ("entailment", "neutral", "contradiction")
_ALIASES = {"entailment": "entailment", "entail": "entailment", "entailed": "entailment", "supports": "entailment",
            "neutral": "neutral", "not_enough_info": "neutral", "nei": "neutral",
            "contradiction": "contradiction", "contradict": "contradiction", "refutes": "contradiction"}


class ManifestError(ValueError):
    """The manifest is invalid or does not match the files next to it."""


def canonical_label(label: str) -> str:
    key = label.strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return _ALIASES[key]
    except KeyError:
        raise ManifestError(f"unknown NLI label {label!r}; expected one of {sorted(set(_ALIASES.values()))}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    family: str
    architecture: str
    source: str
    license: str
    task: Literal["nli", "embedding"] = "nli"
    labels: list[str] = Field(description="NLI: label of each ONNX output column, in the model's own order")
    max_length: int = Field(gt=8)
    onnx_file: str = "model.onnx"
    onnx_sha256: str
    tokenizer_file: str = "tokenizer.json"
    quantization: str = "none"
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(default_factory=dict, description="fitted hybrid-judge rule, if any (data, not code)")
    input_normalization: Literal["canonical_v1"] | None = Field(
        None, description="rewrite premise and hypothesis into one form for quantities, times and dates before "
        "tokenizing (guardrail_models.canonical); part of how the model was measured")

    @model_validator(mode="after")
    def _three_nli_labels(self) -> ModelManifest:
        if self.task == "nli":
            canon = [canonical_label(x) for x in self.labels]
            if sorted(canon) != sorted(CANONICAL_LABELS):
                raise ValueError(f"labels must name entailment, neutral and contradiction once each, got {self.labels}")
        return self

    def column_order(self) -> list[int]:
        """Indices that reorder the model's output columns into (entailment, neutral, contradiction)."""
        canon = [canonical_label(x) for x in self.labels]
        return [canon.index(c) for c in CANONICAL_LABELS]

    def write(self, directory: Path) -> Path:
        path = Path(directory) / "manifest.json"
        path.write_text(json.dumps(self.model_dump(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        return path


def load_manifest(directory: Path | str, *, verify: bool = True) -> ModelManifest:
    """Reads `<dir>/manifest.json`; with `verify`, refuses to load when the ONNX file's sha256 differs."""
    directory = Path(directory)
    path = directory / "manifest.json"
    if not path.is_file():
        raise ManifestError(f"no manifest.json in {directory}")
    try:
        manifest = ModelManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ManifestError(f"invalid manifest {path}: {e}") from e
    if verify:
        onnx_path = directory / manifest.onnx_file
        if not onnx_path.is_file():
            raise ManifestError(f"model {manifest.name!r}: ONNX file {onnx_path} is missing")
        actual = sha256_file(onnx_path)
        if actual != manifest.onnx_sha256:
            raise ManifestError(
                f"model {manifest.name!r}: sha256 of {onnx_path.name} is {actual}, manifest says {manifest.onnx_sha256}; "
                "refusing to load a model that does not match its manifest (re-import it or fix the manifest)"
            )
        if not (directory / manifest.tokenizer_file).is_file():
            raise ManifestError(f"model {manifest.name!r}: tokenizer file {manifest.tokenizer_file} is missing")
    return manifest
