"""The calibrated judge's fit (item 5 of the judge issue): features come from the invariant's own path, embed_sim
included, and the rule is chosen by leave-one-source-out balanced accuracy at 0.5 on the calib split only."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from guardrail_invariants.judges import fit_hybrid

CASES = [
    ("The museum opened in 1995 in Berlin.", "The museum opened in 1995.", "entailment"),
    ("The museum opened in 1995 in Berlin.", "The museum opened in 2001.", "contradiction"),
    ("The bridge is 330 metres long and was built in 1932.", "The bridge is 330 m long.", "entailment"),
    ("The bridge is 330 metres long and was built in 1932.", "The bridge was painted red in 1990.", "neutral"),
    ("Support is open Monday to Friday, 9am to 5pm.", "Support is open on weekdays.", "entailment"),
    ("Support is open Monday to Friday, 9am to 5pm.", "Support is open on Sundays.", "contradiction"),
]


def _groups(path: Path) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, (context, response, label) in enumerate(CASES * 2):
            f.write(json.dumps({"split": "calib" if i % 6 != 5 or i < 6 else "train", "source": f"src{i % 3}",
                                "context": context, "response": response, "orig_label": label,
                                "mode": "single", "pairs": [[context, response]], "claim": [0],
                                "label": label}) + "\n")
    return path


def test_features_are_collected_through_the_invariant_with_embed_sim(tmp_path: Path) -> None:
    rows = fit_hybrid.load_calib(_groups(tmp_path / "g.jsonl.gz"), per_source=100, seed=0)
    assert {r["group"] for r in rows} == {"src0", "src1", "src2"} and all(r["split"] == "calib" for r in rows)
    x, y, sources = __import__("asyncio").run(fit_hybrid.collect(rows, None, None))
    assert x.shape == (len(rows), len(fit_hybrid.FEATURES)) and len(sources) == len(rows)
    sim = x[:, fit_hybrid.FEATURES.index("embed_sim")]
    assert np.all((sim > 0) & (sim <= 1.0001)) and len(set(np.round(sim, 4))) > 1  # measured, not a constant prior
    logit = x[:, fit_hybrid.FEATURES.index("entailment_logit")]
    assert logit[y == 1].mean() > logit[y == 0].mean()


def test_the_dry_run_prints_a_rule_with_threshold_one_half_and_writes_nothing(tmp_path: Path) -> None:
    manifest = Path(fit_hybrid.__file__).resolve().parents[2] / "models/zoo/minilm-groundedness-v2/manifest.json"
    before = manifest.read_bytes()
    out = subprocess.run([sys.executable, "-m", "guardrail_invariants.judges.fit_hybrid", "--groups",
                          str(_groups(tmp_path / "g.jsonl.gz")), "--dry-run"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rule = json.loads(out.stdout[out.stdout.index("{"):])
    assert rule["threshold"] == 0.5 and rule["name"] in fit_hybrid.CANDIDATES
    assert ("embedder" in rule) == ("embed_sim" in rule["weights"])  # no embedding pass for a rule that ignores it
    assert manifest.read_bytes() == before
