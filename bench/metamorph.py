"""Our judges as a system under test: failure rate of every metamorphic relation per invariant over ../shared/data/dev,
and tests per second — through the one path users run (`guardrail_server.metamorph.runner.run_metamorph` on
`JudgesSUT`, i.e. `CheckEngine.check`).

    python -m bench.metamorph [--per-file 150] [--model NAME] [--set KEY=VALUE]... [--out DIR] [--seed 0]

Seeds: a seeded sample of `--per-file` rows of each dev file that speaks to an invariant — entailment: halueval_qa,
wice_claims, climate_fever_pairs, snli_test, anli_dev; pii_boundary: presidio_pii (a #leak and an #asked case per
row); reference_integrity: the same WiCE rows with the claim citing its best-matching passage (`claim [k]`, k by
BM25) — no dev set carries citation markers, and reference_integrity runs with `support_check: true`, without which
it is pure id parsing and trivially invariant. self_consistency is not measured (no relation targets it).

Every relation runs with its defaults (one pair per seed and relation, seed 0), plus monotonicity on nested
contexts. Printed: one row per relation x invariant — tests (pairs the relation constrains), failures, failure rate
with its 95% Wilson interval, inconclusive pairs, and for "same" relations the mean absolute change of the judge's
score and the share of pairs where it moved by more than 0.1 (sensitivity short of a flip) — then the run's pairs,
system calls and tests/s, the failure rate per dataset for entailment, and the pii_boundary name probe (every
curated name in two fixed sentences: the demographic swap done exhaustively, since dev seeds hold few listed
names). `--model` swaps the entailment invariant's model for another one in the zoo (reference_integrity's
support check keeps the zoo's default model, `guardrail_models.zoo.DEFAULT_NLI`); with the same seed the pairs are identical,
so two runs compare pair by pair: `guardrail eval compare OUT_A OUT_B`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from guardrail_server.config import load_config, parse_set_flags
from guardrail_server.evals.datasets import EvalCase, LoadedDataset, load_datasets
from guardrail_server.evals.summary import summarize
from guardrail_server.logs import configure_logging
from guardrail_server.metamorph.relations import build_relations
from guardrail_server.metamorph.report import write_metamorph_reports
from guardrail_server.metamorph.runner import RunSettings, run_metamorph
from guardrail_server.metamorph.sut import JudgesSUT
from guardrail_invariants.text import Bm25

DATA = Path(os.environ.get("GUARDRAIL_DATA", "/work/shared/data"))
ENTAILMENT_SETS = ("halueval_qa", "wice_claims", "climate_fever_pairs", "snli_test", "anli_dev")
PII_SET = "presidio_pii"


def sample_rows(path: Path, n: int, seed: int) -> list[str]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if n >= len(lines):
        return lines
    return random.Random(f"{seed}:{path.name}").sample(lines, n)


def cited(item: EvalCase) -> EvalCase | None:
    """The WiCE claim citing its best-matching passage: a response whose citation resolves."""
    passages = item.case.context
    if len(passages) < 2:
        return None
    best = Bm25([p.text for p in passages]).top_k(item.case.response, 1)[0]
    from dataclasses import replace

    case = replace(item.case, response=f"{item.case.response.rstrip()} [{passages[best].id}]",
                   request_id=f"{item.id}#cited")
    return EvalCase(case, "wice_claims_cited", item.source, "claim_attribution_cited", item.label,
                    {"reference_integrity": True})


def seeds(per_file: int, seed: int, tmp: Path, only: list[str] | None = None) -> LoadedDataset:
    files = []
    for name in only or (*ENTAILMENT_SETS, PII_SET):
        path = DATA / "dev" / f"{name}.jsonl"
        out = tmp / f"{name}.jsonl"
        out.write_text("\n".join(sample_rows(path, per_file, seed)) + "\n", encoding="utf-8")
        files.append(out)
    loaded = load_datasets(files)
    extra = [c for c in (cited(i) for i in loaded.cases if i.dataset == "wice_claims") if c is not None]
    return LoadedDataset(loaded.cases + extra, loaded.malformed)


def bench_config(model: str | None, sets: list[str]) -> Any:
    overrides: list[tuple[str, Any]] = [
        ("review.enabled", False), ("workers.mode", "inline"), ("workers.count", 16),
        ("admission.max_queue", 256),
        ("invariants.self_consistency.enabled", False),
        ("invariants.reference_integrity.options.support_check", True),
    ] + [(f"invariants.{n}.timeout_s", 600.0) for n in ("entailment", "reference_integrity", "pii_boundary")]
    if model:
        overrides.append(("invariants.entailment.options.model", model))
    overrides += parse_set_flags(sets)
    return load_config(None, environ={}, overrides=overrides)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:5.1f}%"


def print_table(rows: list[dict[str, Any]], manifest: dict[str, Any], judges: dict[str, str]) -> None:
    summary = summarize(rows)
    print(f"\nMetamorphic relations on our judges — {manifest['cases_total']} seed cases from ../shared/data/dev "
          f"({manifest['seeds_used']} used), {manifest['pairs']} pairs, seed {manifest['settings']['seed']}")
    print("judges: " + ", ".join(f"{k} = {v}" for k, v in judges.items()))
    head = f"{'relation':<24} {'invariant':<20} {'expect':<8} {'tests':>6} {'fail':>5} {'rate':>7}  {'95% CI':<17} " \
           f"{'inconcl.':>8} {'err':>4} {'mean|ds|':>8} {'|ds|>.1':>7}"
    deltas: dict[str, list[float]] = defaultdict(list)  # score change of the judge between the two sides
    for r in rows:
        relation = r["invariant"].split("@")[0]
        if r["outcome"] in ("pass", "fail") and manifest["relations"].get(relation, {}).get("expect") == "same":
            deltas[r["invariant"]].append(1.0 - r["score"])
    print(head)
    print("-" * len(head))
    for key, s in summary.items():
        relation, _, target = key.partition("@")
        expect = manifest["relations"].get(relation, {}).get("expect", "monotone")
        print(f"{relation:<24} {target:<20} {expect:<8} {s['n_pass'] + s['n_fail']:>6} {s['n_fail']:>5} "
              f"{_pct(s['violation_rate']):>7}  [{_pct(s['violation_rate_low'])}, {_pct(s['violation_rate_high'])}] "
              f"{s['n_skipped']:>8} {s['n_error']:>4} "
              + (f"{sum(d) / len(d):>8.3f} {_pct(sum(x > 0.1 for x in d) / len(d)):>7}" if (d := deltas.get(key))
                 else f"{'–':>8} {'–':>7}"))
    print(f"\n{manifest['tests']} tests (pass+fail rows), {manifest['rows']} rows, {manifest['sut_calls']} judge calls "
          f"in {manifest['run_s']:.1f} s: {manifest['tests_per_s']:.2f} tests/s, "
          f"{manifest['sut_calls'] / manifest['run_s']:.2f} calls/s (model loading excluded: "
          f"{manifest['elapsed_s'] - manifest['run_s']:.1f} s)")
    per_ds: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in rows:
        if r["invariant"].endswith("@entailment") and r["outcome"] in ("pass", "fail"):
            cell = per_ds[r["invariant"].split("@")[0]][r["dataset"]]
            cell[0] += r["outcome"] == "fail"
            cell[1] += 1
    datasets = sorted({d for v in per_ds.values() for d in v})
    print("\nentailment failure rate per dataset (failures/tests)")
    print(f"{'relation':<24} " + " ".join(f"{d[:19]:>19}" for d in datasets))
    for rel in sorted(per_ds):
        print(f"{rel:<24} " + " ".join(
            f"{(f'{_pct(c[0] / c[1])} ({c[0]}/{c[1]})' if (c := per_ds[rel].get(d)) else '–'):>19}"
            for d in datasets))


NAME_TEMPLATES = ("My name is {given}.", "Please call {given} {surname} tomorrow about the invoice.")


async def name_probe(config: Any) -> None:
    """The demographic_swap relation, exhaustively on pii_boundary: every given name of the curated lists in two
    fixed sentences, the passage marked private (so a detected name is a leak). A judge without the blind spot
    detects every group alike; dev seeds hold too few of these names for the relation to show it."""
    from guardrail_server.metamorph.relations.demographic import lists
    from guardrail_invariants.types import Case, Passage

    sut = JudgesSUT(config, ["pii_boundary"])
    await sut.start()
    lx = lists()
    print("\npii_boundary: share of names detected as a leak (private passage), by list (demographic_swap, "
          "exhaustively)")
    print(f"{'gender':<7} {'group':<17} " + " ".join(f"{t[:28]:>30}" for t in NAME_TEMPLATES))
    try:
        for (gender, group), names in sorted(lx.by_slot.items()):
            cells = []
            for template in NAME_TEMPLATES:
                surnames = lx.surnames[group]
                texts = [template.format(given=n, surname=surnames[i % len(surnames)]) for i, n in enumerate(names)]
                outs = await asyncio.gather(*(sut.run(Case(response=t, context=(
                    Passage("1", t, sensitivity="private"),)), ["pii_boundary"]) for t in texts))
                hits = sum(o["pii_boundary"].label == "fail" for o in outs)
                cells.append(f"{_pct(hits / len(texts))} ({hits}/{len(texts)})")
            print(f"{gender:<7} {group:<17} " + " ".join(f"{c:>30}" for c in cells))
    finally:
        await sut.close()


async def main_async(args: argparse.Namespace) -> None:
    configure_logging("warning", "json")
    tmp = Path(tempfile.mkdtemp(prefix="bench-metamorph-"))
    loaded = seeds(args.per_file, args.seed, tmp, args.file)
    config = bench_config(args.model, args.set)
    relations = build_relations(args.relation)
    out = Path(args.out or tmp / "run")
    sut = JudgesSUT(config)
    settings = RunSettings(seed=args.seed, concurrency=args.concurrency, monotonicity=not args.no_monotonicity)
    started = time.perf_counter()
    outcome = await run_metamorph(sut, relations, loaded, out, settings, progress=not args.no_progress,
                                  run_info={"datasets": [str(DATA / "dev")], "bench": vars(args)})
    manifest = json.loads((out / "run.json").read_text())
    write_metamorph_reports(out, outcome.rows, manifest)
    print_table(outcome.rows, manifest, manifest["sut"].get("judges", {}))
    if not args.no_name_probe:
        await name_probe(config)
    print(f"\nrun directory: {out} (report.html; compare runs with `guardrail eval compare`); wall "
          f"{time.perf_counter() - started:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-file", type=int, default=150, help="seed rows sampled from each dev file (default 150)")
    p.add_argument("--model", help="entailment NLI model from the zoo (default: the shipped one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--relation", action="append", default=[], help="only these relations/families")
    p.add_argument("--file", action="append", choices=(*ENTAILMENT_SETS, PII_SET),
                   help="only these dev files (default: all six; wice_claims also gives the cited seeds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--no-monotonicity", action="store_true")
    p.add_argument("--no-name-probe", action="store_true", help="skip the pii_boundary name-list probe")
    p.add_argument("--out", help="run directory (default: a temp dir)")
    p.add_argument("--no-progress", action="store_true")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
