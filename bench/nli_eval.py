"""Accuracy of the entailment judge on the dev sets, side by side with the lexical baseline.

`python -m bench.nli_eval [--model NAME] [--limit N]` prints one table: AUROC and balanced accuracy (at the shipped
threshold) on halueval_qa, wice_claims (supported vs rest), climate_fever_pairs (entailment vs rest) for
  lexical  — min over response sentences of the share of content words found in the context,
  model    — min over sentences of max P(entailment) over the selected windows (same run as hybrid),
  hybrid   — the invariant with the fitted hybrid judge (the shipped default),
plus SNLI test / ANLI dev 3-way accuracy of the raw model. dev/ is only measured here, never trained on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from invariants.entailment import EntailmentInvariant, EntailmentOptions
from invariants.text import coverage, content_words
from invariants.types import Case, Outcome, Passage
from invariants.judges.fit_hybrid import auroc
from models.zoo import ModelZoo, ZooSettings

DATA = Path(os.environ.get("GUARDRAIL_DATA", "/work/shared/data"))
LABELS = ["entailment", "neutral", "contradiction"]


def load(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (DATA / "dev" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    if limit:
        rows = rows[:limit]
    return rows


def groundedness_cases(limit: int | None = None) -> dict[str, list[tuple[Case, int]]]:
    """(case, 1 if supported) per dev set."""
    out: dict[str, list[tuple[Case, int]]] = {}
    out["halueval_qa"] = [(Case(response=r["response"], question=r.get("question") or "",
                                context=(Passage("1", r["context"]),)), int(r["label"] == "supported"))
                          for r in load("halueval_qa", limit)]
    out["wice_claims"] = [(Case(response=r["response"], context=(Passage("1", "\n".join(r["context"])),)),
                           int(r["label"] == "supported")) for r in load("wice_claims", limit)]
    out["climate_fever"] = [(Case(response=r["response"], context=(Passage("1", r["context"]),)),
                             int(r["label"] == "entailment")) for r in load("climate_fever_pairs", limit)]
    return out


def lexical_score(inv: EntailmentInvariant, case: Case) -> float:
    claims = inv.claims(case.response) or []
    vocab = set(content_words(" ".join(p.text for p in case.context)))
    return min((coverage(c.text, vocab) for c in claims), default=1.0)


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    tpr = (pred[y == 1] == 1).mean() if (y == 1).any() else 0.0
    tnr = (pred[y == 0] == 0).mean() if (y == 0).any() else 0.0
    return float((tpr + tnr) / 2)


async def invariant_scores(inv: EntailmentInvariant, cases: list[tuple[Case, int]], concurrency: int = 32
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Verdict scores, and min-over-sentences P(entailment) from the same run (the model-only view)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> tuple[float, float]:
        async with sem:
            v = await inv.check(case)
            if v.outcome is Outcome.SKIPPED:
                return 1.0, 1.0
            return v.score, min(s["entailment"] for s in v.details["sentences"])

    out = np.array(await asyncio.gather(*(one(c) for c, _ in cases)))
    return out[:, 0], out[:, 1]


async def three_way(model: Any, name: str, limit: int | None) -> float:
    rows = load(name, limit)
    probs = await model.predict([(r["context"], r["response"]) for r in rows])
    gold = np.array([LABELS.index(r["label"]) for r in rows])
    return float((probs.argmax(1) == gold).mean())


async def evaluate(model_name: str | None, limit: int | None, zoo: ModelZoo | None = None,
                   judges: tuple[str, ...] = ("hybrid",)) -> dict[str, dict[str, float]]:
    zoo = zoo or ModelZoo(ZooSettings(max_batch_size=32))
    sets = groundedness_cases(limit)
    results: dict[str, dict[str, float]] = {}
    invs = {}
    for j in judges:
        inv = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(model=model_name, judge=j),
                                  zoo)
        await inv.load()
        invs[j] = inv
    base = next(iter(invs.values()))
    for set_name, cases in sets.items():
        y = np.array([lab for _, lab in cases])
        lex = np.array([lexical_score(base, c) for c, _ in cases])
        results.setdefault("lexical", {})[f"{set_name}.auroc"] = auroc(lex, y)
        for j, inv in invs.items():
            t0 = time.perf_counter()
            s, ent = await invariant_scores(inv, cases)
            views = {j: s} if j == "model" else {j: s, "model": ent} if "model" not in invs else {j: s}
            for view, v in views.items():
                results.setdefault(view, {})[f"{set_name}.auroc"] = auroc(v, y)
                results[view][f"{set_name}.bal_acc"] = balanced_accuracy((v >= inv.threshold).astype(int), y)
                results[view].setdefault("_scores", {})[set_name] = (v, y)  # type: ignore[union-attr]
            results[j][f"{set_name}.seconds"] = time.perf_counter() - t0
        results["lexical"].setdefault("_scores", {})[set_name] = (lex, y)  # type: ignore[union-attr]
    model = base.model
    results.setdefault("model", {})
    results["model"]["snli_test.acc3"] = await three_way(model, "snli_test", limit)
    results["model"]["anli_dev.acc3"] = await three_way(model, "anli_dev", limit)
    return results


def choose_threshold(results: dict[str, dict[str, Any]], judge: str) -> tuple[float, float]:
    """The one global threshold maximizing mean balanced accuracy over the three sets (dev is for thresholds)."""
    scored = results[judge]["_scores"]
    best = (0.5, -1.0)
    for t in np.round(np.arange(0.02, 0.99, 0.01), 2):
        mean = float(np.mean([balanced_accuracy((s >= t).astype(int), y) for s, y in scored.values()]))
        if mean > best[1]:
            best = (float(t), mean)
    return best


def table(results: dict[str, dict[str, Any]]) -> str:
    sets = ["halueval_qa", "wice_claims", "climate_fever"]
    head = f"{'judge':<10}" + "".join(f"{s + ' AUROC':>21}{'bal.acc':>9}" for s in sets) + f"{'SNLI acc':>10}{'ANLI acc':>10}"
    lines = [head, "-" * len(head)]
    for judge, r in results.items():
        cells = ""
        for s in sets:
            a = r.get(f"{s}.auroc")
            ba = r.get(f"{s}.bal_acc")
            cells += f"{a:>21.3f}" if a is not None else f"{'':>21}"
            cells += f"{ba:>9.3f}" if ba is not None else f"{'-':>9}"
        snli, anli = r.get("snli_test.acc3"), r.get("anli_dev.acc3")
        cells += f"{snli:>10.3f}" if snli is not None else f"{'-':>10}"
        cells += f"{anli:>10.3f}" if anli is not None else f"{'-':>10}"
        lines.append(f"{judge:<10}{cells}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--judges", default="hybrid", help="hybrid also yields the model-only view (P(entailment))")
    args = ap.parse_args()
    zoo = ModelZoo(ZooSettings(models_dir=Path(args.models_dir) if args.models_dir else None))
    results = asyncio.run(evaluate(args.model, args.limit, zoo, tuple(args.judges.split(","))))
    print(table(results))
    for judge in results:
        t, mean = choose_threshold(results, judge)
        per = {k: round(balanced_accuracy((s >= t).astype(int), y), 3) for k, (s, y) in results[judge]["_scores"].items()}
        print(f"{judge}: best global threshold on dev {t:.2f} -> mean balanced accuracy {mean:.3f} {per}")


if __name__ == "__main__":
    main()
