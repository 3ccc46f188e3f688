"""Does `guardrail adapt` help on human labels it never saw? The measurement protocol of issue 21.

`python -m bench.adapt_eval [--minutes 20] [--sets wice_claims,climate_fever_pairs,summedits] [--domains news,...]
[--limit N] [--other-limit N] [--out DIR]`

For each labelled set, the user's "documents" are the set's **passages only** — never its responses or labels:
  - `wice_claims` (dev): each case's cited web page is a document;
  - `climate_fever_pairs` (dev): the evidence sentences of one Wikipedia article make its document;
  - SummEdits (in the train mix, 7 domains): leave one domain out — each source document of the domain is a document;
    the base judge never trained on SummEdits (the shipped v2 was trained on SNLI + WikiText pairs only), and the
    domain's rows are kept out of adapt's replay (`--replay-exclude summedits/<domain>`).
The documents are split in two halves by a seeded hash. `guardrail adapt` runs on the passages of half A (`--holdout
0`: the halves are the split), with an anchor set of `--anchors` labelled cases of half A (a team's anchors come from
its own domain: they choose the threshold and the ship decision, never training data). Base and adapted judge are
then evaluated through `guardrail eval` (`bench.nli_eval.evaluate_set`, in process) on the labels of **half B**
(documents never seen) and on **all** labels (A's documents were trained on as text, their labels never; the anchors,
at most `--anchors` cases, are among them), plus halueval_qa and the other dev set as the "no loss elsewhere" check.
Printed per set: base vs adapted AUROC and balanced accuracy (at each judge's threshold), the time adapt took, whether
it would ship, and where adapt's own synth eval report is. dev/ is measured, never trained on.

Goals (issue 21): adapted >= base + 0.05 AUROC on half B of each set, no loss > 0.01 on the other dev sets; adapt within
its time budget.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.learning_curve import stratified
from bench.nli_eval import DATA, evaluate_set
from guardrail_server.logs import configure_logging

REPO = Path(__file__).resolve().parents[1]
MIX = DATA / "train/groundedness_mix_v1.jsonl.gz"
DOMAINS = ("news", "podcast", "ectsum", "qmsumm", "sales_call", "sales_email", "scitldr")
OTHER = ("halueval_qa", "wice_claims", "climate_fever_pairs")


def _h(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _doc_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


# -- a labelled set as (documents, labelled rows each tied to one document) -------------------------------------


def wice() -> tuple[dict[str, dict[str, str]], list[tuple[str, dict[str, Any]]]]:
    docs: dict[str, dict[str, str]] = {}
    rows = []
    for r in read_jsonl(DATA / "dev/wice_claims.jsonl"):
        sentences = [s for s in r["context"] if isinstance(s, str)]
        title = next((s.split("TITLE:", 1)[1].strip() for s in sentences if "TITLE:" in s), "")
        text = "\n".join(s for s in sentences if not s.startswith("(meta data)"))
        did = _doc_id(text)
        docs[did] = {"id": did, "title": title or did, "text": text}
        rows.append((did, r))
    return docs, rows


def climate() -> tuple[dict[str, dict[str, str]], list[tuple[str, dict[str, Any]]]]:
    by_article: dict[str, list[str]] = {}
    rows = []
    for r in read_jsonl(DATA / "dev/climate_fever_pairs.jsonl"):
        article = (r.get("meta") or {}).get("article") or _doc_id(r["context"])
        sents = by_article.setdefault(article, [])
        if r["context"] not in sents:
            sents.append(r["context"])
        rows.append((article, r))
    docs = {a: {"id": a, "title": a, "text": " ".join(s)} for a, s in by_article.items()}
    return docs, rows


def summedits(domain: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, dict[str, Any]]]]:
    docs: dict[str, dict[str, str]] = {}
    rows = []
    with gzip.open(MIX, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("source") != f"summedits/{domain}":
                continue
            did = _doc_id(r["premise"])
            docs[did] = {"id": did, "title": f"{domain} {did}", "text": r["premise"]}
            rows.append((did, {"id": r["id"], "context": r["premise"], "response": r["hypothesis"],
                               "expected": {"entailment": "pass" if r["label"] == "entailment" else "fail"},
                               "label": r["label"]}))
    return docs, rows


def halves(docs: dict[str, Any], seed: int) -> tuple[set[str], set[str]]:
    order = sorted(docs, key=lambda d: _h(seed, d))
    return set(order[: len(order) // 2]), set(order[len(order) // 2:])


def entailment_label(row: dict[str, Any]) -> str:
    if "expected" in row:
        return row["expected"]["entailment"]
    return "pass" if row["label"] in ("supported", "entailment") else "fail"


def anchor_file(rows: Sequence[dict[str, Any]], n: int, seed: int, path: Path) -> Path:
    """`anchors export` lines for n labelled cases (half of each label where possible); no judge verdicts are needed
    (adapt scores the anchors with both judges itself)."""
    from guardrail_server.convert import case_from_dict
    from guardrail_server.evals.datasets import load_datasets
    from guardrail_server.review.anchors import FORMAT
    from guardrail_server.review.records import Pending, raw_record

    tmp = path.with_suffix(".rows.jsonl")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_datasets([tmp]).cases  # the eval reader turns each format into a Case + expected
    by_label: dict[str, list[Any]] = {"pass": [], "fail": []}
    for item in loaded:
        by_label["pass" if item.expected.get("entailment") else "fail"].append(item)
    picked = []
    for label, items in by_label.items():
        items = sorted(items, key=lambda it: _h(seed, it.id))
        picked += [(label, it) for it in items[: n // 2]]
    lines = []
    for pos, (label, item) in enumerate(picked):
        sid = _h(seed, f"anchor:{item.id}")[:32]
        rec = raw_record(Pending(sid, 1.7e9 + pos, item.case, [], "allow", ("random",)))
        lines.append({"format": FORMAT, "anchor_set": {"name": "bench", "version": 1, "description": "bench"},
                      "position": pos, "sample": rec,
                      "annotations": [{"reviewer": "dataset", "critique": "", "labels": {"entailment": label}}]})
    path.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    _ = case_from_dict  # the eval reader already built the cases
    return path


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def run_adapt(docs: Sequence[dict[str, str]], anchors: Path, out: Path, args: argparse.Namespace,
              exclude: Sequence[str]) -> dict[str, Any]:
    docs_path = write_rows(out / "documents.jsonl", docs)
    cmd = [sys.executable, "-m", "guardrail_server.cli", "adapt", str(docs_path), "--anchors", str(anchors),
           "--out", str(out / "adapt"), "--minutes", str(args.minutes), "--holdout", "0",
           "--name", out.name + "-adapted",
           "--pairs", str(args.pairs), "--synth-cases", str(args.synth_cases), "--seed", str(args.seed),
           "--min-anchors", str(args.min_anchors)]
    cmd += [x for e in exclude for x in ("--replay-exclude", e)]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    took = time.time() - t
    (out / "adapt.stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"adapt failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads((out / "adapt" / "adapt.json").read_text())
    return {"seconds": round(took, 1), "exit": proc.returncode, "report": report}


async def measure(path: Path, model: str | None, models_dir: str | None, threshold: float | None, out: Path) -> dict:
    r = await evaluate_set(path, "entailment", model, "hybrid", models_dir=models_dir, out_dir=out,
                           threshold=threshold)
    return {"n": r.n, "auroc": r.auroc, "balanced_accuracy": r.balanced_accuracy, "threshold": r.threshold}


def one_set(name: str, docs: dict[str, dict[str, str]], rows: list[tuple[str, dict[str, Any]]],
            args: argparse.Namespace, exclude: Sequence[str], others: Sequence[str]) -> dict[str, Any]:
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    a, b = halves(docs, args.seed)
    rows_a = [r for d, r in rows if d in a]
    rows_b = [r for d, r in rows if d in b]
    strat = [{**r, "label": entailment_label(r)} for r in rows_b]
    keep = {id(x) for x in stratified(strat, args.limit, args.seed)} if args.limit else None
    eval_b = [r for r, s in zip(rows_b, strat, strict=True) if keep is None or id(s) in keep]
    eval_a = [r for r in rows_a if keep is None] if keep is None else \
        [rows_a[i] for i in sorted(range(len(rows_a)), key=lambda i: _h(args.seed, str(i)))[: len(eval_b)]]
    files = {"half_b": write_rows(out / "half_b.jsonl", eval_b), "all": write_rows(out / "all.jsonl", eval_a + eval_b)}
    for o in others:
        src = read_jsonl(DATA / "dev" / f"{o}.jsonl")
        files[o] = write_rows(out / f"{o}.jsonl", stratified(src, args.other_limit, args.seed) if args.other_limit
                              else src)
    anchors = anchor_file(rows_a, args.anchors, args.seed, out / "anchors.jsonl")
    print(f"[{name}] {len(docs)} documents: {len(a)} to adapt on ({len(rows_a)} labelled rows, never used but "
          f"{args.anchors} as anchors), {len(b)} held out ({len(rows_b)} rows; {len(eval_b)} evaluated)", flush=True)
    adapted = run_adapt([docs[d] for d in sorted(a)], anchors, out, args, exclude)
    rep = adapted["report"]
    model, zoo = rep["model"], str(Path(rep["model_dir"]).parent)
    thr = rep["metrics"]["anchors"]["threshold"]
    results: dict[str, Any] = {"documents": len(docs), "half_a": len(a), "half_b": len(b), "rows_b": len(rows_b),
                               "adapt_seconds": adapted["seconds"], "adapt_exit": adapted["exit"],
                               "shipped": rep["shipped"], "worse": rep["worse"], "threshold": thr,
                               "anchors": rep["metrics"]["anchors"], "synth": rep["metrics"]["synth"],
                               "synth_report": rep["runs"]["synth-adapted"] + "/report.md",
                               "steps": rep["adaptation"]["steps"], "pairs": rep["adaptation"]["pairs"], "sets": {}}
    for key, path in files.items():
        base = asyncio.run(measure(path, None, None, None, out / "runs" / f"{key}-base"))
        new = asyncio.run(measure(path, model, zoo, thr, out / "runs" / f"{key}-adapted"))
        results["sets"][key] = {"base": base, "adapted": new}
        print(f"[{name}] {key:<20} n={base['n']:<5} AUROC {_f(base['auroc'])} -> {_f(new['auroc'])} "
              f"({_d(base['auroc'], new['auroc'])})  bal.acc {_f(base['balanced_accuracy'])} -> "
              f"{_f(new['balanced_accuracy'])}", flush=True)
    return results


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _d(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b - a:+.3f}"


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"adapt_eval: --minutes {args.minutes} --pairs {args.pairs} --steps {args.steps or 'by time'} "
             f"--limit {args.limit} --other-limit {args.other_limit} seed {args.seed}",
             f"{'set':<22}{'eval on':<22}{'n':>5}  {'AUROC base -> adapted':<24}{'bal.acc base -> adapted':<26}"
             f"{'adapt s':>8}  ship"]
    for name, r in results.items():
        for key, m in r["sets"].items():
            b, a = m["base"], m["adapted"]
            auroc = f"{_f(b['auroc'])} -> {_f(a['auroc'])} ({_d(b['auroc'], a['auroc'])})"
            bal = f"{_f(b['balanced_accuracy'])} -> {_f(a['balanced_accuracy'])}"
            lines.append(f"{name:<22}{key:<22}{b['n']:>5}  {auroc:<24}{bal:<26}{r['adapt_seconds']:>8.0f}  "
                         f"{'yes' if r['shipped'] else 'no'}")
    lines.append("goal: half_b AUROC >= base + 0.05; other dev sets no loss > 0.01; adapt within --minutes")
    for name, r in results.items():
        s = r["synth"]
        lines.append(f"{name}: synth eval (adapt's own, {s['cases']} cases): AUROC {_f(s['base']['auroc'])} -> "
                     f"{_f(s['adapted']['auroc'])}; report {r['synth_report']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="adapt's budget per set (default 20)")
    ap.add_argument("--sets", default="wice_claims,climate_fever_pairs,summedits")
    ap.add_argument("--domains", default=",".join(DOMAINS), help="SummEdits domains, each left out in turn")
    ap.add_argument("--limit", type=int, default=None, help="evaluated half-B rows per set (stratified; default all)")
    ap.add_argument("--other-limit", type=int, default=200, help="rows of each other dev set (default 200)")
    ap.add_argument("--pairs", type=int, default=3000, help="adapt --pairs")
    ap.add_argument("--steps", type=int, default=None, help="adapt --steps (tiny runs)")
    ap.add_argument("--synth-cases", type=int, default=200, help="adapt --synth-cases")
    ap.add_argument("--anchors", type=int, default=24, help="labelled half-A cases used as the anchor set")
    ap.add_argument("--min-anchors", type=int, default=20, help="adapt --min-anchors")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-adapt"))
    args = ap.parse_args(argv)
    configure_logging("warning")
    results: dict[str, Any] = {}
    started = time.time()
    for name in args.sets.split(","):
        if name == "wice_claims":
            docs, rows = wice()
            results[name] = one_set(name, docs, rows, args, (), [o for o in OTHER if o != name])
        elif name == "climate_fever_pairs":
            docs, rows = climate()
            results[name] = one_set(name, docs, rows, args, (), [o for o in OTHER if o != name])
        elif name == "summedits":
            for domain in args.domains.split(","):
                docs, rows = summedits(domain)
                results[f"summedits_{domain}"] = one_set(f"summedits_{domain}", docs, rows, args,
                                                         (f"summedits/{domain}",), ("halueval_qa",))
        else:
            raise SystemExit(f"unknown set {name!r}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(table(results, args))
    print(f"total {time.time() - started:.0f} s; load average {os.getloadavg()[0]:.1f}; "
          f"results {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
