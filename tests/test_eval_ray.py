"""The Ray Data engine gives the same verdicts as the local engine on the same cases (a local Ray, 2 CPUs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_server.evals.backends import LocalBackend
from guardrail_server.evals.datasets import load_datasets
from guardrail_server.evals.runner import run_eval
from tests.conftest import make_config
from tests.test_eval_runner import assert_same_verdicts

ray = pytest.importorskip("ray", reason="Ray not installed: pip install -e '.[ray]' (it is in the dev extra)")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _cases(tmp_path: Path) -> list[Path]:
    native = [{"id": "n1", "context": [{"id": "d1", "text": "Paris is in France."}], "response": "Paris [d1] [d9]."},
              {"id": "n2", "response": "x", "samples": ["s"] * 25}]
    files = [tmp_path / "native.jsonl"]
    files[0].write_text("".join(json.dumps(r) + "\n" for r in native))
    src = DATA / "dev" / "halueval_qa.jsonl"
    if src.exists():
        files.append(tmp_path / "halueval_qa.jsonl")
        files[1].write_text("\n".join(src.read_text().splitlines()[:40]) + "\n")
    return files


async def test_local_and_ray_engines_identical(tmp_path: Path) -> None:
    from guardrail_server.evals.ray_engine import RayBackend

    # Only invariants from the package registry: Ray workers are fresh processes without the test-only ones.
    config = make_config({"reference_integrity": {}})
    loaded = load_datasets(_cases(tmp_path), on_malformed="fail")
    local = await run_eval(LocalBackend(config), loaded, tmp_path / "local", progress=False)
    on_ray = await run_eval(RayBackend(config, num_cpus=2, workers=1, batch_size=16), loaded, tmp_path / "ray",
                            progress=False)
    assert on_ray.status == "complete" and not ray.is_initialized()
    assert_same_verdicts(local.rows, on_ray.rows)
    assert len(on_ray.rows) == len(loaded.cases) * len(config.enabled_invariants())
    errors = [r for r in on_ray.rows if r["case_id"] == "n2"]
    assert errors and all(r["outcome"] == "error" and r["error"].startswith("RESOURCE_EXHAUSTED") for r in errors)
