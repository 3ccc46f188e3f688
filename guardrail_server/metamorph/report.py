"""The metamorphic part of the eval report: per relation and target, tests run, failures, failure rate with its 95%
Wilson interval, and the worst examples side by side (original vs. transformed input, both outputs).

The numbers come from `guardrail_server.evals.summary.summarize` over the run's rows (the eval schema: violation
rate = the relation's failure rate), so the report, `--fail-if` and `guardrail eval compare` agree."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardrail_server.evals.report import render_html, render_markdown, svg_rates
from guardrail_server.evals.summary import summarize
from guardrail_server.metamorph.runner import MONOTONICITY, PAIRS

TRUNCATE = 700


def _clip(text: str, limit: int = TRUNCATE) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_jsonl(path: Path, keep: set[str], key: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not path.exists() or not keep:
        return out
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            rec = json.loads(line)
            if rec.get(key) in keep:
                out[rec[key]] = rec
    return out


def changed_fields(record: dict[str, Any]) -> list[dict[str, str]]:
    """(field, before, after) for what differs between the two sides of a pair."""
    a, b = record["source"], record["followup"]
    out = []
    if a["question"] != b["question"]:
        out.append({"field": "question", "before": _clip(a["question"]), "after": _clip(b["question"])})
    ids_a = [p["id"] for p in a["context"]]
    ids_b = [p["id"] for p in b["context"]]
    if ids_a != ids_b and sorted(ids_a) == sorted(ids_b):
        out.append({"field": "passage order", "before": ", ".join(ids_a), "after": ", ".join(ids_b)})
    texts_a = {p["id"] or str(i): p["text"] for i, p in enumerate(a["context"], 1)}
    for i, p in enumerate(b["context"], 1):
        pid = p["id"] or str(i)
        before = texts_a.get(pid)
        if before is None:
            out.append({"field": f"passage {pid} (added)", "before": "—", "after": _clip(p["text"])})
        elif before != p["text"]:
            out.append({"field": f"passage {pid}", "before": _clip(before), "after": _clip(p["text"])})
    if a["response"] != b["response"]:
        out.append({"field": "response", "before": _clip(a["response"]), "after": _clip(b["response"])})
    elif a["response"].strip() and a["response"] != "-":
        out.append({"field": "response (both sides)", "before": _clip(a["response"]), "after": "", "same": True})
    return out


def _output_text(o: dict[str, Any]) -> str:
    if o.get("error"):
        return f"error: {o['error']}"
    if o.get("label") is not None and o.get("score") is not None:
        return f"{o['label']} (score {o['score']:.3f})"
    if o.get("label") is not None:
        return str(o["label"])
    return _clip(o.get("text") or "", 400)


def build_view(out_dir: Path, rows: Sequence[dict[str, Any]], manifest: dict[str, Any],
               summary: dict[str, dict[str, Any]], worst: int = 6) -> dict[str, Any]:
    """Everything the metamorphic section of report.html shows."""
    relations_info = manifest.get("relations", {})
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(r["invariant"], []).append(r)
    failing: dict[str, list[dict[str, Any]]] = {
        k: sorted((r for r in rs if r["outcome"] == "fail"), key=lambda r: (r["score"], r["case_id"]))[:worst]
        for k, rs in by_key.items()}
    want_pairs = {r["case_id"] for k, rs in failing.items() if not k.startswith("monotonicity@") for r in rs}
    want_mono = {r["case_id"] for k, rs in failing.items() if k.startswith("monotonicity@") for r in rs}
    pairs = _read_jsonl(Path(out_dir) / PAIRS, want_pairs, "pair_id")
    mono = _read_jsonl(Path(out_dir) / MONOTONICITY, want_mono, "seed_id")
    entries = []
    for key in sorted(by_key):
        relation, _, target = key.partition("@")
        s = summary.get(key)
        if s is None:
            continue
        info = relations_info.get(relation, {})
        examples = []
        for r in failing.get(key, []):
            if relation == "monotonicity":
                rec = mono.get(r["case_id"], {}).get("targets", {}).get(target, {})
                examples.append({"id": r["case_id"], "dataset": r["dataset"], "message": "",
                                 "findings": [f["message"] for f in rec.get("findings", [])],
                                 "levels": rec.get("levels", []), "question": mono.get(r["case_id"], {}).get(
                                     "question", "")})
                continue
            rec = pairs.get(r["case_id"])
            if rec is None:
                continue
            outs = rec["outputs"].get(target, {})
            examples.append({
                "id": r["case_id"], "dataset": r["dataset"], "message": outs.get("message", ""),
                "edits": [f"{e['where']}: {e['kind']} “{_clip(e['before'], 120)}” → “{_clip(e['after'], 120)}”"
                          for e in rec["edits"]][:8],
                "changes": changed_fields(rec),
                "source_output": _output_text(outs.get("source", {})),
                "followup_output": _output_text(outs.get("followup", {})),
            })
        entries.append({
            "key": key, "relation": relation, "target": target,
            "doc": info.get("doc") or ("Nested contexts must not make the answer less specific."
                                       if relation == "monotonicity" else ""),
            "expect": info.get("expect", "monotone" if relation == "monotonicity" else ""),
            "generated": info.get("generated"), "tests": s["n_pass"] + s["n_fail"], "failures": s["n_fail"],
            "inconclusive": s["n_skipped"], "errors": s["n_error"], "rate": s["violation_rate"],
            "low": s["violation_rate_low"], "high": s["violation_rate_high"],
            "examples": examples,
        })
    shown = {e["key"]: summary[e["key"]] for e in entries}
    return {"entries": entries, "names": sorted(by_key), "sut": manifest.get("sut", {}),
            "chart": svg_rates(shown, what="failure rate") if shown else "",
            "tests_per_s": manifest.get("tests_per_s"), "pairs": manifest.get("pairs"),
            "sut_calls": manifest.get("sut_calls"), "seeds_used": manifest.get("seeds_used"),
            "cases_total": manifest.get("cases_total")}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def render_metamorph_markdown(view: dict[str, Any], manifest: dict[str, Any],
                              gate_lines: Sequence[str] = ()) -> str:
    tests = manifest.get("tests_this_run", manifest.get("tests", "?"))
    lines = [f"## Guardrail metamorphic tests — {manifest.get('status', '?')}", "",
             f"System under test: `{manifest.get('backend', '?')}` · {view.get('seeds_used')} of "
             f"{view.get('cases_total')} seed cases · {view.get('pairs')} pairs · {view.get('sut_calls')} system "
             f"calls · {tests} tests in {manifest.get('run_s', '?')} s ({view.get('tests_per_s') or '–'} tests/s)", "",
             "| relation | target | expect | pairs | failures | failure rate [95% CI] | inconclusive | errors |",
             "|---|---|---|---:|---:|---|---:|---:|"]
    for e in view["entries"]:
        lines.append(f"| {e['relation']} | {e['target']} | {e['expect']} | {e['tests']} | {e['failures']} | "
                     f"{_pct(e['rate'])} [{_pct(e['low'])}, {_pct(e['high'])}] | {e['inconclusive']} | "
                     f"{e['errors']} |")
    if gate_lines:
        lines += ["", "### Gates", "", *(f"- {g}" for g in gate_lines)]
    return "\n".join(lines) + "\n"


def write_metamorph_reports(out_dir: Path, rows: Sequence[dict[str, Any]], manifest: dict[str, Any],
                            gate_lines: Sequence[str] = (), worst: int = 6) -> tuple[Path, Path, str]:
    """report.html (the eval report with the metamorphic section), report.md, summary.json."""
    out_dir = Path(out_dir)
    summary = summarize(rows)
    view = build_view(out_dir, rows, manifest, summary, worst)
    malformed_path = out_dir / "malformed.jsonl"
    malformed = ([json.loads(line) for line in malformed_path.read_text().splitlines() if line.strip()]
                 if malformed_path.exists() else [])
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(render_html(summary, rows, manifest, malformed=malformed, metamorph=view), encoding="utf-8")
    markdown = render_metamorph_markdown(view, manifest, gate_lines)
    other = {k: v for k, v in summary.items() if "@" not in k}
    if other:
        markdown += "\n" + render_markdown(other, manifest)
    md_path.write_text(markdown, encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return html_path, md_path, markdown
