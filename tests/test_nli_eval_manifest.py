"""The shipped model's manifest metrics are what `bench.nli_eval` prints: a slice is recomputed through the same path
(`guardrail eval` in process on the dev file) and must match to the last digit, so a number in a manifest, the README
or a note cannot drift from what the code measures. The int8 kernels differ by CPU (VNNI or not; see
`guardrail_models.runtime.int8_kernels`), so the manifest keeps the slice for each family it was measured on."""

from __future__ import annotations

import pytest

from bench.nli_eval import DATA, SLICE, evaluate_set
from guardrail_models.manifest import load_manifest
from guardrail_models.runtime import int8_kernels
from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR


@pytest.fixture(scope="module")
def metrics() -> dict:
    manifest = load_manifest(SHIPPED_DIR / DEFAULT_NLI)
    assert manifest.metrics and manifest.metrics.get("slice"), "the shipped manifest carries bench.nli_eval figures"
    return manifest.metrics


async def test_manifest_slice_equals_a_fresh_measurement(metrics: dict) -> None:
    part = metrics["slice"]
    assert (part["dataset"], part["first_cases"]) == SLICE
    here = int8_kernels()
    assert here in part["by_int8_kernels"], f"no slice measured on {here} int8 kernels: run bench.nli_eval here"
    expected = part["by_int8_kernels"][here]
    fresh = await evaluate_set(DATA / "dev" / f"{SLICE[0]}.jsonl", "entailment", None, metrics["judge"],
                               limit=SLICE[1])
    assert fresh.auroc == pytest.approx(expected["auroc"], abs=1e-9)
    assert fresh.balanced_accuracy == pytest.approx(expected["balanced_accuracy"], abs=1e-9)
    assert fresh.threshold == pytest.approx(metrics["threshold"])


def test_manifest_figures_cover_every_dev_set_next_to_word_overlap(metrics: dict) -> None:
    dev = metrics["dev"]
    assert {"halueval_qa", "wice_claims", "climate_fever_pairs"} <= set(dev)
    for name, row in dev.items():
        assert 0.0 <= row["auroc"] <= 1.0 and 0.0 <= row["balanced_accuracy"] <= 1.0, name
        assert row["word_overlap_auroc"] is not None, name
    assert metrics["snli_test_acc3"] is not None and metrics["chatprotect_self_consistency_auroc"] is not None
