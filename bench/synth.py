"""`guardrail synth` on a generated corpus: how long it takes, and what the shipped judge makes of the set.

The corpus is WikiText-2 articles (data/wikitext-2/test.txt, detokenized) written as .txt files until it holds
`--pages` pages of 3,000 characters. The last 12 articles of test.txt were held out of the shipped judge's training
(models/training/train.py) and come first; the rest of the corpus was in its training text. Files are named
`heldout-*` / `seen-*` so the table below can be split by it.

Steps, each timed: (1) `guardrail synth CORPUS --out set.jsonl --cases N` in a subprocess (the wall time a user
sees, Python start-up included; the goal is 100 pages in under 2 minutes on 2 cores); (2) `guardrail eval set.jsonl`
with entailment and reference_integrity (support check on, so wrong citations are visible to it); (3) a table per
kind: cases, how many the judge flagged — the false-flag rate on supported kinds, the catch rate on the others —
with 95% Wilson intervals, for held-out and seen documents.

Usage: python -m bench.synth [--pages 100] [--cases 1000] [--seed 0] [--out DIR] [--skip-eval]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from guardrail_models.training.generator import detokenize_wikitext
from guardrail_server.evals.summary import wilson

ROOT = Path(__file__).resolve().parent.parent
WIKITEXT = ROOT / "data" / "wikitext-2" / "test.txt"
HELD_OUT = 12  # the last 12 articles of test.txt (models/training/train.py)


def write_corpus(folder: Path, pages: float) -> tuple[int, int]:
    """WikiText articles as .txt files, held-out ones first, until `pages` x 3,000 characters; (files, chars)."""
    text = WIKITEXT.read_text(encoding="utf-8")
    parts = re.split(r"\n = ([^=].*?) = \n", text)
    articles = []
    for i in range(1, len(parts), 2):
        lines = [detokenize_wikitext(line) for line in parts[i + 1].splitlines()
                 if line.strip() and not line.strip().startswith("=")]
        articles.append((detokenize_wikitext(parts[i]).replace("<unk>", "").strip(), "\n\n".join(lines)))
    order = [(a, True) for a in articles[-HELD_OUT:]] + [(a, False) for a in articles[:-HELD_OUT]]
    folder.mkdir(parents=True, exist_ok=True)
    chars = files = 0
    for k, ((title, body), held) in enumerate(order):
        if chars >= pages * 3000:
            break
        slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")[:40] or "article"
        (folder / f"{'heldout' if held else 'seen'}-{k:03d}-{slug}.txt").write_text(f"{title}\n\n{body}\n")
        chars += len(body)
        files += 1
    return files, chars


def run(cmd: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}; see {log}")
    return time.perf_counter() - started


def _split(row: dict) -> str:
    return "heldout" if row["meta"]["doc"].startswith("heldout") else "seen"


def _cell(f: int, n: int) -> str:
    if not n:
        return f"{'-':>26}"
    lo, hi = wilson(f, n)
    return f"{f:>4}/{n:<4} {f / n:6.1%} [{lo:4.0%},{hi:4.0%}]"


def table(set_path: Path, results: Path) -> str:
    rows = {}
    for line in set_path.read_text().splitlines():
        row = json.loads(line)
        rows[row["id"]] = row
    # (invariant, label, kind, split) -> [n, flagged]; the label is per row (reference_integrity's depends on
    # whether the response cites), so a kind may sit under both labels
    cells: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    formats: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for line in results.read_text().splitlines():
        r = json.loads(line)
        if r["outcome"] not in ("pass", "fail") or r["expected"] is None:
            continue
        row = rows[r["case_id"]]
        flagged = r["outcome"] == "fail"
        for s in (_split(row), "all") + (("nomd",) if row["meta"]["citation"] != "markdown" else ()):
            c = cells[(r["invariant"], r["expected"], row["meta"]["kind"], s)]
            c[0] += 1
            c[1] += flagged
        if r["invariant"] == "entailment" and r["expected"] == "pass":
            for key in (("citation", row["meta"]["citation"]), ("length", row["meta"]["length"]),
                        ("passages", row["meta"]["passages"])):
                formats[key][0] += 1
                formats[key][1] += flagged
    out = []
    for invariant in sorted({k[0] for k in cells}):
        out.append(f"\n{invariant}: share of cases the check flagged (fail) - on cases labelled pass the false-flag "
                   "rate, on cases labelled fail the catch rate")
        out.append(f"{'kind':<22}{'label':<6}{'all':>26}{'without markdown links':>26}{'held-out docs':>26}"
                   f"{'seen docs':>26}")
        for label in ("pass", "fail"):
            for kind in sorted({k[2] for k in cells if k[0] == invariant and k[1] == label}):
                cols = [_cell(*reversed(cells.get((invariant, label, kind, s), [0, 0]))) for s in
                        ("all", "nomd", "heldout", "seen")]
                out.append(f"{kind:<22}{label:<6}" + "".join(cols))
    out.append("\nentailment false flags on every case labelled pass, by grid dimension")
    for dim in ("citation", "length", "passages"):
        for (d, value), (n, f) in sorted(formats.items()):
            if d == dim:
                out.append(f"{dim + ' ' + value:<28}{_cell(f, n)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=float, default=100)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/bench-synth")
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--table-only", action="store_true", help="print the table of an earlier run in --out")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.table_only:
        print(table(out / "set.jsonl", out / "eval" / "results.jsonl"))
        return
    corpus = out / "corpus"
    if corpus.exists():
        for f in corpus.iterdir():
            f.unlink()
    files, chars = write_corpus(corpus, args.pages)
    guardrail = str(Path(sys.executable).with_name("guardrail"))
    set_path = out / "set.jsonl"
    synth_s = run([guardrail, "synth", str(corpus), "--out", str(set_path), "--cases", str(args.cases),
                   "--seed", str(args.seed), "--no-progress"], out / "synth.log")
    summary = json.loads((out / "set.summary.json").read_text())
    load = os.getloadavg()
    print(f"corpus: {files} WikiText articles, {chars:,} characters = {chars / 3000:.1f} pages (3,000 chars each)")
    print(f"synth: {summary['cases']} cases of {summary['planned']} planned, {summary['passages']} passages; "
          f"{synth_s:.1f} s wall (subprocess, Python start-up included), {summary['seconds']:.1f} s inside "
          f"(documents read and split: {summary['load_seconds']:.1f} s); load average {load[0]:.1f}")
    if args.skip_eval:
        return
    run_dir = out / "eval"
    if run_dir.exists():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    eval_s = run([guardrail, "eval", str(set_path), "--out", str(run_dir), "--no-progress",
                  "--invariant", "entailment", "--invariant", "reference_integrity",
                  "--set", "invariants.reference_integrity.options.support_check=true",
                  "--set", "invariants.pii_boundary.enabled=false", "--set", "invariants.self_consistency.enabled=false",
                  "--concurrency", str(args.concurrency)], out / "eval.log")
    print(f"eval (entailment, reference_integrity with support_check): {eval_s:.1f} s wall")
    print(table(set_path, run_dir / "results.jsonl"))


if __name__ == "__main__":
    main()
