"""`guardrail metamorph`: label-free metamorphic tests of a system under test, or of our own judges.

    guardrail metamorph DATASET... [--sut judges|URL|MODULE:FUNCTION] [--relation NAME]... [--monotonicity]
                                   [--relations FILE.yaml] [--relations-module MODULE] [--fail-if EXPR]...
    guardrail metamorph review (--anchor-set NAME | --since DATE [--until DATE]) [flags]
    guardrail metamorph relations [--relations FILE.yaml] [--relations-module MODULE]

Seeds are any dataset `guardrail eval` reads (or review-store samples); each relation turns a seed into a follow-up
case, both are run on the system under test, and the relation is checked on the two outputs. Results go to --out in
the eval schema (`RELATION@TARGET` rows), with report.html / report.md; `--fail-if "negation@entailment.violation_rate
> 0.2"` gates on a relation's failure rate (`*@entailment...` for every relation on entailment).

Exit codes: 0 done (all gates pass), 1 a --fail-if gate tripped, 2 bad input or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardrail_server.cli.common import add_config_flags, config_from_args, review_store_in_use

EXIT_GATE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metamorph", help="metamorphic relations and monotonicity on a system under test or our judges",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="seed datasets (any format `guardrail eval` reads), or `review`, or `relations`")
    p.add_argument("--sut", default="judges",
                   help="system under test: `judges` (our invariants, default), an OpenAI-compatible base URL "
                        "(http://host:8000/v1, with --sut-model), or MODULE:FUNCTION / FILE.py:FUNCTION")
    p.add_argument("--sut-model", help="model id to ask a --sut endpoint for")
    p.add_argument("--sut-api-key-env", metavar="VAR", help="environment variable holding the endpoint's API key")
    p.add_argument("--relation", "-r", action="append", default=[],
                   help="relation or family to run (repeatable; default: all). See `guardrail metamorph relations`")
    p.add_argument("--relations", dest="relations_yaml", action="append", default=[], metavar="FILE.yaml",
                   help="user-defined relations from YAML (repeatable)")
    p.add_argument("--relations-module", action="append", default=[], metavar="MODULE",
                   help="user-defined Relation subclasses from a module or .py file (repeatable)")
    p.add_argument("--invariant", "-i", action="append", default=[], help="judges: only these invariants")
    p.add_argument("--variants", type=int, help="pairs per seed and relation (overrides each relation's setting)")
    p.add_argument("--seed", type=int, default=0, help="global seed of the transformations (default 0)")
    p.add_argument("--limit", type=int, help="only the first N seed cases (per run, after reading every dataset)")
    p.add_argument("--max-pairs", type=int, help="stop generating after N pairs")
    p.add_argument("--monotonicity", action="store_true", help="also run the monotonicity check (nested contexts)")
    p.add_argument("--only-monotonicity", action="store_true", help="the monotonicity check alone, no relations")
    p.add_argument("--levels", type=int, default=3, help="monotonicity: nested contexts per case (default 3)")
    p.add_argument("--out", "-o", help="run directory (default metamorph-runs/<UTC time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the stopped run in --out (give the same seeds, relations and flags)")
    p.add_argument("--concurrency", "-j", type=int, default=16, help="pairs in flight (default 16)")
    p.add_argument("--timeout", type=float, default=60.0, help="judges: per-invariant timeout in seconds")
    p.add_argument("--fail-if", action="append", default=[], metavar="EXPR",
                   help="CI gate on RELATION@TARGET rows, e.g. 'negation@entailment.violation_rate > 0.2' "
                        "(repeatable)")
    p.add_argument("--worst", type=int, default=6, help="worst examples per relation in the report (default 6)")
    p.add_argument("--dry-run", action="store_true", help="generate and count the pairs, print a few, run nothing")
    p.add_argument("--on-malformed", choices=("skip", "fail"), default="skip",
                   help="malformed seed rows are reported with file:line; skip them (default) or fail the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--anchor-set", help="review: seeds from this anchor set (latest version)")
    p.add_argument("--since", help="review: samples created at or after this date/time (ISO 8601)")
    p.add_argument("--until", help="review: samples created before this date/time (ISO 8601)")
    p.add_argument("--review-url", help="review: store URL (default: review.url from config)")
    add_config_flags(p)
    p.set_defaults(handler=run)


def _usage(message: str) -> int:
    print(f"guardrail metamorph: {message}", file=sys.stderr)
    return EXIT_USAGE


def _relations(args: argparse.Namespace) -> list[Any]:
    from guardrail_server.metamorph.relations import build_relations

    relations = build_relations(args.relation, modules=args.relations_module, yaml_files=args.relations_yaml)
    if args.variants:
        for r in relations:
            r.options = r.options.model_copy(update={"variants": args.variants})
    return relations


def run(args: argparse.Namespace) -> int:
    from guardrail_server.metamorph.relations import RelationError

    mode = args.datasets[0] if args.datasets else ""
    try:
        if mode == "relations":
            return list_relations(args)
        relations = _relations(args) if not args.only_monotonicity else []
    except RelationError as exc:
        return _usage(str(exc))
    if mode == "review":
        return run_review(args, relations)
    if args.anchor_set or args.since or args.until:
        return _usage("--anchor-set/--since/--until belong to `guardrail metamorph review`")
    from guardrail_server.evals.datasets import DatasetError, load_datasets

    if not args.datasets:
        return _usage("give at least one seed DATASET (or `review ...`, or `relations`)")
    try:
        loaded = load_datasets(args.datasets, on_malformed=args.on_malformed, limit=args.limit)
    except DatasetError as exc:
        return _usage(str(exc))
    return run_seeds(args, relations, loaded, {"datasets": [str(d) for d in args.datasets]})


def list_relations(args: argparse.Namespace) -> int:
    for r in _relations(args):
        fields = {k: list(v) for k, v in type(r).default_fields.items()} if r.options.fields is None else list(
            r.options.fields)
        judges = list(r.options.invariants or r.invariants)
        print(f"{r.key}  (family {r.family_name}, expect {r.expect}, judges {judges}, fields {fields})\n"
              f"    {r.summary}\n")
    return 0


def run_review(args: argparse.Namespace, relations: list[Any]) -> int:
    from guardrail_server.evals.review_import import ReviewImportError, load_review_cases

    if len(args.datasets) > 1:
        return _usage("`metamorph review` takes no DATASET files; it reads the review store")
    if not args.anchor_set and not args.since:
        return _usage("metamorph review needs --anchor-set NAME or --since DATE")
    config = config_from_args(args)
    url = args.review_url or config.review.url
    review_store_in_use(url, create=False)
    try:
        loaded, info = load_review_cases(url, anchor_set=args.anchor_set,
                                         since=args.since, until=args.until, limit=args.limit)
    except ReviewImportError as exc:
        return _usage(str(exc))
    return run_seeds(args, relations, loaded, info)


def _config(args: argparse.Namespace) -> Any:
    """The served config, adjusted for offline work like `guardrail eval`: generous timeouts, every judge."""
    config = config_from_args(args)
    extra: list[tuple[str, object]] = [(f"invariants.{name}.timeout_s", args.timeout) for name in config.invariants]
    extra += [(f"invariants.{name}.options.secondary_fraction", 1.0)
              for name in config.invariants if "secondary_fraction" in type(config.options(name)).model_fields]
    return config_from_args(args, extra)


def run_seeds(args: argparse.Namespace, relations: list[Any], loaded: Any, run_info: dict[str, Any]) -> int:
    from guardrail_server.evals.gates import GateSyntaxError, parse_gate
    from guardrail_server.evals.runner import RunError
    from guardrail_server.metamorph.runner import RunSettings
    from guardrail_server.metamorph.sut import SutError, build_sut

    try:
        gates = [parse_gate(g) for g in args.fail_if]
        settings = RunSettings(seed=args.seed, concurrency=args.concurrency, max_pairs=args.max_pairs,
                               relations=not args.only_monotonicity,
                               monotonicity=args.monotonicity or args.only_monotonicity, levels=args.levels,
                               worst=args.worst)
    except (GateSyntaxError, ValueError) as exc:
        return _usage(str(exc))
    for m in loaded.malformed[:20]:
        print(f"  skipping malformed row: {m}", file=sys.stderr)
    config = _config(args) if args.sut == "judges" or settings.monotonicity else None
    try:
        sut = build_sut(args.sut, config=config, invariants=args.invariant, model=args.sut_model,
                        api_key_env=args.sut_api_key_env)
    except SutError as exc:
        return _usage(str(exc))
    if args.dry_run:
        return _dry_run(sut, relations, loaded, settings)
    from guardrail_server.logs import configure_logging

    if config is not None:
        configure_logging("warning" if config.logging.level in ("debug", "info") else config.logging.level,
                          config.logging.format)
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    meter = None
    if settings.monotonicity and sut.kind != "judges":
        from guardrail_server.config import zoo_settings
        from guardrail_server.metamorph.specificity import SpecificityMeter
        from guardrail_models.zoo import ModelZoo

        meter = SpecificityMeter(ModelZoo(zoo_settings(config)),
                                 model=getattr(config.options("entailment"), "model", None)
                                 if "entailment" in config.invariants else None)
    if args.resume and not args.out:
        return _usage("--resume needs --out (the run directory to continue)")
    out_dir = Path(args.out or f"metamorph-runs/{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
    run_info = {**run_info, "argv": sys.argv[1:]}
    try:
        outcome = asyncio.run(_run(sut, relations, loaded, out_dir, settings, run_info, meter, not args.no_progress,
                                   args.resume))
    except RunError as exc:
        return _usage(str(exc))
    return _finish(outcome, gates, settings)


def _dry_run(sut: Any, relations: list[Any], loaded: Any, settings: Any) -> int:
    from collections import Counter

    from guardrail_server.metamorph.runner import generate

    targets = tuple(sut.requested) if getattr(sut, "requested", ()) else (
        ("entailment", "reference_integrity", "pii_boundary", "self_consistency") if sut.kind == "judges"
        else ("sut",))
    gen = generate(loaded.cases, relations, sut, targets, settings)
    tests = Counter(f"{p.relation}@{t}" for p, _, _ in gen.pairs for t in p.targets)
    print(f"{len(gen.pairs)} pairs from {gen.seeds_used} of {len(loaded.cases)} seed cases")
    for key, n in sorted(tests.items()):
        print(f"  {key}: {n}")
    for rel, n in sorted(gen.not_applicable.items()):
        print(f"  {rel}: did not apply to {n} seed(s)")
    for pair, _, _ in gen.pairs[:5]:
        print(f"\n{pair.id}:")
        for e in pair.edits[:4]:
            print(f"  {e.describe()[:200]}")
    for err in gen.transform_errors[:10]:
        print(f"  transform error: {err}", file=sys.stderr)
    return 0


async def _run(sut: Any, relations: list[Any], loaded: Any, out_dir: Path, settings: Any, run_info: dict[str, Any],
               meter: Any, progress: bool, resume: bool) -> Any:
    from guardrail_server.metamorph.runner import run_metamorph

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        print("\nguardrail metamorph: interrupted; writing what is done (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        return await run_metamorph(sut, relations, loaded, out_dir, settings, stop=stop, progress=progress,
                                   run_info=run_info, meter=meter, resume=resume)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _finish(outcome: Any, gates: list[Any], settings: Any) -> int:
    from guardrail_server.evals.gates import evaluate
    from guardrail_server.evals.results import read_manifest
    from guardrail_server.evals.summary import summarize
    from guardrail_server.metamorph.report import write_metamorph_reports

    summary = summarize(outcome.rows)
    results = evaluate(gates, summary) if outcome.status == "complete" else []
    gate_lines = [r.message for r in results]
    manifest = read_manifest(outcome.out_dir)
    html_path, _, markdown = write_metamorph_reports(outcome.out_dir, outcome.rows, manifest, gate_lines,
                                                     settings.worst)
    print(markdown)
    gen = outcome.generated
    if gen is not None and gen.transform_errors:
        print(f"guardrail metamorph: {len(gen.transform_errors)} transformation(s) raised (listed in run.json), "
              f"first: {gen.transform_errors[0]}", file=sys.stderr)
    print(f"{outcome.pairs} pairs, {outcome.tests} tests, {outcome.sut_calls} system calls in {outcome.run_s:.1f} s "
          f"({outcome.tests_per_s:.2f} tests/s) after {outcome.elapsed_s - outcome.run_s:.1f} s of loading; "
          f"report: {html_path}", file=sys.stderr)
    if outcome.status == "interrupted":
        print(f"guardrail metamorph: stopped; continue with the same command plus --resume --out {outcome.out_dir}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if any(r.tripped for r in results):
        print("guardrail metamorph: gate(s) failed:\n  " + "\n  ".join(r.message for r in results if r.tripped),
              file=sys.stderr)
        return EXIT_GATE
    return 0
