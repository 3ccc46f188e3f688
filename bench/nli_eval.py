"""Accuracy of the NLI judges on the dev sets, measured through the one path users run: `guardrail eval`.

`python -m bench.nli_eval [--model NAME ...] [--judge hybrid|model ...] [--models-dir DIR] [--limit N] [--latency]
[--write-manifest]` prints, per model and judge, one table in one run:
  - halueval_qa, wice_claims (supported vs rest), climate_fever_pairs (entailment vs rest), and any extra
    `--dataset FILE` (summary/dialogue groundedness...): AUROC and balanced accuracy at the threshold the service
    would use (the invariant's configured default), each next to word overlap's AUROC — the invariant's own claims,
    min over claims of the share of content words found in the context — and the margin over it;
  - chatprotect self-consistency AUROC (the self_consistency invariant with the same model);
  - SNLI test / ANLI dev 3-way accuracy of the raw model (eval only);
  - with `--latency`: p50/p99 of one entailment check over ~500 and ~2,000-token contexts (bench.check_latency, the
    cases and measurement of bench.entailment).
Every dev number comes from `run_eval` + `summarize_invariant` on `LocalBackend` (the servicer's `CheckEngine`), the
rows in `--out`; nothing here windows or scores on its own. `--write-manifest` stores the figures in the model's
manifest, with a 40-case slice that `tests/test_nli_eval_manifest.py` recomputes. dev/ is measured, never trained on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_models.runtime import int8_kernels
from guardrail_server.config import DEFAULT_INVARIANTS, Config, load_config
from guardrail_server.evals.backends import LocalBackend
from guardrail_server.evals.datasets import EvalCase, load_datasets
from guardrail_server.evals.results import read_rows
from guardrail_server.evals.runner import run_eval
from guardrail_server.evals.summary import summarize_invariant
from guardrail_server.logs import configure_logging
from guardrail_invariants.citations import claim_sentences
from guardrail_invariants.stats import auroc
from guardrail_invariants.text import content_words, coverage, is_non_claim

DATA = Path(os.environ.get("GUARDRAIL_DATA", "/work/shared/data"))
ENTAILMENT_SETS = ("halueval_qa", "wice_claims", "climate_fever_pairs")
CONSISTENCY_SET = "chatprotect_selfcontradiction"
LABELS = ["entailment", "neutral", "contradiction"]
SLICE = ("halueval_qa", 40)  # the slice the manifest test recomputes
REWORDING_SET = Path(__file__).resolve().parents[1] / "data/rewording_dev/rewording_dev_v1.jsonl"
SHIP_RULE_SETS = (*ENTAILMENT_SETS, "rewording_dev_v1")


@dataclass(frozen=True, slots=True)
class SetResult:
    dataset: str
    n: int
    auroc: float | None
    balanced_accuracy: float | None
    threshold: float | None
    best_threshold: float | None
    word_overlap_auroc: float | None
    n_skipped: int
    slice_auroc: float | None = None
    slice_balanced_accuracy: float | None = None
    flagged_correct: float | None = None  # share of the cases labelled correct that the judge did not pass
    caught_wrong: float | None = None  # share of the cases labelled wrong that the judge did not pass


def eval_config(invariant: str, model: str | None, judge: str, models_dir: str | None,
                threshold: float | None = None, extra_options: dict[str, Any] | None = None) -> Config:
    """Only `invariant` enabled, on `model`, with the service's defaults for everything else — except the timeout:
    accuracy is measured here, so a check slowed by a busy machine must not turn into an `error` row (latency is
    measured on its own, `--latency`). `extra_options` go into the invariant's options (bench.profile_check's
    levers)."""
    options: dict[str, Any] = {"model": model, "judge": judge} if invariant == "entailment" else {
        "judges": [{"kind": "nli", **({"model": model} if model else {})}]}
    options.update(extra_options or {})
    invariants: dict[str, dict[str, Any]] = {name: {**policy, "enabled": name == invariant}
                                             for name, policy in DEFAULT_INVARIANTS.items()}
    invariants[invariant].update(options=options, timeout_s=600.0)
    if threshold is not None and invariant == "entailment":
        invariants[invariant]["threshold"] = threshold
    overrides: list[tuple[str, Any]] = [("invariants", invariants), ("review.enabled", False)]
    if models_dir:
        overrides.append(("models.dir", models_dir))
    return load_config(None, environ={}, overrides=overrides)


def word_overlap(item: EvalCase) -> float:
    """The lexical baseline on the invariant's own claims: min over claims of content-word coverage."""
    vocab = set(content_words(" ".join(p.text for p in item.case.context)))
    claims = [c.text for c in claim_sentences(item.case.response, item.case.context) if not is_non_claim(c.text)]
    return min((coverage(c, vocab) for c in claims), default=1.0)


