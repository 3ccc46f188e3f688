"""`guardrail eval`: the invariants over datasets, in-process, on Ray, or through a running server.

    guardrail eval DATASET... [--out DIR] [--invariant X] [--target HOST:PORT] [--engine local|ray] [--resume]
                              [--fail-if EXPR]... [--on-malformed skip|fail] [--limit N] [--concurrency N]
    guardrail eval compare RUN_A RUN_B [--json] [--max-flips N]
    guardrail eval review (--anchor-set NAME | --since DATE [--until DATE]) [run flags]

Exit codes: 0 done (all gates pass), 1 a --fail-if gate tripped, 2 bad input or usage, 130 interrupted (Ctrl-C;
continue with --resume).

`eval compare` compares two runs over the same cases (matched by case id): runs that share no case are refused
(exit 2: their rates would compare datasets, not a change); sharing fewer than half of either run's cases is a
warning on stderr and in the report.

--resume continues the run in --out with the arguments it was started with (datasets, --limit, --invariant, --set,
--config, --timeout, the sampler, ...; recorded in run.json) and the same effective configuration. Give none of them,
or the same ones: a different value is refused (exit 2, naming each difference) instead of mixing two runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail_server.cli.common import add_config_flags, config_from_args, mask_url, review_store_in_use
from guardrail_server.config import Config

if TYPE_CHECKING:
    from guardrail_server.evals.backends import Backend

EXIT_GATE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="run the invariants over datasets; `eval compare A B`; `eval review --anchor-set NAME`",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="JSONL / CSV / Parquet files (or `compare RUN_A RUN_B`, or `review`)")
    p.add_argument("--out", "-o", help="run directory (default eval-runs/<UTC time>)")
    p.add_argument("--invariant", "-i", action="append", default=[], help="run only these (repeatable)")
    p.add_argument("--target", "-t", help="evaluate through a running server (CheckStream) at HOST:PORT")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="in-process engine (default local)")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--ray-workers", type=int, default=1, help="engine actors on Ray, each loads the models once")
    p.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="CPUs Ray reserves for each engine actor")
    p.add_argument("--concurrency", "-j", type=int, default=16, help="cases in flight per engine (default 16)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="per-invariant timeout in seconds for in-process engines (evals are not latency-bound)")
    p.add_argument("--limit", type=int, help="evaluate only the first N cases")
    p.add_argument("--secondary-fraction", type=float, default=1.0, metavar="F",
                   help="in-process: share of cases the secondary judges see (default 1.0: every case, so the report "
                        "shows the judges' disagreement rate; a --target server uses its own setting)")
    p.add_argument("--sampler", metavar="URL",
                   help="OpenAI-compatible endpoint of the system under test: cases without samples get --samples "
                        "answers to their question at --sampler-temperature (for self_consistency)")
    p.add_argument("--sampler-model", help="model id to ask the --sampler endpoint for")
    p.add_argument("--samples", type=int, default=5, help="samples per case with --sampler (default 5)")
    p.add_argument("--sampler-temperature", type=float, default=1.0, help="sampling temperature, > 0 (default 1.0)")
    p.add_argument("--sampler-api-key-env", metavar="VAR", help="environment variable holding the endpoint's API key")
    p.add_argument("--resume", action="store_true",
                   help="continue the stopped run in --out with its recorded arguments (different ones are refused)")
    p.add_argument("--connect-timeout", type=float, default=5.0, metavar="S",
                   help="--target: seconds to wait for the server to answer before giving up (default 5)")
    p.add_argument("--fail-if", action="append", default=[], metavar="EXPR",
                   help="CI gate, e.g. 'entailment.violation_rate > 0.05' or '*.error_rate > 0' (repeatable)")
    p.add_argument("--on-malformed", choices=("skip", "fail"), default="skip",
                   help="malformed rows are always reported with file:line; skip them or fail the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="compare: print JSON")
    p.add_argument("--max-flips", type=int, default=50, help="compare: flipped cases to list")
    p.add_argument("--anchor-set", help="review: evaluate this anchor set (latest version)")
    p.add_argument("--since", help="review: samples created at or after this date/time (ISO 8601)")
    p.add_argument("--until", help="review: samples created before this date/time (ISO 8601)")
    p.add_argument("--review-url", help="review: store URL (default: review.url from config)")
    add_config_flags(p)
    p.set_defaults(handler=run)


def _usage(message: str) -> int:
    print(f"guardrail eval: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    if args.resume and (args.datasets[:1] != ["compare"]):
        problem = reconcile_resume(args)
        if problem:
            return _usage(problem)
    mode = args.datasets[0] if args.datasets else ""
    if mode == "compare":
        return run_compare(args)
    if mode == "review":
        args.datasets = args.datasets[1:]
        return run_review(args)
    if args.anchor_set or args.since or args.until:
        return _usage("--anchor-set/--since/--until belong to `guardrail eval review`")
    return run_datasets(args)


def run_compare(args: argparse.Namespace) -> int:
    from guardrail_server.evals.compare import compare_runs, overlap_problem, to_markdown

    runs = args.datasets[1:]
    if len(runs) != 2:
        return _usage("compare takes exactly two run directories: guardrail eval compare RUN_A RUN_B")
    try:
        result = compare_runs(Path(runs[0]), Path(runs[1]))
    except FileNotFoundError as exc:
        return _usage(str(exc))
    problem = overlap_problem(result)
    if problem and problem[0] == "refuse":
        return _usage(f"not comparing {runs[0]} and {runs[1]}: {problem[1]}")
    if problem:
        print(f"guardrail eval: warning: {problem[1]}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else to_markdown(result, args.max_flips))
    return 0


def _config(args: argparse.Namespace) -> Config:
    """The served config, adjusted for offline work: generous timeouts, and every judge on every case."""
    config = config_from_args(args)
    if args.target:
        return config
    extra: list[tuple[str, object]] = [(f"invariants.{name}.timeout_s", args.timeout) for name in config.invariants]
    extra += [(f"invariants.{name}.options.secondary_fraction", args.secondary_fraction)
              for name in config.invariants if "secondary_fraction" in type(config.options(name)).model_fields]
    return config_from_args(args, extra)


def _backend(args: argparse.Namespace, config: Config) -> Backend:
    if args.target:
        from guardrail_server.evals.backends import RemoteBackend

        return RemoteBackend(args.target, args.concurrency, connect_timeout_s=args.connect_timeout)
    if args.engine == "ray":
        try:
            from guardrail_server.evals.ray_engine import RayBackend
        except ImportError:
            raise SystemExit(_usage("--engine ray needs Ray: pip install 'guardrail-sidecar[ray]'")) from None
        return RayBackend(config, address=args.ray_address, workers=args.ray_workers, concurrency=args.concurrency,
                          cpus_per_worker=args.ray_cpus_per_worker)
    from guardrail_server.evals.backends import LocalBackend

    return LocalBackend(config, args.concurrency)


# --- resume: the run's own arguments, or a refusal ------------------------------------------------------------

# Arguments that decide which rows a run holds and what they say (not how fast it goes: --concurrency, Ray sizing,
# progress). Recorded in run.json as given, paths made absolute; `--resume` reuses them.
RECORDED_ARGS: tuple[str, ...] = (
    "datasets", "limit", "invariant", "on_malformed", "config", "overrides", "target", "engine", "timeout",
    "secondary_fraction", "sampler", "sampler_model", "samples", "sampler_temperature", "anchor_set", "since",
    "until", "review_url",
)
# Addresses, not meanings: a server or sampler endpoint may move between the start and the resume (a new port-forward).
# Reused when not given, accepted when different (with a note); the sampler's model, count and temperature are not.
MOVABLE_ARGS = frozenset({"target", "sampler"})
# Config sections an in-process run's results depend on; compared on resume so an edited config file or a changed
# GUARDRAIL_* variable cannot slip in under the same arguments.
RECORDED_CONFIG_SECTIONS = ("invariants", "models", "limits")


def _flag(dest: str) -> str:
    return {"datasets": "DATASET", "overrides": "--set", "config": "--config"}.get(dest, "--" + dest.replace("_", "-"))


def _normalized(dest: str, value: Any) -> Any:
    """A recorded argument in a form that compares equal however it was typed (paths absolute, tuples as lists)."""
    if dest == "datasets" and value:
        return [v if v == "review" else str(Path(v).expanduser().resolve()) for v in value]
    if dest == "config" and value:
        return [str(Path(v).expanduser().resolve()) for v in value]
    if dest in ("invariant", "overrides") and value is not None:
        return list(value)
    return value


def recorded_args(args: argparse.Namespace) -> dict[str, Any]:
    from guardrail_server.cli.common import config_files

    values = {dest: getattr(args, dest, None) for dest in RECORDED_ARGS}
    values["config"] = config_files(args)
    return {dest: _normalized(dest, v) for dest, v in values.items()}


def _explicit_dests(argv: list[str]) -> set[str]:
    """Which `eval` options this command line gave, as opposed to argparse defaults."""
    parser = argparse.ArgumentParser(add_help=False)
    sub = parser.add_subparsers(dest="command")
    register(sub)
    eval_parser = sub.choices["eval"]
    for action in eval_parser._actions:
        action.default = argparse.SUPPRESS
    parsed, _ = parser.parse_known_args(argv)
    return set(vars(parsed)) - {"command", "handler"}


def reconcile_resume(args: argparse.Namespace) -> str | None:
    """Makes `args` the recorded arguments of the run in --out. Returns why not (each differing flag), or None.

    A flag given on this command line must equal the recorded one; a flag not given takes the recorded value. An old
    run.json without recorded arguments resumes with the arguments given, as before, after a warning."""
    from guardrail_server.evals.results import read_manifest

    if not args.out:
        return "--resume needs --out RUN_DIR (the run to continue)"
    manifest = read_manifest(Path(args.out))
    if not manifest:
        return f"{args.out}: nothing to resume (no run.json)"
    recorded = manifest.get("args")
    if recorded is None:
        print(f"guardrail eval: {args.out}/run.json records no arguments (an older run); resuming with the ones "
              "given here", file=sys.stderr)
        return None
    argv = getattr(args, "argv", None)
    if argv is None:  # called without `guardrail_server.cli.main`: anything but the default counts as given
        defaults = vars(_defaults())
        explicit = {d for d in RECORDED_ARGS if getattr(args, d, None) != defaults.get(d)}
    else:
        explicit = _explicit_dests(list(argv))
    datasets = [d for d in args.datasets if d != "review"]
    if datasets:
        explicit.add("datasets")
    elif "datasets" in explicit and not datasets:
        explicit.discard("datasets")
    current = recorded_args(args)
    if datasets:
        current["datasets"] = _normalized("datasets", datasets)
    if args.config is None and "config" not in explicit:
        current["config"] = recorded.get("config", [])  # $GUARDRAIL_CONFIG is not a flag: only --config counts
    differences = []
    moved = set()
    for dest in RECORDED_ARGS:
        if dest not in recorded:
            continue
        if dest in explicit and current.get(dest) != recorded[dest]:
            if dest in MOVABLE_ARGS and current.get(dest) and recorded[dest]:
                moved.add(dest)
                print(f"guardrail eval: resuming with {_flag(dest)} {mask_url(str(current[dest]))} (the run used "
                      f"{mask_url(str(recorded[dest]))})", file=sys.stderr)
                continue
            differences.append(f"{_flag(dest)} (run: {_show(recorded[dest])}, now: {_show(current.get(dest))})")
    if differences:
        return (f"cannot resume {args.out} with different arguments: {'; '.join(differences)}. Leave them out to "
                "reuse the run's own, or start a new run with another --out")
    for dest in RECORDED_ARGS:
        if dest in recorded and dest not in moved:
            setattr(args, dest, list(recorded[dest]) if isinstance(recorded[dest], list) else recorded[dest])
    if manifest.get("mode") == "review":
        args.datasets = ["review"]
    args.resume_config = manifest.get("config")
    return None


def _defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval"])


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:119] + "…"


def _config_record(config: Config) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    return {section: data[section] for section in RECORDED_CONFIG_SECTIONS}


def _config_differences(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, with both values."""
    out: list[str] = []
    for key in sorted(set(recorded) | set(current)):
        a, b = recorded.get(key), current.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path} (run: {_show(a)}, now: {_show(b)})")
    return out


