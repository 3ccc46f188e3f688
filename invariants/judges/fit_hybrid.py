"""Fits the entailment judge's calibrated rule (features of a claim -> P(supported)) on train-side data only, and
stores it in the model's manifest (`judge`).

Why a calibration: the raw P(entailment) of a cross-encoder does not mean the same on a one-word QA answer, a
Wikipedia claim and a news summary, so no one threshold serves them all. The rule is a logistic regression fitted
on the held-out `calib` split of the training mix (`invariants.judges.training_mix`: every source, never trained
on, never dev/), with every source weighing the same and both classes balanced within it — so P = 0.5 is the
balanced-accuracy point on every kind of text at once, and the invariant's one global threshold is 0.5.

Candidates, from the simplest: Platt scaling of the entailment logit alone; plus contradiction; plus the lexical
alignment features (word, number and name coverage, embedding similarity) — the old "hybrid". A richer rule is kept
only if it earns its place under leave-one-source-out validation (fitted without a source, scored on it): the mean
balanced accuracy at 0.5 over held-out sources, which is exactly "one threshold on text it was not fitted on".
Features come from the real invariant path (claims, windows, BM25 + embedding picks, two rounds, the NLI model),
taken from a response's weakest claim, so the rule is fitted on exactly what it combines.

Run: `python -m guardrail_invariants.judges.fit_hybrid --groups /tmp/gr_v3/groups.jsonl.gz [--model NAME]`
(no torch needed).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_invariants.stats import auroc as shared_auroc

FEATURES = ["entailment_logit", "contradiction", "coverage", "number_coverage", "name_coverage", "embed_sim"]
CANDIDATES: dict[str, list[str]] = {
    "calibrated_model": ["entailment_logit"],
    "calibrated_model_contradiction": ["entailment_logit", "contradiction"],
    "hybrid": FEATURES,
}


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, l2: float = 1e-2,
                 iters: int = 3000, lr: float = 0.5) -> tuple[np.ndarray, float]:
    """L2 logistic regression by gradient descent on standardized features, with sample weights; raw-scale (w, b)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    sw = np.ones(len(y)) if weights is None else weights / weights.mean()
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = (p - y) * sw
        w -= lr * (z.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    return w / sd, float(b - (w * mu / sd).sum())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of `labels == 1`; NaN without both classes (keeps the fitting report's numeric columns numeric)."""
    value = shared_auroc(scores, np.asarray(labels) == 1)
    return float("nan") if value is None else value


def balanced_weights(sources: list[str], y: np.ndarray) -> np.ndarray:
    """Every source weighs the same; within a source both classes weigh the same."""
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for s, label in zip(sources, y, strict=True):
        counts[(s, int(label))] += 1
    return np.array([1.0 / counts[(s, int(label))] for s, label in zip(sources, y, strict=True)])


def balanced_accuracy(p: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> float:
    pred = p >= threshold
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        return float("nan")
    return float((pred[pos].mean() + (~pred[neg]).mean()) / 2)


def load_calib(path: Path, per_source: int, seed: int) -> list[dict[str, Any]]:
    """The held-out calib split, at most `per_source` rows per source (sources grouped as in training)."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for g in map(json.loads, f):
            if g["split"] == "calib":
                by_source["synthetic" if g["source"].startswith("synthetic") else g["source"]].append(g)
    rng = random.Random(seed)
    out = []
    for source, rows in sorted(by_source.items()):
        rng.shuffle(rows)
        out += [{**r, "group": source} for r in rows[:per_source]]
    return out


async def collect(rows: list[dict[str, Any]], model_name: str | None, models_dir: str | None,
                  embedder_name: str = "minilm-l6-embed") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of each case's weakest claim, through the invariant's own claim and window path."""
    from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions, score_claims
    from guardrail_models.zoo import ModelZoo, ZooSettings

    zoo = ModelZoo(ZooSettings(models_dir=Path(models_dir) if models_dir else None))
    opts = EntailmentOptions(model=model_name, judge="model")
    inv = EntailmentInvariant(0.5, opts, zoo)
    inv.model = await zoo.load_nli(model_name)
    embedder = await zoo.load_embedder(embedder_name)
    sem = asyncio.Semaphore(16)

    async def one(row: dict[str, Any]) -> dict[str, float] | None:
        claims = [c.text for c in inv.claims(row["response"])]
        if not claims:
            return None
        async with sem:
            scored = await score_claims(inv.model, claims, [("1", row["context"])], opts, embedder=embedder)
        return min(scored, key=lambda s: s.entailment).features

    feats = await asyncio.gather(*(one(r) for r in rows))
    await zoo.close()
    kept = [(f, r) for f, r in zip(feats, rows, strict=True) if f is not None]
    x = np.array([[f[name] for name in FEATURES] for f, _ in kept])
    y = np.array([1.0 if r["orig_label"] == "entailment" else 0.0 for _, r in kept])
    return x, y, [r["group"] for _, r in kept]


def leave_one_source_out(x: np.ndarray, y: np.ndarray, sources: list[str], columns: list[int]
                         ) -> dict[str, dict[str, float]]:
    """For each source: fitted on the others, balanced accuracy at 0.5 and AUROC on it."""
    out = {}
    src = np.array(sources)
    for s in sorted(set(sources)):
        test = src == s
        train = ~test
        if len(set(y[test])) < 2:
            continue
        w, b = fit_logistic(x[train][:, columns], y[train], balanced_weights(list(src[train]), y[train]))
        p = 1 / (1 + np.exp(-(x[test][:, columns] @ w + b)))
        out[s] = {"n": int(test.sum()), "balanced_accuracy_at_0.5": round(balanced_accuracy(p, y[test]), 4),
                  "auroc": round(auroc(p, y[test]), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=Path, required=True, help="from python -m guardrail_invariants.judges.training_mix")
    ap.add_argument("--model", default=None)
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--embedder", default="minilm-l6-embed")
    ap.add_argument("--per-source", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dry-run", action="store_true", help="print the validation table, write nothing")
    args = ap.parse_args()
    from guardrail_models.manifest import load_manifest
    from guardrail_models.zoo import ModelZoo, ZooSettings

    rows = load_calib(args.groups, args.per_source, args.seed)
    x, y, sources = asyncio.run(collect(rows, args.model, args.models_dir, args.embedder))
    report: dict[str, Any] = {}
    for name, cols in CANDIDATES.items():
        idx = [FEATURES.index(c) for c in cols]
        per = leave_one_source_out(x, y, sources, idx)
        report[name] = {"mean_balanced_accuracy_at_0.5": round(float(np.mean([v["balanced_accuracy_at_0.5"]
                                                                              for v in per.values()])), 4),
                        "min_balanced_accuracy_at_0.5": round(float(min(v["balanced_accuracy_at_0.5"]
                                                                        for v in per.values())), 4),
                        "mean_auroc": round(float(np.mean([v["auroc"] for v in per.values()])), 4),
                        "per_source": per}
        print(f"{name:34s} mean bal.acc@0.5 {report[name]['mean_balanced_accuracy_at_0.5']:.4f}  "
              f"min {report[name]['min_balanced_accuracy_at_0.5']:.4f}  "
              f"mean AUROC {report[name]['mean_auroc']:.4f}", flush=True)
    # the simplest rule unless a richer one is better on held-out sources by a margin worth its complexity
    chosen = "calibrated_model"
    for name in CANDIDATES:
        if report[name]["mean_balanced_accuracy_at_0.5"] > report[chosen]["mean_balanced_accuracy_at_0.5"] + 0.005:
            chosen = name
    cols = CANDIDATES[chosen]
    w, b = fit_logistic(x[:, [FEATURES.index(c) for c in cols]], y, balanced_weights(sources, y))
    counts = defaultdict(int)
    for s in sources:
        counts[s] += 1
    rule = {
        "kind": "logistic",
        "name": chosen,
        # the features were collected with its picks: inference must use them too (a rule without embed_sim names no
        # embedder, and the check then runs no embedding pass at all)
        **({"embedder": args.embedder} if "embed_sim" in cols else {}),
        "weights": {c: round(float(v), 6) for c, v in zip(cols, w, strict=True)},
        "bias": round(b, 6),
        "threshold": 0.5,
        "fitted_on": f"{len(y)} cases of the held-out calib split of the training mix ({dict(sorted(counts.items()))}); "
                     "sources weighted equally, classes balanced within each; never dev/",
        "seed": args.seed,
        "leave_one_source_out": report,
    }
    print(json.dumps({k: v for k, v in rule.items() if k != "leave_one_source_out"}, indent=2))
    if args.dry_run:
        return
    directory = ModelZoo(ZooSettings(models_dir=Path(args.models_dir) if args.models_dir else None)).model_dir(
        args.model)
    manifest = load_manifest(directory)
    manifest.judge = rule
    manifest.write(directory)
    print(f"wrote the rule to {directory / 'manifest.json'}")


if __name__ == "__main__":
    main()
