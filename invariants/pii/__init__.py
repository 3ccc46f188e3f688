"""PII machinery behind the `pii_boundary` invariant: one shared Presidio engine (spaCy NER or patterns
only), per-type normalization, normalized lookup in context and question, and redaction for stored samples.

Importing this package pins tldextract to its bundled public-suffix list: nothing here touches the network.
"""

import os

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

from invariants.pii.engine import SPACY_MODEL, ModelNotInstalledError, get_analyzer, loaded_analyzer  # noqa: E402
from invariants.pii.redactor import REDACT_ENTITIES, redact  # noqa: E402

__all__ = ["SPACY_MODEL", "ModelNotInstalledError", "REDACT_ENTITIES", "get_analyzer", "loaded_analyzer", "redact"]
