"""Judges as configuration: `judges: [primary, secondary]` in an invariant's options, and the family rule.

The family rule: two judges of one family (the manifest's `family`: same architecture and training lineage) share
blind spots, so their agreement proves little and their disagreement is rare exactly where it matters. Config is
refused at start-up, naming the key, when an invariant lists two judges of one family. It is checked twice: when the
options are validated (families known without loading anything: the shipped manifests, `alignment`, an LLM's
declared family) and again in `load()` against the manifests the zoo actually loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guardrail_invariants.base import InvariantOptions

ALIGNMENT_FAMILY = "lexical-alignment"


class JudgeConfigError(ValueError):
    """A judges configuration that must not start (e.g. two judges of one family)."""


class JudgeSpec(BaseModel):
    """One judge. Short forms: `"nli"` (the default NLI model), `"nli:<model>"`, `"alignment"`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["nli", "alignment", "llm"]
    model: str | None = Field(None, description="nli: zoo model name (default model if unset); llm: model id")
    family: str | None = Field(None, description="llm: declared lineage (required); others: derived, must match")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="this judge's own pass threshold")
    # LLM judge only
    endpoint: str | None = Field(None, description="llm: OpenAI-compatible base URL, e.g. http://host:8000/v1")
    api_key_env: str | None = Field(None, description="llm: name of the env variable holding the API key")
    anchors: str | None = Field(None, description="llm: anchor set JSONL (guardrail-anchor/v1) for few-shot")
    max_anchors: int = Field(8, ge=0, le=64)
    timeout_s: float = Field(20.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    max_pairs_per_call: int = Field(16, ge=1, le=256)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            kind, _, model = value.partition(":")
            return {"kind": kind.strip(), **({"model": model.strip()} if model.strip() else {})}
        return value

    @model_validator(mode="after")
    def _llm_needs_endpoint(self) -> JudgeSpec:
        if self.kind == "llm":
            missing = [k for k in ("endpoint", "model", "family") if not getattr(self, k)]
            if missing:
                raise ValueError(f"an llm judge needs {', '.join(missing)} (the family is its training lineage, "
                                 "e.g. 'llama-3' or 'gpt-4o', so that the family rule can be enforced)")
        elif self.endpoint or self.anchors or self.api_key_env:
            raise ValueError(f"endpoint, anchors and api_key_env apply to llm judges only, not {self.kind!r}")
        return self

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.model}" if self.model else self.kind


def shipped_manifest(model: str | None) -> dict[str, Any] | None:
    """The shipped manifest for a model name (the default model when None), read without loading the model."""
    from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR

    path = SHIPPED_DIR / (model or DEFAULT_NLI) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def declared_family(spec: JudgeSpec) -> str | None:
    """The family as far as it is known without loading models; None when only the zoo can tell."""
    if spec.kind == "alignment":
        return ALIGNMENT_FAMILY
    if spec.kind == "llm":
        return spec.family
    if spec.family:
        return spec.family
    manifest = shipped_manifest(spec.model)
    return str(manifest["family"]) if manifest and manifest.get("family") else None


def check_families(labels_families: Sequence[tuple[str, str | None]], key: str = "judges") -> None:
    """Raises JudgeConfigError naming `key` when two judges share a family (unknown families are not compared)."""
    seen: dict[str, tuple[int, str]] = {}
    for i, (label, family) in enumerate(labels_families):
        if not family:
            continue
        fam = family.strip().lower()
        if fam in seen:
            j, other = seen[fam]
            raise JudgeConfigError(
                f"{key}[{j}] ({other}) and {key}[{i}] ({label}) are both of model family {family!r}; judges of one "
                "family share blind spots, so their agreement proves little - pick judges of different families")
        seen[fam] = (i, label)


class JudgedOptions(InvariantOptions):
    """Options every judge-backed invariant shares; mix into its `Options`.

    `judges[0]` is the primary: its score is the verdict. Each further judge runs on `secondary_fraction` of the
    cases (1.0 offline: every case), and a case where it disagrees with the primary is flagged
    (`details["judges_disagree"]`) for human review.
    """

    judges: tuple[JudgeSpec, ...] = (JudgeSpec(kind="nli"),)
    secondary_fraction: float = Field(0.1, ge=0.0, le=1.0, description="share of cases the secondary judges see")
    disagreement_margin: float = Field(0.3, gt=0.0, le=1.0, description="score gap that counts as disagreement")

    @field_validator("judges")
    @classmethod
    def _family_rule(cls, judges: tuple[JudgeSpec, ...]) -> tuple[JudgeSpec, ...]:
        if not judges:
            raise ValueError("at least one judge is required")
        try:
            check_families([(j.label, declared_family(j)) for j in judges])
        except JudgeConfigError as exc:
            raise ValueError(str(exc)) from None
        return judges
