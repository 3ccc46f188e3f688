"""Two judges of different lineage, side by side: accuracy alone, agreement, and accuracy where they agree/disagree.

`python -m bench.judges [--limit N] [--fraction 0.1]` prints one table over the dev sets:
  self_consistency  chatprotect_selfcontradiction: response = sample A, samples = (sample B,), pass = consistent;
  entailment        halueval_qa (supported), wice_claims (supported vs rest), climate_fever_pairs (entailment vs
                    rest): each judge through the entailment invariant's windowing (`score_claims`), response score
                    = weakest sentence; snli_test: 3-way argmax of the raw pair.
Judges: `nli` = the shipped NLI model (max P(entailment) / mean P(contradiction)), `align` = the non-neural
alignment judge. Columns: AUROC; balanced accuracy at the default threshold 0.5 and at the threshold that maximizes it
on the same dev set (chosen on dev - an optimistic figure, said so); for the pair: the share of cases where the two
agree by the production rule (same verdict at each judge's dev threshold and |score gap| <= margin), the primary's
accuracy where they agree and each judge's where they disagree, and how often both are wrong vs. what independent
errors would give. Then the latency cost of running the secondary judge on `--fraction` of the cases.
dev/ is only measured here; nothing is fitted on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions, score_claims
from guardrail_invariants.judges.adapter import JudgeAsModel
from guardrail_invariants.judges.alignment import AlignmentJudge
from guardrail_invariants.judges.nli_model import NliModelJudge
from guardrail_invariants.self_consistency import SelfConsistencyInvariant
from guardrail_invariants.text import make_windows
from guardrail_invariants.types import Case, Outcome, Passage
from guardrail_models.zoo import ModelZoo

DATA = Path(os.environ.get("GUARDRAIL_DATA", "/work/shared/data")) / "dev"
LABELS = ["entailment", "neutral", "contradiction"]
MARGIN = 0.3


def rows(name: str, limit: int | None) -> list[dict[str, Any]]:
    out = [json.loads(x) for x in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    if limit:  # keep both classes when subsetting: take every k-th row
        step = max(1, len(out) // limit)
        out = out[::step][:limit]
    return out


def auroc(score: np.ndarray, y: np.ndarray) -> float:
    pos, neg = score[y == 1], score[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    classes = np.unique(y)
    return float(np.mean([(pred[y == c] == c).mean() for c in classes]))


def best_threshold(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    cands = np.unique(np.concatenate([[0.0, 1.0], np.quantile(score, np.linspace(0, 1, 201))]))
    best = max(((balanced_accuracy((score >= t).astype(int), y), t) for t in cands), key=lambda x: (x[0], -x[1]))
    return float(best[1]), float(best[0])


@dataclass
class JudgeResult:
    name: str
    score: np.ndarray
    seconds: float


async def gather_scores(cases: Sequence[Any], fn: Callable[[Any], Awaitable[float]], concurrency: int = 16
                        ) -> np.ndarray:
    sem = asyncio.Semaphore(concurrency)

    async def one(c: Any) -> float:
        async with sem:
            return await fn(c)

    return np.array(await asyncio.gather(*(one(c) for c in cases)), dtype=np.float64)


# -- self-consistency ------------------------------------------------------------------------------------------

def sc_cases(limit: int | None) -> tuple[list[Case], np.ndarray]:
    data = rows("chatprotect_selfcontradiction", limit)
    cases = [Case(response=r["response"][0], samples=(r["response"][1],), question=r.get("question") or "",
                  request_id=r["id"]) for r in data]
    return cases, np.array([int(r["label"] == "consistent") for r in data])


async def sc_scores(zoo: ModelZoo, judge: str, cases: list[Case], **options: Any) -> JudgeResult:
    inv = SelfConsistencyInvariant(0.5, SelfConsistencyInvariant.Options(judges=[judge], **options), zoo=zoo)
    await inv.load()

    async def one(case: Case) -> float:
        v = await inv.check(case)
        return 1.0 if v.outcome is Outcome.SKIPPED else v.score

    t = time.perf_counter()
    score = await gather_scores(cases, one)
    return JudgeResult(judge, score, time.perf_counter() - t)


# -- groundedness ----------------------------------------------------------------------------------------------

def grounded_cases(name: str, limit: int | None) -> tuple[list[Case], np.ndarray]:
    data = rows(name, limit)
    if name == "wice_claims":
        cases = [Case(response=r["response"], context=(Passage("1", "\n".join(r["context"])),)) for r in data]
        return cases, np.array([int(r["label"] == "supported") for r in data])
    positive = "entailment" if name == "climate_fever_pairs" else "supported"
    cases = [Case(response=r["response"], question=r.get("question") or "", context=(Passage("1", r["context"]),))
             for r in data]
    return cases, np.array([int(r["label"] == positive) for r in data])


async def shipped_scores(inv: EntailmentInvariant, cases: list[Case]) -> JudgeResult:
    """The entailment invariant as shipped (hybrid judge: model + alignment features + embedding similarity)."""
    async def one(case: Case) -> float:
        v = await inv.check(case)
        return 1.0 if v.outcome is Outcome.SKIPPED else v.score

    t = time.perf_counter()
    score = await gather_scores(cases, one)
    return JudgeResult("nli-hybrid", score, time.perf_counter() - t)


async def grounded_scores(model: Any, label: str, cases: list[Case], claims_of: EntailmentInvariant) -> JudgeResult:
    opts = EntailmentOptions(judge="model")

    async def one(case: Case) -> float:
        claims = claims_of.claims(case.response)
        if not claims:
            return 1.0
        passages = [(p.id, p.text) for p in case.context]
        windows = await asyncio.to_thread(make_windows, passages, model.token_count, opts.window_tokens,
                                          opts.stride_tokens)
        scored = await score_claims(model, [c.text for c in claims], passages, opts, windows)
        return min(s.score for s in scored)

    t = time.perf_counter()
    score = await gather_scores(cases, one)
    return JudgeResult(label, score, time.perf_counter() - t)


# -- the table -------------------------------------------------------------------------------------------------

def binary_rows(dataset: str, y: np.ndarray, a: JudgeResult, b: JudgeResult,
                extra: Sequence[JudgeResult] = ()) -> list[list[str]]:
    """One row per judge, then one row per (judge, b) pair: `a` vs `b`, and each of `extra` vs `b`."""
    out = []
    thr = {}
    for r in (a, *extra, b):
        t, ba = best_threshold(r.score, y)
        thr[r.name] = t
        out.append([dataset, r.name, str(len(y)), f"{auroc(r.score, y):.3f}",
                    f"{balanced_accuracy((r.score >= 0.5).astype(int), y):.3f}", f"{ba:.3f} @{t:.2f}",
                    "", "", "", "", f"{1000 * r.seconds / len(y):.1f}"])
    pb = (b.score >= thr[b.name]).astype(int)
    for r in (a, *extra):
        pa = (r.score >= thr[r.name]).astype(int)
        agree = (pa == pb) & (np.abs(r.score - b.score) <= MARGIN)
        out.append(pair_row(dataset, r, b, y, pa, pb, agree))
    return out


def pair_row(dataset: str, a: JudgeResult, b: JudgeResult, y: np.ndarray, pa: np.ndarray, pb: np.ndarray,
             agree: np.ndarray) -> list[str]:
    ca, cb = pa == y, pb == y
    dis = ~agree
    acc_agree = f"{ca[agree].mean():.3f} (n={agree.sum()})" if agree.any() else "-"
    acc_dis = f"{ca[dis].mean():.3f}/{cb[dis].mean():.3f} (n={dis.sum()})" if dis.any() else "-"
    both = f"{(~ca & ~cb).mean():.3f} vs {(~ca).mean() * (~cb).mean():.3f}"
    return [dataset, f"{a.name} vs {b.name}", str(len(y)), "", "", "", f"{agree.mean():.3f}", acc_agree, acc_dis,
            both, ""]


async def snli_rows(nli: NliModelJudge, align: AlignmentJudge, limit: int | None) -> list[list[str]]:
    data = rows("snli_test", limit)
    pairs = [(r["context"], r["response"]) for r in data]
    y = np.array([LABELS.index(r["label"]) for r in data])
    out, preds = [], {}
    for j in (nli, align):
        t = time.perf_counter()
        probs = np.concatenate([await j.score(pairs[i:i + 256]) for i in range(0, len(pairs), 256)])
        secs = time.perf_counter() - t
        preds[j.name] = probs.argmax(axis=1)
        out.append(["snli_test (3-way)", j.name, str(len(y)), "", "", f"{balanced_accuracy(preds[j.name], y):.3f}",
                    "", "", "", "", f"{1000 * secs / len(y):.1f}"])
    pa, pb = preds[nli.name], preds[align.name]
    agree = pa == pb
    ra, rb = JudgeResult(nli.name, np.zeros(0), 0), JudgeResult(align.name, np.zeros(0), 0)
    out.append(pair_row("snli_test (3-way)", ra, rb, y, pa, pb, agree))
    return out


async def _latency_rows(title: str, make: Any, variants: list[tuple[str, dict[str, Any]]], cases: list[Case]
                        ) -> list[list[str]]:
    """Sequential per-case latency (concurrency 1) of one invariant under each judge setting; +% vs the first."""
    out, base = [], None
    for label, opts in variants:
        inv = make(opts)
        await inv.load()
        for case in cases[:5]:
            await inv.check(case)
        lat, ran = [], 0
        for case in cases:
            t = time.perf_counter()
            v = await inv.check(case)
            lat.append(time.perf_counter() - t)
            ran += "judges_disagree" in v.details
        mean = statistics.fmean(lat) * 1000
        base = base or mean
        p50, p99 = np.percentile(np.array(lat) * 1000, [50, 99])
        out.append([title, label, str(len(cases)), "", "", "", f"secondary ran {ran}", "", "",
                    f"mean {mean:.1f} p50 {p50:.1f} p99 {p99:.1f} ms", f"{100 * (mean / base - 1):+.1f}%"])
    return out


async def latency_rows(zoo: ModelZoo, cases: list[Case], fraction: float) -> list[list[str]]:
    """self_consistency without / with the secondary judge."""
    variants = [("nli only", {"judges": ["nli"]}),
                (f"nli + align @{fraction:g}", {"judges": ["nli", "alignment"], "secondary_fraction": fraction}),
                ("nli + align @1", {"judges": ["nli", "alignment"], "secondary_fraction": 1.0})]
    return await _latency_rows("latency self_consistency", lambda o: SelfConsistencyInvariant(
        0.5, SelfConsistencyInvariant.Options(**o), zoo=zoo), variants, cases)


async def entailment_latency_rows(zoo: ModelZoo, cases: list[Case], fraction: float) -> list[list[str]]:
    """The shipped entailment invariant (halueval_qa) without / with the alignment secondary."""
    variants = [("hybrid only", {}),
                (f"hybrid + align @{fraction:g}", {"judges": ["nli", "alignment"], "secondary_fraction": fraction}),
                ("hybrid + align @1", {"judges": ["nli", "alignment"], "secondary_fraction": 1.0})]
    return await _latency_rows("latency entailment", lambda o: EntailmentInvariant(
        EntailmentInvariant.default_threshold, EntailmentOptions(**o), zoo), variants, cases)


def print_table(table: list[list[str]]) -> None:
    header = ["dataset", "judge", "n", "AUROC", "BA@0.5", "BA@dev-thr", "agree", "acc|agree", "acc|disagree A/B",
              "both wrong obs vs indep", "ms/case"]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="rows per dev set (spread over the file)")
    ap.add_argument("--fraction", type=float, default=SelfConsistencyInvariant.Options().secondary_fraction)
    ap.add_argument("--wice-limit", type=int, default=None, help="rows of wice_claims (long contexts: the slow set)")
    ap.add_argument("--latency-cases", type=int, default=200)
    ap.add_argument("--sets", default="sc,halueval_qa,wice_claims,climate_fever_pairs,snli_test,latency")
    args = ap.parse_args()
    sets = args.sets.split(",")
    zoo = ModelZoo()
    nli, align = NliModelJudge(zoo), AlignmentJudge()
    await nli.load()
    await align.load()
    print(f"# judges: {nli.name} (family {nli.family}) vs alignment (family {align.family}); "
          f"thresholds 'dev-thr' are chosen on the dev set itself; agreement margin {MARGIN}")
    table: list[list[str]] = []
    if "sc" in sets:
        cases, y = sc_cases(args.limit)
        a = await sc_scores(zoo, "nli", cases)
        a.name = "nli"
        b = await sc_scores(zoo, "alignment", cases)
        b.name = "align"
        table += binary_rows("chatprotect (self_consistency)", y, a, b)
        norm = await sc_scores(zoo, "nli", cases, contradiction="normalized")
        t, ba = best_threshold(norm.score, y)
        table.append(["chatprotect (self_consistency)", "nli normalized", str(len(y)), f"{auroc(norm.score, y):.3f}",
                      f"{balanced_accuracy((norm.score >= 0.5).astype(int), y):.3f}", f"{ba:.3f} @{t:.2f}",
                      "", "", "", "", f"{1000 * norm.seconds / len(y):.1f}"])
    claims_of = EntailmentInvariant(0.5, EntailmentOptions(judge="model"), zoo)
    shipped = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), zoo)
    await shipped.load()
    nli_model = await zoo.load_nli(None)
    for name in ("halueval_qa", "wice_claims", "climate_fever_pairs"):
        if name not in sets:
            continue
        cases, y = grounded_cases(name, args.wice_limit if name == "wice_claims" and args.wice_limit else args.limit)
        a = await grounded_scores(nli_model, "nli", cases, claims_of)
        h = await shipped_scores(shipped, cases)
        b = await grounded_scores(JudgeAsModel(align, nli_model.token_count), "align", cases, claims_of)
        table += binary_rows(name, y, a, b, extra=[h])
    if "snli_test" in sets:
        table += await snli_rows(nli, align, args.limit)
    if "latency" in sets:
        cases, _ = sc_cases(None)
        table += await latency_rows(zoo, cases[: args.latency_cases], args.fraction)
        cases, _ = grounded_cases("halueval_qa", None)
        table += await entailment_latency_rows(zoo, cases[: args.latency_cases], args.fraction)
    print_table(table)
    await zoo.close()


if __name__ == "__main__":
    asyncio.run(main())
