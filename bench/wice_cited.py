"""reference_integrity's support check on real claims that cite several passages: WiCE dev claims, cited the way a
RAG answer cites them.

No dev set carries citation markers (../shared/data/README.md), but WiCE (`dev/wice_claims.jsonl`) gives, per claim,
the sentences of its web page (`context`) and the ones that support it (`meta.oracle_supporting_idx`, often several:
the fact needs them together). Each page sentence becomes a passage (`s1`, `s2`, ...), and the claim cites some of
them with one numeric marker before its final full stop (`... national teams [6, 14].`). Cases (seeded):

| kind | claims | cites | expected |
|---|---|---|---|
| supported_oracle | supported, 2-4 oracle sentences | the oracle sentences | pass |
| supported_single | supported, 1 oracle sentence | it | pass |
| oracle_plus_wrong | supported, 2-3 oracle sentences | the oracle sentences and one other sentence of the page | fail (the extra citation) |
| one_oracle_swapped | supported, 2-4 oracle sentences | the oracle sentences with one swapped for another sentence | fail |
| wrong_all | supported, 2-4 oracle sentences | as many other sentences of the page | fail |
| partial_oracle | partially supported, 2-4 oracle sentences | the oracle sentences | fail |
| not_supported_random2 | not supported | two sentences of the page | fail |

Pages of more than 64 sentences are left out (the service's default limit on passages per case). "other sentences"
have at least 5 words and are not in the oracle set (WiCE's oracle set is not exhaustive: another
sentence of the page can support part of a claim, so a few `fail` labels are soft). The set is written to
`OUT/set.jsonl` and evaluated with `guardrail eval --invariant reference_integrity --set
invariants.reference_integrity.options.support_check=true` (the one path users run); the table is the share of
cases flagged per kind. dev/ is measured, never trained on.

    python -m bench.wice_cited [--out /tmp/wice-cited] [--seed 0] [--table-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from guardrail_server.evals.summary import wilson

DATA = Path(os.environ.get("GUARDRAIL_DATA", "/work/shared/data"))
ROOT = Path(__file__).resolve().parent.parent
MAX_PASSAGES = 64  # the service's default `limits` refuse a context of more passages (RESOURCE_EXHAUSTED)
KINDS = ("supported_oracle", "supported_single", "oracle_plus_wrong", "one_oracle_swapped", "wrong_all",
         "partial_oracle", "not_supported_random2")


def cite(claim: str, indices: list[int]) -> str:
    body = claim.rstrip()
    marker = "[" + ", ".join(str(i + 1) for i in indices) + "]"
    return f"{body[:-1]} {marker}{body[-1]}" if body[-1:] in ".!?" else f"{body} {marker}"


def build(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    for line in (DATA / "dev" / "wice_claims.jsonl").read_text().splitlines():
        r = json.loads(line)
        meta, ctx = r["meta"], r["context"]
        if len(ctx) > MAX_PASSAGES:
            continue
        oracle = sorted(meta["evidence_sentence_idx"].index(i) for i in meta["oracle_supporting_idx"]
                        if i in meta["evidence_sentence_idx"])
        others = [i for i in range(len(ctx)) if i not in oracle and len(ctx[i].split()) >= 5]
        passages = [{"id": f"s{i + 1}", "text": t} for i, t in enumerate(ctx)]

        def add(kind: str, indices: list[int], expected: str) -> None:
            out.append({"id": f"{r['id']}-{kind}", "context": passages, "response": cite(r["response"], indices),
                        "expected": {"reference_integrity": expected},
                        "meta": {"kind": kind, "cited": len(indices), "wice_label": r["label"]}})

        k = len(oracle)
        if r["label"] == "supported" and 2 <= k <= 4:
            add("supported_oracle", oracle, "pass")
            if len(others) >= k:
                add("wrong_all", sorted(rng.sample(others, k)), "fail")
                swapped = list(oracle)
                swapped[rng.randrange(k)] = rng.choice(others)
                add("one_oracle_swapped", sorted(set(swapped)), "fail")
                if k < 4:
                    add("oracle_plus_wrong", sorted([*oracle, rng.choice(others)]), "fail")
        elif r["label"] == "supported" and k == 1:
            add("supported_single", oracle, "pass")
        elif r["label"] == "partially_supported" and 2 <= k <= 4:
            add("partial_oracle", oracle, "fail")
        elif r["label"] == "not_supported" and len(others) >= 2:
            add("not_supported_random2", sorted(rng.sample(others, 2)), "fail")
    return out


def table(set_path: Path, results: Path) -> str:
    kinds = {row["id"]: row["meta"]["kind"] for row in map(json.loads, set_path.read_text().splitlines())}
    expected = {row["meta"]["kind"]: row["expected"]["reference_integrity"]
                for row in map(json.loads, set_path.read_text().splitlines())}
    cells: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in map(json.loads, results.read_text().splitlines()):
        if r["invariant"] == "reference_integrity" and r["outcome"] in ("pass", "fail"):
            cell = cells[kinds[r["case_id"]]]
            cell[0] += 1
            cell[1] += r["outcome"] == "fail"
    lines = [f"{'kind':<24}{'expected':<10}{'flagged':>28}"]
    for kind in KINDS:
        n, f = cells.get(kind, [0, 0])
        if n:
            lo, hi = wilson(f, n)
            lines.append(f"{kind:<24}{expected[kind]:<10}{f:>6}/{n:<4} {f / n:6.1%} [{lo:4.0%},{hi:4.0%}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/wice-cited")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--table-only", action="store_true", help="print the table of an earlier run in --out")
    args = p.parse_args(argv)
    out = Path(args.out)
    set_path, run_dir = out / "set.jsonl", out / "eval"
    if not args.table_only:
        out.mkdir(parents=True, exist_ok=True)
        rows = build(args.seed)
        set_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        if run_dir.exists():
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        guardrail = str(Path(sys.executable).with_name("guardrail"))
        proc = subprocess.run(
            [guardrail, "eval", str(set_path), "--out", str(run_dir), "--no-progress",
             "--invariant", "reference_integrity",
             "--set", "invariants.reference_integrity.options.support_check=true",
             "--set", "invariants.entailment.enabled=false", "--set", "invariants.pii_boundary.enabled=false",
             "--set", "invariants.self_consistency.enabled=false", "--concurrency", str(args.concurrency)],
            cwd=ROOT, capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            sys.exit(f"guardrail eval exited {proc.returncode}: {proc.stderr[-2000:]}")
        print(f"{len(rows)} cases written to {set_path}")
    print(table(set_path, run_dir / "results.jsonl"))


if __name__ == "__main__":
    main()
