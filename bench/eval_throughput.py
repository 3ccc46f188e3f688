"""Offline eval throughput on ../shared/data/dev: cases/s with every invariant that loads, for the local engine
(in-process), through a server (its own process, CheckStream), and on Ray Data (local Ray, 1 and 2 workers).

Same sample of cases for every variant (the first N rows of each dev file); model loading is excluded from the
rate (it is reported separately). The `agree` column is the share of (case, invariant) outcomes identical to the
local engine's. Prints one table.

Usage: python -m bench.eval_throughput [--per-file 60] [--concurrency 32] [--set KEY=VALUE ...] [--skip ray2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from guardrail_server.client import wait_until_serving
from guardrail_server.config import Config, load_config, parse_set_flags
from guardrail_server.evals.backends import LocalBackend, RemoteBackend
from guardrail_server.evals.datasets import LoadedDataset, load_datasets
from guardrail_server.evals.runner import RunOutcome, run_eval
from guardrail_server.logs import configure_logging
from guardrail_invariants.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "dev"


def sample_files(per_file: int, tmp: Path) -> list[Path]:
    out = []
    for src in sorted(DATA.glob("*.jsonl")):
        dst = tmp / src.name
        with src.open() as fh:
            dst.write_text("".join(line for _, line in zip(range(per_file), fh, strict=False)))
        out.append(dst)
    return out


def loadable(overrides: list[tuple[str, Any]], timeout_s: float) -> tuple[Config, dict[str, str]]:
    """Every registered invariant whose module imports and whose assets load, one at a time."""
    from guardrail_server.engine import CheckEngine

    ok, failed = {}, {}
    for name in REGISTRY:
        if name.startswith("test_"):
            continue
        try:
            cfg = load_config(None, environ={}, overrides=[("invariants", {**{n: {"enabled": False} for n in REGISTRY},
                                                                           name: {"timeout_s": timeout_s}}),
                                                           *[(k, v) for k, v in overrides if k.startswith(
                                                               f"invariants.{name}.")]])
            engine = CheckEngine(cfg)
            asyncio.run(_load_close(engine))
            ok[name] = {"timeout_s": timeout_s}
        except Exception as exc:  # noqa: BLE001 - reported in the table header
            failed[name] = f"{type(exc).__name__}: {str(exc)[:100]}"
    only_loaded = {**{n: {"enabled": False} for n in failed}, **ok}  # defaults stay on unless switched off
    pairs = [("review.enabled", False), ("server.metrics_port", None), ("invariants", only_loaded), *overrides]
    return load_config(None, environ={}, overrides=pairs), failed


async def _load_close(engine: Any) -> None:
    await engine.load()
    await engine.close()


def run_local(config: Config, loaded: LoadedDataset, out: Path, concurrency: int) -> RunOutcome:
    return asyncio.run(run_eval(LocalBackend(config, concurrency), loaded, out, progress=False))


def run_server(config: Config, loaded: LoadedDataset, out: Path, concurrency: int, tmp: Path) -> tuple[RunOutcome, float]:
    from tests.conftest import free_port

    port = free_port()
    tree = config.model_dump(mode="json")
    tree["server"].update(port=port, metrics_port=None, default_deadline_s=600)
    tree["admission"].update(max_queue=max(64, concurrency), max_queue_wait_s=60)
    cfg = tmp / "server.json"
    cfg.write_text(json.dumps(tree))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from guardrail_server.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", "serve", "--config", str(cfg)],
                            cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        target = f"127.0.0.1:{port}"
        asyncio.run(wait_until_serving(target, 300))
        load_s = time.perf_counter() - started
        return asyncio.run(run_eval(RemoteBackend(target, concurrency), loaded, out, progress=False)), load_s
    finally:
        proc.terminate()
        proc.wait(60)


def run_ray(config: Config, loaded: LoadedDataset, out: Path, concurrency: int, workers: int) -> RunOutcome:
    from guardrail_server.evals.ray_engine import RayBackend

    cpus = os.cpu_count() or 1
    backend = RayBackend(config, workers=workers, concurrency=concurrency, batch_size=64, num_cpus=cpus,
                         cpus_per_worker=max(1.0, cpus // workers))
    return asyncio.run(run_eval(backend, loaded, out, progress=False))


def agreement(rows: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float:
    ref = {(r["case_id"], r["invariant"]): r["outcome"] for r in reference}
    same = sum(1 for r in rows if ref.get((r["case_id"], r["invariant"])) == r["outcome"])
    return same / max(1, len(ref))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-file", type=int, default=60, help="rows from each dev file (default 60)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=120.0, help="per-invariant timeout (evals are not latency-bound)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--skip", action="append", default=[], choices=("server", "ray1", "ray2"))
    args = ap.parse_args()
    configure_logging("warning")  # one "check" event per case would otherwise go to stdout
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    overrides = parse_set_flags(args.overrides)
    config, failed = loadable(overrides, args.timeout)
    names = sorted(config.enabled_invariants())
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    try:
        loaded = load_datasets(sample_files(args.per_file, tmp), on_malformed="skip")
        results: list[tuple[str, RunOutcome, float]] = []
        local = run_local(config, loaded, tmp / "local", args.concurrency)
        results.append(("local engine, in-process", local, local.elapsed_s - local.run_s))
        if "server" not in args.skip:
            remote, load_s = run_server(config, loaded, tmp / "server", args.concurrency, tmp)
            results.append(("through the server (CheckStream)", remote, load_s))
        for workers in (1, 2):
            if f"ray{workers}" in args.skip:
                continue
            r = run_ray(config, loaded, tmp / f"ray{workers}", args.concurrency, workers)
            results.append((f"Ray Data, {workers} worker{'s' if workers > 1 else ''}", r, r.elapsed_s - r.run_s))
        again = run_local(config, loaded, tmp / "local2", args.concurrency)
        results.append(("local engine, in-process, again", again, again.elapsed_s - again.run_s))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nEval throughput: {len(loaded.cases)} cases ({args.per_file} rows from each of "
          f"{len(list(DATA.glob('*.jsonl')))} dev files; pii rows give 2 cases), invariants: {', '.join(names)}; "
          f"concurrency {args.concurrency}; {os.cpu_count()} cores, load average {load_before[0]:.1f} before and "
          f"{os.getloadavg()[0]:.1f} after (the machine is shared: figures are only comparable within one run)")
    for name, why in failed.items():
        print(f"  (not loadable, left out: {name}: {why})")
    print("(Ray 'run s' includes each worker loading its models; 'agree' = outcomes equal to the first local run)")
    print(f"{'variant':<34}{'cases':>7}{'load s':>9}{'run s':>9}{'cases/s':>10}{'errors':>8}{'agree':>8}")
    for label, r, load_s in results:
        errors = sum(1 for row in r.rows if row["outcome"] == "error")
        print(f"{label:<34}{r.cases_run:>7}{load_s:>9.1f}{r.run_s:>9.1f}{r.cases_per_s:>10.2f}{errors:>8}"
              f"{100 * agreement(r.rows, local.rows):>7.1f}%")
    for label, r, _ in results[1:]:
        print(f"  outcomes differing from the first local run, {label}: {differing(r.rows, local.rows) or 'none'}")


def differing(rows: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, int]:
    ref = {(r["case_id"], r["invariant"]): r["outcome"] for r in reference}
    out: dict[str, int] = {}
    for r in rows:
        if ref.get((r["case_id"], r["invariant"])) != r["outcome"]:
            out[r["invariant"]] = out.get(r["invariant"], 0) + 1
    return dict(sorted(out.items()))


if __name__ == "__main__":
    main()
