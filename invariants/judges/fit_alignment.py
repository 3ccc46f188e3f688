"""Fits the alignment judge's logistic regression on train-side data only, and writes `alignment_params.json`.

Data: SNLI train (`../shared/data/train/`) + synthetic FactCC-style groundedness pairs made by
`guardrail_models.training.generator` from the WikiText-2 training documents (never `dev/`). Reproducible:
`python -m guardrail_invariants.judges.fit_alignment [--synthetic 12000] [--seed 13]` (pure numpy, about a minute).
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

from guardrail_invariants.judges.alignment import FEATURES, PARAMS_PATH, AlignmentModel, feature_matrix

LABELS = ("entailment", "neutral", "contradiction")


def training_pairs(n_synthetic: int, seed: int) -> list[tuple[str, str, str, str]]:
    from guardrail_models.training.generator import PairGenerator
    from guardrail_models.training.train import load_snli, split_documents

    train_docs, _ = split_documents()
    synthetic = PairGenerator(train_docs, seed=seed).generate(n_synthetic)
    rows = [(p.premise, p.hypothesis, p.label, p.kind) for p in synthetic] + load_snli()
    random.Random(seed).shuffle(rows)
    return rows


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, iters: int = 3000, lr: float = 0.5,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """Multinomial logistic regression by full-batch gradient descent with momentum; x already standardized."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    onehot = np.eye(3)[y]
    sw = np.ones(n) if weights is None else weights / weights.mean()
    w = np.zeros((d + 1, 3))
    velocity = np.zeros_like(w)
    for _ in range(iters):
        logits = xb @ w
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = xb.T @ ((p - onehot) * sw[:, None]) / n
        grad[:-1] += l2 * w[:-1]
        velocity = 0.9 * velocity - lr * grad
        w += velocity
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--synthetic", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", default=str(PARAMS_PATH))
    args = ap.parse_args()
    started = time.time()
    rows = training_pairs(args.synthetic, args.seed)
    x = feature_matrix([(p, h) for p, h, _, _ in rows])
    y = np.asarray([LABELS.index(lab) for _, _, lab, _ in rows])
    source = np.asarray([k == "snli" for *_, k in rows])
    cut = int(len(rows) * 0.9)
    mean, std = x[:cut].mean(axis=0), x[:cut].std(axis=0) + 1e-6
    z = (x - mean) / std
    # Balance the two sources and the three classes, so neither SNLI's caption pairs nor the synthetic mix dominate.
    weights = np.ones(len(rows))
    for src in (True, False):
        for c in range(3):
            m = (source == src) & (y == c)
            weights[m] = 1.0 / max(m[:cut].sum(), 1)
    w = fit_logistic(z[:cut], y[:cut], weights=weights[:cut])
    model = AlignmentModel(mean, std, w, {})
    pred = model.predict_features(x[cut:]).argmax(axis=1)
    held = {"accuracy": float((pred == y[cut:]).mean()),
            "snli_accuracy": float((pred == y[cut:])[source[cut:]].mean()),
            "synthetic_accuracy": float((pred == y[cut:])[~source[cut:]].mean()),
            "n": int(len(rows) - cut)}
    meta = {"fitted_on": "train/snli_dev.jsonl (SNLI train side) + guardrail_models.training.generator synthetic pairs from "
                         "WikiText-2 training documents (data/wikitext-2, CC BY-SA); never dev/",
            "n_train": cut, "n_synthetic": args.synthetic, "seed": args.seed, "held_out_train_side": held,
            "fit_seconds": round(time.time() - started, 1)}
    model = AlignmentModel(mean, std, w, meta)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(model.to_json(), fh, indent=1)
        fh.write("\n")
    print(json.dumps({"features": len(FEATURES), **meta}, indent=2))


if __name__ == "__main__":
    main()