def run_datasets(args: argparse.Namespace, loaded: Any = None, run_info: dict[str, Any] | None = None) -> int:
    from guardrail_server.evals.datasets import DatasetError, load_datasets
    from guardrail_server.evals.gates import GateSyntaxError, parse_gate
    from guardrail_server.evals.results import read_manifest
    from guardrail_server.evals.runner import RunError

    try:
        gates = [parse_gate(g) for g in args.fail_if]
    except GateSyntaxError as exc:
        return _usage(str(exc))
    if args.target and args.engine != "local":
        return _usage("--target runs the cases on the server; it cannot be combined with --engine ray")
    out_dir = Path(args.out or f"eval-runs/{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
    if loaded is None:
        datasets = list(args.datasets)
        if not datasets and args.resume:
            datasets = read_manifest(out_dir).get("datasets", [])
        if not datasets:
            return _usage("give at least one DATASET file (or `compare RUN_A RUN_B`, or `review ...`)")
        try:
            loaded = load_datasets(datasets, on_malformed=args.on_malformed, limit=args.limit)
        except DatasetError as exc:
            return _usage(str(exc))
        run_info = {"datasets": [str(d) for d in datasets]}
    config = _config(args)
    recorded_config = getattr(args, "resume_config", None)
    if args.resume and recorded_config is not None and not args.target:
        differences = _config_differences(recorded_config, _config_record(config))
        if differences:
            return _usage(f"cannot resume {out_dir}: the configuration differs from the run's: "
                          f"{'; '.join(differences[:10])}. Restore the run's config files and GUARDRAIL_* "
                          "variables, or start a new run with another --out")
    _report_malformed(loaded.malformed)
    if args.sampler:
        try:
            loaded, sampling = _fill_samples(args, loaded, out_dir)
        except ValueError as exc:
            return _usage(str(exc))
        run_info = {**(run_info or {}), "sampler": sampling}
    from guardrail_server.logs import configure_logging

    configure_logging("warning" if config.logging.level in ("debug", "info") else config.logging.level,
                      config.logging.format)
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)  # one line per recognizer otherwise
    run_info = {**(run_info or {}), "target": args.target, "engine": "remote" if args.target else args.engine,
                "argv": sys.argv[1:], "mode": "review" if loaded_from_review(run_info) else "datasets",
                "args": recorded_args(args), "config": _config_record(config)}
    try:
        outcome = asyncio.run(_run(args, config, loaded, out_dir, run_info))
    except RunError as exc:
        if args.target and isinstance(exc.__cause__, (TimeoutError, asyncio.TimeoutError)):
            return _usage(f"no gRPC server answered at {args.target} within {args.connect_timeout:g} s "
                          "(--connect-timeout); is `guardrail serve` running there?")
        return _usage(str(exc))
    return _finish(outcome, gates)


