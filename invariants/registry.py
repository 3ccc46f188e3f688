"""Builds invariants from configuration (cf. Presidio's RecognizerRegistry).

Modules are imported lazily, so a deployment that disables an invariant never pays for its dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

from guardrail_invariants.base import Invariant, InvariantOptions

REGISTRY: dict[str, str] = {
    "reference_integrity": "guardrail_invariants.reference_integrity:ReferenceIntegrityInvariant",
    "entailment": "guardrail_invariants.entailment:EntailmentInvariant",
    "pii_boundary": "guardrail_invariants.pii_boundary:PiiBoundaryInvariant",
    "self_consistency": "guardrail_invariants.self_consistency:SelfConsistencyInvariant",
}


class UnknownInvariantError(KeyError):
    pass


def invariant_class(name: str) -> type:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownInvariantError(f"unknown invariant {name!r}; known: {sorted(REGISTRY)}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def options_model(name: str) -> type[InvariantOptions]:
    return getattr(invariant_class(name), "Options", InvariantOptions)


def default_threshold(name: str) -> float:
    return float(getattr(invariant_class(name), "default_threshold", 0.5))


def build_invariant(name: str, threshold: float, options: InvariantOptions | dict[str, Any], zoo: Any) -> Invariant:
    """Instantiates one invariant. `zoo` is the shared `guardrail_models.zoo.ModelZoo` (models load once per process)."""
    cls = invariant_class(name)
    if isinstance(options, dict):
        options = options_model(name).model_validate(options)
    return cls(threshold=threshold, options=options, zoo=zoo)
