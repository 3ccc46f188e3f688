"""Fits the hybrid judge (model + lexical alignment -> P(supported)) on train-side data and stores it in the manifest.

Data (train-side only, never dev/): synthetic cases from the WikiText documents held out of NLI training
(`train.HELD_OUT_DOCS`) — a multi-sentence context and one claim, supported iff the generator made an entailed claim —
plus SNLI pairs from train/ (entailment vs rest). The synthetic cases alone are lexically easy (unsupported claims
bring new words), which would teach the rule to trust word overlap; the SNLI pairs (new words, still entailed) pull
it back toward the model and embedding features. Caveat: the NLI model was trained on those SNLI pairs, so its
feature looks stronger on them than on unseen text. Features come from the real invariant path (windows, BM25 +
embedding top-k, NLI), so the rule is fitted on exactly what it will combine.
Run: `python -m guardrail_invariants.judges.fit_hybrid [--model minilm-groundedness-v2]` (no torch needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import numpy as np

from guardrail_invariants.stats import auroc as shared_auroc

FEATURES = ["entailment_logit", "contradiction", "coverage", "number_coverage", "name_coverage", "embed_sim"]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 3000, lr: float = 0.5
                 ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Plain L2 logistic regression by gradient descent on standardized features; returns raw-scale (w, b)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = p - y
        w -= lr * (z.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    return w / sd, float(b - (w * mu / sd).sum()), mu, sd


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of `labels == 1`; NaN without both classes (keeps the fitting report's numeric columns numeric)."""
    value = shared_auroc(scores, np.asarray(labels) == 1)
    return float("nan") if value is None else value


async def collect(model_name: str | None, embedder_name: str, n: int, seed: int, snli_n: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from guardrail_invariants.entailment import EntailmentOptions, score_claims
    from guardrail_models.training.generator import PairGenerator
    from guardrail_models.training.generator import Pair
    from guardrail_models.training.train import load_snli, split_documents
    from guardrail_models.zoo import ModelZoo

    _, held = split_documents()
    gen = PairGenerator(held, seed=seed, max_window_sentences=10, max_window_words=320)
    pairs = gen.generate(n)
    if snli_n:
        snli = load_snli()
        rng = np.random.default_rng(seed)
        pairs += [Pair(snli[i][0], snli[i][1], snli[i][2], "snli")
                  for i in rng.choice(len(snli), size=min(snli_n, len(snli)), replace=False)]
        order = rng.permutation(len(pairs))
        pairs = [pairs[i] for i in order]
    zoo = ModelZoo()
    model = await zoo.load_nli(model_name)
    embedder = await zoo.load_embedder(embedder_name)
    opts = EntailmentOptions(judge="model")

    async def one(p):
        return (await score_claims(model, [p.hypothesis], [("1", p.premise)], opts, embedder=embedder))[0]

    results = []
    for i in range(0, len(pairs), 64):
        results += await asyncio.gather(*(one(p) for p in pairs[i:i + 64]))
    await zoo.close()
    x = np.array([[r.features[f] for f in FEATURES] for r in results])
    y = np.array([1.0 if p.label == "entailment" else 0.0 for p in pairs])
    return x, y, [p.kind for p in pairs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--embedder", default="minilm-l6-embed")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--snli", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from guardrail_models.manifest import load_manifest
    from guardrail_models.zoo import ModelZoo

    x, y, kinds = asyncio.run(collect(args.model, args.embedder, args.n, args.seed, args.snli))
    half = len(y) // 2
    w, b, _, _ = fit_logistic(x[:half], y[:half])
    held_auc = auroc(x[half:] @ w + b, y[half:])
    model_auc = auroc(x[half:, 0], y[half:])
    single = {f: round(auroc(x[half:, i], y[half:]), 4) for i, f in enumerate(FEATURES)}
    w, b, _, _ = fit_logistic(x, y)
    directory = ModelZoo().model_dir(args.model)
    manifest = load_manifest(directory)
    manifest.judge = {
        "kind": "logistic",
        "embedder": args.embedder,
        "weights": {f: round(float(v), 6) for f, v in zip(FEATURES, w, strict=True)},
        "bias": round(b, 6),
        "fitted_on": f"{len(y)} train-side cases: {kinds.count('snli')} SNLI train pairs + "
                     f"{len(y) - kinds.count('snli')} synthetic (context, claim) cases from held-out WikiText-2 "
                     "documents; never dev/",
        "seed": args.seed,
        "synthetic_auroc_half_split": {"hybrid": round(held_auc, 4), "model_only": round(model_auc, 4),
                                       "single_features": single},
    }
    manifest.write(directory)
    print(json.dumps(manifest.judge, indent=2))


if __name__ == "__main__":
    main()
