"""`guardrail eval compare RUN_A RUN_B`: which rates moved (beyond noise) and which cases flipped.

Two runs are comparable only over the cases they share: rates over different cases measure the datasets, not a
change. `overlap` says how many cases (by case id) both runs hold; the CLI refuses runs that share none (exit 2) and
warns when they share fewer than half of either run's cases (`FEW_SHARED`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from guardrail_server.evals.results import read_rows
from guardrail_server.evals.summary import summarize

FEW_SHARED = 0.5  # warn when the shared cases are fewer than this share of either run's cases


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2))


def compare_runs(run_a: Path, run_b: Path) -> dict[str, Any]:
    rows_a, rows_b = read_rows(Path(run_a)), read_rows(Path(run_b))
    sum_a, sum_b = summarize(rows_a), summarize(rows_b)
    by_key_a = {(r["case_id"], r["invariant"]): r for r in rows_a}
    by_key_b = {(r["case_id"], r["invariant"]): r for r in rows_b}
    rates = []
    for name in sorted(set(sum_a) | set(sum_b)):
        a, b = sum_a.get(name), sum_b.get(name)
        entry: dict[str, Any] = {"invariant": name, "a": _brief(a), "b": _brief(b)}
        if a and b and a["violation_rate"] is not None and b["violation_rate"] is not None:
            p = two_proportion_p(a["n_fail"], a["n_pass"] + a["n_fail"], b["n_fail"], b["n_pass"] + b["n_fail"])
            entry.update(delta=b["violation_rate"] - a["violation_rate"], p_value=p,
                         moved=p is not None and p < 1 - 0.95 and a["n_fail"] != b["n_fail"])
        rates.append(entry)
    flips = []
    for key in sorted(set(by_key_a) & set(by_key_b)):
        ra, rb = by_key_a[key], by_key_b[key]
        if ra["outcome"] != rb["outcome"]:
            flips.append({"case_id": key[0], "invariant": key[1], "dataset": rb.get("dataset"),
                          "from": ra["outcome"], "to": rb["outcome"], "score_a": ra["score"], "score_b": rb["score"],
                          "expected": rb.get("expected")})
    return {
        "run_a": str(run_a), "run_b": str(run_b), "rates": rates, "flips": flips,
        "only_in_a": len(set(by_key_a) - set(by_key_b)), "only_in_b": len(set(by_key_b) - set(by_key_a)),
        "common": len(set(by_key_a) & set(by_key_b)), "overlap": overlap(rows_a, rows_b),
    }


def overlap(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]) -> dict[str, Any]:
    """Cases (by case id) in each run and in both, with the datasets each run's cases came from."""
    cases_a, cases_b = {r["case_id"] for r in rows_a}, {r["case_id"] for r in rows_b}
    shared = len(cases_a & cases_b)
    few = bool(shared) and (shared < FEW_SHARED * len(cases_a) or shared < FEW_SHARED * len(cases_b))
    return {"cases_a": len(cases_a), "cases_b": len(cases_b), "shared_cases": shared,
            "datasets_a": sorted({str(r.get("dataset") or "?") for r in rows_a}),
            "datasets_b": sorted({str(r.get("dataset") or "?") for r in rows_b}),
            "few_shared": few}


def overlap_problem(result: dict[str, Any]) -> tuple[str, str] | None:
    """("refuse" | "warn", message) when the runs share no or few cases, else None."""
    o = result["overlap"]
    share = lambda n: f"{100 * o['shared_cases'] / n:.0f}% of {n}" if n else "0"  # noqa: E731
    if o["shared_cases"] == 0:
        return "refuse", (
            f"the runs share no cases (A: {o['cases_a']} cases from {', '.join(o['datasets_a']) or '-'}; "
            f"B: {o['cases_b']} cases from {', '.join(o['datasets_b']) or '-'}): their rates would compare the "
            "datasets, not a change. Compare two runs over the same dataset")
    if o["few_shared"]:
        return "warn", (
            f"the runs share only {o['shared_cases']} cases ({share(o['cases_a'])} in A, {share(o['cases_b'])} in B): "
            "the rates below are over different cases, so a moved rate may come from the cases, not the change; "
            "flips are counted on the shared cases only")
    return None


def _brief(s: dict[str, Any] | None) -> dict[str, Any] | None:
    if s is None:
        return None
    labeled = s.get("labeled") or {}
    return {"n": s["n"], "n_fail": s["n_fail"], "violation_rate": s["violation_rate"],
            "low": s["violation_rate_low"], "high": s["violation_rate_high"], "error_rate": s["error_rate"],
            "balanced_accuracy": labeled.get("balanced_accuracy"), "auroc": labeled.get("auroc")}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def to_markdown(result: dict[str, Any], max_flips: int = 50) -> str:
    problem = overlap_problem(result) if "overlap" in result else None
    lines = [f"## Eval comparison: `{result['run_a']}` → `{result['run_b']}`", "",
             f"{result['common']} case×invariant pairs in both runs; {result['only_in_a']} only in A, "
             f"{result['only_in_b']} only in B.", "",
             *([f"**Warning:** {problem[1]}.", ""] if problem else []),
             "| invariant | violation rate A [95% CI] | violation rate B [95% CI] | Δ | p | moved | bal. acc A → B | AUROC A → B |",
             "|---|---|---|---|---|---|---|---|"]
    for e in result["rates"]:
        a, b = e["a"] or {}, e["b"] or {}
        ci = lambda s: f"{_pct(s.get('violation_rate'))} [{_pct(s.get('low'))}, {_pct(s.get('high'))}]" if s else "–"  # noqa: E731
        delta = f"{100 * e['delta']:+.1f} pp" if "delta" in e else "–"
        p = _num(e.get("p_value"))
        moved = "**yes**" if e.get("moved") else "no"
        lines.append(f"| {e['invariant']} | {ci(a)} | {ci(b)} | {delta} | {p} | {moved} | "
                     f"{_num(a.get('balanced_accuracy'))} → {_num(b.get('balanced_accuracy'))} | "
                     f"{_num(a.get('auroc'))} → {_num(b.get('auroc'))} |")
    flips = result["flips"]
    to_fail = sum(1 for f in flips if f["to"] == "fail")
    lines += ["", f"### Flipped cases: {len(flips)} ({to_fail} now fail, {len(flips) - to_fail} otherwise)", ""]
    if flips:
        lines += ["| case | invariant | dataset | A → B | score A → B | label says |", "|---|---|---|---|---|---|"]
        for f in flips[:max_flips]:
            lines.append(f"| `{f['case_id']}` | {f['invariant']} | {f['dataset']} | {f['from']} → {f['to']} | "
                         f"{f['score_a']:.3f} → {f['score_b']:.3f} | {f['expected'] or '–'} |")
        if len(flips) > max_flips:
            lines.append(f"\n… and {len(flips) - max_flips} more (see --json).")
    return "\n".join(lines) + "\n"