async def evaluate_set(path: Path, invariant: str, model: str | None, judge: str, *, models_dir: str | None = None,
                       limit: int | None = None, out_dir: Path | None = None,
                       threshold: float | None = None, options: dict[str, Any] | None = None) -> SetResult:
    """`guardrail eval` on one file (in process, the servicer's engine), summarized as the eval report does;
    `options`: more options of the invariant (e.g. a speed lever of entailment)."""
    loaded = load_datasets([path], limit=limit)
    out = Path(out_dir or tempfile.mkdtemp(prefix="nli_eval_"))
    await run_eval(LocalBackend(eval_config(invariant, model, judge, models_dir, threshold, options)), loaded, out,
                   requested=[invariant], progress=False)
    rows = [r for r in read_rows(out) if r["invariant"] == invariant]
    summary = summarize_invariant(rows)
    labeled = summary["labeled"] or {}
    holds = np.array([not item.expected[invariant] for item in loaded.cases])  # True = violation
    lexical = np.array([word_overlap(item) for item in loaded.cases]) if invariant == "entailment" else None
    good = [r for r in rows if r.get("expected") == "pass"]
    bad = [r for r in rows if r.get("expected") == "fail"]
    result = SetResult(
        path.name.split(".")[0], len(rows), labeled.get("auroc"), labeled.get("balanced_accuracy"),
        summary["threshold"], labeled.get("best_threshold"),
        auroc(1.0 - lexical, holds) if lexical is not None else None, labeled.get("n_skipped", 0),
        flagged_correct=sum(r["outcome"] != "pass" for r in good) / len(good) if good else None,
        caught_wrong=sum(r["outcome"] != "pass" for r in bad) / len(bad) if bad else None)
    if result.dataset == SLICE[0]:
        first = {item.id for item in loaded.cases[: SLICE[1]]}
        part = summarize_invariant([r for r in rows if r["case_id"] in first])["labeled"] or {}
        result = replace(result, slice_auroc=part.get("auroc"), slice_balanced_accuracy=part.get("balanced_accuracy"))
    return result


