"""PII machinery behind the `pii_boundary` invariant: one shared Presidio engine (spaCy NER or patterns
only), per-type normalization, normalized lookup in context and question, and redaction for stored samples.

Importing this package pins tldextract to its bundled public-suffix list: nothing here touches the network.
Presidio (and spaCy, and the transformers stack Presidio imports when installed) is imported on first use of
`get_analyzer`, `redact` & co., not by importing the package: validating a config must not take seconds.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

_LAZY = {
    "SPACY_MODEL": "guardrail_invariants.pii.engine",
    "ModelNotInstalledError": "guardrail_invariants.pii.engine",
    "get_analyzer": "guardrail_invariants.pii.engine",
    "loaded_analyzer": "guardrail_invariants.pii.engine",
    "REDACT_ENTITIES": "guardrail_invariants.pii.redactor",
    "redact": "guardrail_invariants.pii.redactor",
}

__all__ = ["SPACY_MODEL", "ModelNotInstalledError", "REDACT_ENTITIES", "get_analyzer", "loaded_analyzer", "redact"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