def loaded_from_review(run_info: dict[str, Any] | None) -> bool:
    """`eval review` passes the review import's info (anchor set or time window) instead of dataset paths."""
    return bool(run_info) and "review" in run_info  # type: ignore[operator]


def _fill_samples(args: argparse.Namespace, loaded: Any, out_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Samples for cases that have none, from the system under test. A case whose sampling fails keeps no samples
    (self_consistency then reports SKIPPED for it) and is listed on stderr; if every case fails, the run stops.
    With --resume, cases already done are not sampled again (each case's rows are written at once)."""
    from dataclasses import replace

    from guardrail_server.evals.datasets import LoadedDataset
    from guardrail_server.evals.results import done_keys
    from guardrail_server.llm_sampler import fill_samples

    if not args.sampler_model:
        raise ValueError("--sampler needs --sampler-model (the model id the endpoint serves)")
    done = {case_id for case_id, _ in done_keys(out_dir)} if args.resume else set()
    todo = [i for i, item in enumerate(loaded.cases)
            if not item.case.samples and item.case.question.strip() and item.id not in done]
    print(f"guardrail eval: sampling {args.samples} answers for {len(todo)} case(s) from {args.sampler}",
          file=sys.stderr)
    filled, failures = asyncio.run(fill_samples(
        [loaded.cases[i].case for i in todo], args.sampler, args.sampler_model, args.samples,
        args.sampler_temperature, api_key_env=args.sampler_api_key_env, concurrency=min(args.concurrency, 8)))
    cases = list(loaded.cases)
    for i, case, error in zip(todo, filled, failures, strict=True):
        cases[i] = replace(cases[i], case=case)
        if error:
            print(f"  {cases[i].dataset}: {cases[i].id}: sampling failed: {error}", file=sys.stderr)
    if todo and all(failures):
        raise ValueError(f"the sampler at {args.sampler} failed for every case (first error: {failures[0]})")
    info = {"endpoint": args.sampler, "model": args.sampler_model, "samples": args.samples,
            "temperature": args.sampler_temperature, "cases_sampled": len(todo) - sum(bool(f) for f in failures),
            "cases_failed": sum(bool(f) for f in failures)}
    return LoadedDataset(cases, loaded.malformed), info


def _report_malformed(malformed: list[Any]) -> None:
    if not malformed:
        return
    print(f"guardrail eval: skipping {len(malformed)} malformed row(s):", file=sys.stderr)
    for m in malformed[:20]:
        print(f"  {m}", file=sys.stderr)
    if len(malformed) > 20:
        print(f"  ... and {len(malformed) - 20} more (all listed in malformed.jsonl)", file=sys.stderr)


async def _run(args: argparse.Namespace, config: Any, loaded: Any, out_dir: Path, run_info: dict[str, Any]) -> Any:
    from guardrail_server.evals.runner import run_eval

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        print("\nguardrail eval: interrupted; finishing up (Ctrl-C again to abort at once)", file=sys.stderr)
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        return await run_eval(_backend(args, config), loaded, out_dir, requested=args.invariant, resume=args.resume,
                              stop=stop, progress=not args.no_progress, run_info=run_info)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _finish(outcome: Any, gates: list[Any]) -> int:
    from guardrail_server.evals.gates import evaluate
    from guardrail_server.evals.report import write_reports
    from guardrail_server.evals.results import read_manifest
    from guardrail_server.evals.summary import summarize

    summary = summarize(outcome.rows)
    results = evaluate(gates, summary) if outcome.status == "complete" else []
    gate_lines = [r.message for r in results]
    html_path, _ = write_reports(outcome.out_dir, summary, outcome.rows, read_manifest(outcome.out_dir), gate_lines)
    from guardrail_server.evals.report import render_markdown

    print(render_markdown(summary, read_manifest(outcome.out_dir), gate_lines))
    print(f"{outcome.cases_done}/{outcome.cases_total} cases done; this run: {outcome.cases_run} cases in "
          f"{outcome.run_s:.1f} s ({outcome.cases_per_s:.1f} cases/s) after {outcome.elapsed_s - outcome.run_s:.1f} s "
          f"of loading; report: {Path(html_path).resolve()}", file=sys.stderr)
    if outcome.status == "interrupted":
        print(f"guardrail eval: stopped; continue with: guardrail eval --resume --out {Path(outcome.out_dir).resolve()}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if any(r.tripped for r in results):
        print("guardrail eval: gate(s) failed:\n  " + "\n  ".join(r.message for r in results if r.tripped),
              file=sys.stderr)
        return EXIT_GATE
    return 0


def run_review(args: argparse.Namespace) -> int:
    from guardrail_server.evals.review_import import (
        ReviewImportError,
        load_review_cases,
    )

    if args.datasets:
        return _usage("`eval review` takes no DATASET files; it reads the review store")
    if not args.anchor_set and not args.since and not args.resume:
        return _usage("eval review needs --anchor-set NAME or --since DATE")
    config = config_from_args(args)
    url = args.review_url or config.review.url
    review_store_in_use(url, create=False)
    try:
        loaded, info = load_review_cases(url, anchor_set=args.anchor_set,
                                         since=args.since, until=args.until, limit=args.limit)
    except ReviewImportError as exc:
        return _usage(str(exc))
    return run_datasets(args, loaded, info)