def load_dev(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (DATA / "dev" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return rows[:limit] if limit else rows


async def three_way(model: str | None, models_dir: str | None, name: str, limit: int | None) -> tuple[float, float]:
    """3-way accuracy of the raw model, and AUROC of P(entailment) for entailment vs the rest (SNLI/ANLI premises are
    short: one pair each, no windows)."""
    from guardrail_models.zoo import ModelZoo, ZooSettings

    zoo = ModelZoo(ZooSettings(models_dir=Path(models_dir) if models_dir else None))
    nli = await zoo.load_nli(model)
    rows = load_dev(name, limit)
    probs = np.concatenate([await asyncio.to_thread(nli.predict_sync, [(r["context"], r["response"])])
                            for r in rows])
    await zoo.close()
    gold = np.array([LABELS.index(r["label"]) for r in rows])
    return float((probs.argmax(1) == gold).mean()), float(auroc(probs[:, 0], gold == 0))


async def latency(model: str | None, models_dir: str | None, judge: str, n: int) -> dict[str, float]:
    from bench.check_latency import latency as check_latency
    from bench.check_latency import make_cases
    from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions
    from guardrail_models.zoo import ModelZoo, ZooSettings

    zoo = ModelZoo(ZooSettings(models_dir=Path(models_dir) if models_dir else None))
    inv = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(model=model, judge=judge), zoo)
    await inv.load()
    out = {}
    for tokens in (500, 2000):
        p50, p99, pairs, _ = await check_latency(inv, make_cases(n, tokens, inv.model.token_count, seed=tokens))
        out |= {f"p50_ms_{tokens}": round(p50 * 1000, 1), f"p99_ms_{tokens}": round(p99 * 1000, 1),
                f"pairs_{tokens}": round(pairs, 1)}
    await zoo.close()
    return out


async def evaluate_model(model: str | None, judge: str, *, models_dir: str | None = None, limit: int | None = None,
                         datasets: tuple[str, ...] = (), latency_cases: int = 0,
                         threshold: float | None = None) -> dict[str, Any]:
    files = [DATA / "dev" / f"{s}.jsonl" for s in ENTAILMENT_SETS] + [REWORDING_SET] + [Path(p) for p in datasets]
    sets = []
    for f in files:
        sets.append(await evaluate_set(f, "entailment", model, judge, models_dir=models_dir, limit=limit,
                                       threshold=threshold))
        print(f"  {model or 'default'} / {judge} / {sets[-1].dataset}: AUROC {_f(sets[-1].auroc)}", flush=True)
    chat = await evaluate_set(DATA / "dev" / f"{CONSISTENCY_SET}.jsonl", "self_consistency", model, judge,
                              models_dir=models_dir, limit=limit)
    snli_acc, snli_auroc = await three_way(model, models_dir, "snli_test", limit)
    anli_acc, _ = await three_way(model, models_dir, "anli_dev", limit)
    out: dict[str, Any] = {"sets": sets, "chatprotect": chat, "snli_test_acc3": snli_acc, "anli_dev_acc3": anli_acc,
                           "snli_test_entailment_auroc": snli_auroc}
    out["ship_rule_mean_auroc"] = ship_rule_mean(out)
    if latency_cases:
        out["latency"] = await latency(model, models_dir, judge, latency_cases)
    return out


def ship_rule_mean(r: dict[str, Any]) -> float | None:
    """The mean AUROC issue 19's ship rule compares: halueval_qa, wice_claims, climate_fever, the rewording set and
    SNLI (entailment vs rest). A new judge replaces the shipped one when this is higher and no set is worse by > 0.03."""
    sets = {s.dataset: s.auroc for s in r["sets"]}
    values = [sets.get(n) for n in SHIP_RULE_SETS] + [r.get("snli_test_entailment_auroc")]
    return None if any(v is None for v in values) else float(np.mean(values))


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(model: str, judge: str, r: dict[str, Any]) -> str:
    thr = next((s.threshold for s in r["sets"] if s.threshold is not None), None)
    lines = [f"model {model}, judge {judge}, shipped threshold {_f(thr, 3)}",
             f"{'set':<24}{'n':>6}{'AUROC':>8}{'bal.acc':>9}{'word overlap':>14}{'margin':>8}{'skipped':>9}"
             f"{'best thr (dev)':>16}{'correct flagged':>17}{'wrong caught':>14}"]
    for s in r["sets"]:
        margin = None if s.auroc is None or s.word_overlap_auroc is None else s.auroc - s.word_overlap_auroc
        lines.append(f"{s.dataset:<24}{s.n:>6}{_f(s.auroc):>8}{_f(s.balanced_accuracy):>9}"
                     f"{_f(s.word_overlap_auroc):>14}{_f(margin, 3) if margin is None else f'{margin:+.3f}':>8}"
                     f"{s.n_skipped:>9}{_f(s.best_threshold, 2):>16}{_f(s.flagged_correct, 2):>17}"
                     f"{_f(s.caught_wrong, 2):>14}")
    c = r["chatprotect"]
    lines.append(f"{'chatprotect (self_cons.)':<24}{c.n:>6}{_f(c.auroc):>8}{_f(c.balanced_accuracy):>9}"
                 f"{'':>14}{'':>8}{c.n_skipped:>9}{_f(c.best_threshold, 2):>16}")
    lines.append(f"SNLI test 3-way acc {_f(r['snli_test_acc3'])} (entailment vs rest AUROC "
                 f"{_f(r.get('snli_test_entailment_auroc'))}) · ANLI dev 3-way acc {_f(r['anli_dev_acc3'])}")
    lines.append(f"ship-rule mean AUROC (halueval, wice, climate, rewording, SNLI e-vs-rest): "
                 f"{_f(r.get('ship_rule_mean_auroc'))}")
    if "latency" in r:
        lat = r["latency"]
        lines.append(f"latency p50/p99 ms: ~500 tokens {lat['p50_ms_500']}/{lat['p99_ms_500']} "
                     f"({lat['pairs_500']} pairs) · ~2,000 tokens {lat['p50_ms_2000']}/{lat['p99_ms_2000']} "
                     f"({lat['pairs_2000']} pairs)")
    return "\n".join(lines)


def manifest_metrics(judge: str, r: dict[str, Any], command: str) -> dict[str, Any]:
    sets = {s.dataset: s for s in r["sets"]}
    halu = sets.get(SLICE[0])
    kernels = int8_kernels()
    return {
        "measured_by": command + " (guardrail eval in process; dev/ only measured, never trained on)",
        "int8_kernels": kernels,
        "judge": judge,
        "threshold": next((s.threshold for s in r["sets"] if s.threshold is not None), None),
        "dev": {name: {"n": s.n, "auroc": _round(s.auroc), "balanced_accuracy": _round(s.balanced_accuracy),
                       "word_overlap_auroc": _round(s.word_overlap_auroc), "n_skipped": s.n_skipped,
                       "flagged_correct": _round(s.flagged_correct), "caught_wrong": _round(s.caught_wrong)}
                for name, s in sets.items()},
        "chatprotect_self_consistency_auroc": _round(r["chatprotect"].auroc),
        "snli_test_acc3": _round(r["snli_test_acc3"]), "anli_dev_acc3": _round(r["anli_dev_acc3"]),
        "snli_test_entailment_auroc": _round(r.get("snli_test_entailment_auroc")),
        "ship_rule_mean_auroc": _round(r.get("ship_rule_mean_auroc")),
        **({"latency": r["latency"]} if "latency" in r else {}),
        "slice": {"dataset": SLICE[0], "first_cases": SLICE[1], "by_int8_kernels": {kernels: {
            "auroc": halu.slice_auroc if halu else None,
            "balanced_accuracy": halu.slice_balanced_accuracy if halu else None}}},
    }


def keep_other_kernels(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """The slice measured on the other int8 kernel family stays in the manifest beside this machine's."""
    before = (old or {}).get("slice") or {}
    if (before.get("dataset"), before.get("first_cases")) == (new["slice"]["dataset"], new["slice"]["first_cases"]):
        new["slice"]["by_int8_kernels"] = {**before.get("by_int8_kernels", {}), **new["slice"]["by_int8_kernels"]}
    return new


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="zoo model name (repeatable; default: shipped)")
    ap.add_argument("--judge", action="append", default=[], choices=["hybrid", "model"])
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--dataset", action="append", default=[], help="extra entailment-labelled file (any eval format)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threshold", type=float, default=None, help="entailment threshold (default: the invariant's)")
    ap.add_argument("--latency", type=int, default=0, metavar="N", help="also time N checks per context size")
    ap.add_argument("--write-manifest", action="store_true", help="store the figures in the model's manifest")
    args = ap.parse_args()
    configure_logging("warning")
    for model in args.model or [None]:
        for judge in args.judge or ["hybrid"]:
            r = asyncio.run(evaluate_model(model, judge, models_dir=args.models_dir, limit=args.limit,
                                           datasets=tuple(args.dataset), latency_cases=args.latency,
                                           threshold=args.threshold))
            print(table(model or "default", judge, r), flush=True)
            if args.write_manifest and args.limit is None:
                from guardrail_models.manifest import load_manifest
                from guardrail_models.zoo import ModelZoo, ZooSettings

                directory = ModelZoo(ZooSettings(models_dir=Path(args.models_dir) if args.models_dir else None)
                                     ).model_dir(model)
                manifest = load_manifest(directory)
                command = "python -m bench.nli_eval" + (f" --model {model}" if model else "") + f" --judge {judge}"
                manifest.metrics = keep_other_kernels(manifest_metrics(judge, r, command), manifest.metrics)
                manifest.write(directory)
                print(f"wrote metrics to {directory / 'manifest.json'}")


if __name__ == "__main__":
    main()
