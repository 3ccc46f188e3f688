"""The PII engine never reaches the network: no spaCy model download, no public-suffix-list fetch."""

from __future__ import annotations

import os

import pytest
import spacy.cli

from guardrail_invariants.pii import SPACY_MODEL, ModelNotInstalledError, get_analyzer
from guardrail_invariants.pii.engine import OfflineSpacyNlpEngine


def test_tldextract_uses_its_bundled_suffix_list() -> None:
    import tldextract.tldextract as tx

    get_analyzer(True)
    assert os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] == ""
    assert tx.TLD_EXTRACTOR.suffix_list_urls == ()


def test_missing_spacy_model_fails_instead_of_downloading(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("spacy.cli.download must never be called")

    monkeypatch.setattr(spacy.cli, "download", no_download)
    engine = OfflineSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "en_core_web_lg"}])
    with pytest.raises(ModelNotInstalledError, match="never downloaded"):
        engine.load()
    with pytest.raises(ModelNotInstalledError):
        OfflineSpacyNlpEngine._download_spacy_model_if_needed("en_core_web_lg")


def test_the_shared_engine_uses_the_pinned_model() -> None:
    analyzer = get_analyzer(False)
    nlp = analyzer.nlp_engine.nlp["en"]
    assert f"{nlp.meta['lang']}_{nlp.meta['name']}" == SPACY_MODEL
    assert "ner" in nlp.pipe_names and "parser" not in nlp.pipe_names
    assert get_analyzer(True).nlp_engine.engine_name == "no_op"
