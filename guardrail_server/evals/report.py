"""The report a person would rather look at than read: one self-contained HTML page (inline SVG, inline CSS, no
network) and a Markdown summary for CI logs."""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from guardrail_server.evals.summary import SWEEP, disagreeing_cases

HOLDS, VIOLATED, UNLABELED, INK, GRID = "#2a9d8f", "#e76f51", "#9aa5b1", "#264653", "#e3e7eb"


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


# ------------------------------------------------------------------------------------------------ SVG charts


def _marker_text(x: float, y: float, width: int, text: str) -> str:
    """A label beside a vertical marker line, on whichever side has room."""
    if x > width * 0.7:
        return f'<text x="{x - 4:.1f}" y="{y:.1f}" class="tick" text-anchor="end">{text}</text>'
    return f'<text x="{x + 4:.1f}" y="{y:.1f}" class="tick">{text}</text>'


def svg_rates(summary: dict[str, dict[str, Any]], width: int = 720, *, what: str = "violation rate") -> Markup:
    """Violation rate per invariant (or a relation's failure rate) as bars with their 95% Wilson interval as whiskers;
    labels are never cut (the chart widens for long RELATION@TARGET names)."""
    names = list(summary)
    row, right, top = 34, 70, 26
    left = max(170, 12 + 8 * max((len(n) for n in names), default=0))  # room for the whole name (~8 px a character)
    width = max(width, left + 300 + right)
    height = top + row * len(names) + 24
    vmax = max([s["violation_rate_high"] for s in summary.values()] + [0.05])
    vmax = min(1.0, max(0.1, round(vmax + 0.05, 1)))
    plot_w = width - left - right
    x = lambda v: left + plot_w * v / vmax  # noqa: E731
    parts = [f'<svg class="chart" role="img" aria-label="{what}s" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(6):
        v = vmax * i / 5
        parts.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" y2="{height - 20}" stroke="{GRID}"/>'
                     f'<text x="{x(v):.1f}" y="{height - 6}" class="tick" text-anchor="middle">{_pct(v, 0)}</text>')
    for i, name in enumerate(names):
        s = summary[name]
        y = top + i * row
        rate = s["violation_rate"] or 0.0
        parts.append(f'<text x="{left - 10}" y="{y + 17}" text-anchor="end" class="label">{html.escape(name)}</text>'
                     f'<rect x="{left}" y="{y + 4}" width="{max(0.0, x(rate) - left):.1f}" height="18" rx="3" '
                     f'fill="{VIOLATED}" opacity="0.85"><title>{html.escape(name)}: {_pct(rate)} of '
                     f'{s["n_pass"] + s["n_fail"]} scored</title></rect>')
        lo, hi = x(s["violation_rate_low"]), x(s["violation_rate_high"])
        parts.append(f'<line x1="{lo:.1f}" y1="{y + 13}" x2="{hi:.1f}" y2="{y + 13}" stroke="{INK}" stroke-width="2"/>'
                     f'<line x1="{lo:.1f}" y1="{y + 7}" x2="{lo:.1f}" y2="{y + 19}" stroke="{INK}" stroke-width="2"/>'
                     f'<line x1="{hi:.1f}" y1="{y + 7}" x2="{hi:.1f}" y2="{y + 19}" stroke="{INK}" stroke-width="2"/>'
                     f'<text x="{hi + 6:.1f}" y="{y + 17}" class="value">{_pct(s["violation_rate"])}</text>')
    parts.append(f'<text x="{left}" y="14" class="axis">{what} (bars) with 95% Wilson interval</text></svg>')
    return Markup("".join(parts))


def svg_histogram(s: dict[str, Any], width: int = 460, height: int = 230) -> Markup:
    """Score histogram (20 bins on [0, 1]); stacked by label when the dataset has labels; the threshold dashed."""
    left, right, top, bottom = 40, 12, 22, 34
    total = s["histogram"]
    labeled = s.get("labeled")
    if labeled:
        holds, violated = labeled["histogram_by_label"]["holds"], labeled["histogram_by_label"]["violated"]
        other = [max(0, t - h - v) for t, h, v in zip(total, holds, violated, strict=True)]
        layers = [("violation expected", violated, VIOLATED), ("holds expected", holds, HOLDS),
                  ("unlabeled", other, UNLABELED)]
    else:
        layers = [("scored", total, INK)]
    ymax = max(max(total), 1)
    pw, ph = width - left - right, height - top - bottom
    bw = pw / len(total)
    parts = [f'<svg class="chart" role="img" aria-label="score histogram" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.5, 1):
        y = top + ph * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
                     f'<text x="{left - 5}" y="{y + 4:.1f}" class="tick" text-anchor="end">{round(ymax * frac)}</text>')
    for b in range(len(total)):
        base = 0
        for label, counts, colour in layers:
            c = counts[b]
            if not c:
                continue
            h = ph * c / ymax
            y = top + ph * (1 - (base + c) / ymax)
            parts.append(f'<rect x="{left + b * bw + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{b / 20:.2f}–{(b + 1) / 20:.2f}: {c} {label}</title></rect>')
            base += c
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left + pw * v:.1f}" y="{height - bottom + 15}" class="tick" '
                     f'text-anchor="middle">{v:g}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" class="axis" text-anchor="middle">'
                 f'score (confidence the invariant holds)</text>')
    if s.get("threshold") is not None:
        tx = left + pw * s["threshold"]
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{top + ph}" stroke="{INK}" '
                     f'stroke-dasharray="4 3" stroke-width="1.5"/>' + _marker_text(tx, top + 8, width, f"threshold {s['threshold']:g}"))
    legend_x = left
    for label, _, colour in layers:
        parts.append(f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="13" class="tick">{label}</text>')
        legend_x += 18 + 7 * len(label)
    parts.append("</svg>")
    return Markup("".join(parts))


def svg_sweep(s: dict[str, Any], width: int = 460, height: int = 230) -> Markup:
    """TPR (violations caught), FPR (false alarms) and balanced accuracy as the threshold moves."""
    labeled = s["labeled"]
    left, right, top, bottom = 40, 12, 22, 34
    pw, ph = width - left - right, height - top - bottom
    X = lambda t: left + pw * t  # noqa: E731
    Y = lambda v: top + ph * (1 - v)  # noqa: E731
    parts = [f'<svg class="chart" role="img" aria-label="threshold sweep" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" y1="{Y(v):.1f}" x2="{width - right}" y2="{Y(v):.1f}" stroke="{GRID}"/>'
                     f'<text x="{left - 5}" y="{Y(v) + 4:.1f}" class="tick" text-anchor="end">{v:g}</text>'
                     f'<text x="{X(v):.1f}" y="{height - bottom + 15}" class="tick" text-anchor="middle">{v:g}</text>')
    series = [("balanced accuracy", "balanced_accuracy", INK, ""), ("violations caught (TPR)", "tpr", VIOLATED, ""),
              ("false alarms (FPR)", "fpr", HOLDS, ' stroke-dasharray="5 3"')]
    legend_x = left
    for label, key, colour, dash in series:
        pts = " ".join(f"{X(p['threshold']):.1f},{Y(p[key]):.1f}" for p in labeled["sweep"] if p[key] is not None)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
                     f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="13" class="tick">{label}</text>')
        legend_x += 20 + 6 * len(label)
    if s.get("threshold") is not None:
        tx = X(s["threshold"])
        parts.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{top + ph}" stroke="{INK}" '
                     f'stroke-dasharray="4 3"/>{_marker_text(tx, top + ph - 6, width, "configured threshold")}')
    if labeled.get("best_threshold") is not None:
        bx = X(labeled["best_threshold"])
        parts.append(f'<circle cx="{bx:.1f}" cy="{Y(labeled["best_balanced_accuracy"]):.1f}" r="4" fill="{INK}">'
                     f'<title>best balanced accuracy {labeled["best_balanced_accuracy"]:.3f} at threshold '
                     f'{labeled["best_threshold"]:g}</title></circle>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" class="axis" text-anchor="middle">'
                 f'threshold (violation iff score &lt; threshold)</text></svg>')
    return Markup("".join(parts))


# ------------------------------------------------------------------------------------------------ cases


def highlight(text: str, findings: Sequence[dict[str, Any]]) -> Markup:
    """The response with every finding's span marked; overlapping spans split into segments."""
    spans = [f for f in findings if 0 <= f.get("start", -1) < f.get("end", -1) <= len(text)]
    cuts = sorted({0, len(text), *(f["start"] for f in spans), *(f["end"] for f in spans)})
    out = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        piece = html.escape(text[a:b])
        covering = [f for f in spans if f["start"] <= a and b <= f["end"]]
        if covering:
            title = html.escape("; ".join(f"{f['kind']}: {f['message']}" for f in covering), quote=True)
            out.append(f'<mark title="{title}" data-kind="{html.escape(covering[0]["kind"], quote=True)}">{piece}</mark>')
        else:
            out.append(piece)
    return Markup("".join(out))


def worst_cases(rows: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    failing = sorted((r for r in rows if r["outcome"] == "fail"), key=lambda r: (r["score"], r["case_id"]))
    out = []
    for r in failing[:k]:
        findings = json.loads(r.get("findings") or "[]")
        out.append({**r, "findings_list": findings, "highlighted": highlight(r.get("response") or "", findings)})
    return out


def top_errors(rows: Sequence[dict[str, Any]], k: int = 5) -> list[tuple[str, int]]:
    return Counter((r.get("error") or "")[:160] for r in rows if r["outcome"] == "error").most_common(k)


# ------------------------------------------------------------------------------------------------ documents


def _env() -> Environment:
    env = Environment(loader=PackageLoader("guardrail_server.evals", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    return env


def render_html(summary: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]], manifest: dict[str, Any],
                *, worst: int = 8, malformed: Sequence[dict[str, Any]] = (),
                metamorph: dict[str, Any] | None = None) -> str:
    """`metamorph`: the view of `guardrail_server.metamorph.report.build_view`; its RELATION@TARGET rows get the
    metamorphic section (side-by-side pairs) instead of one per-invariant section each."""
    by_inv: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_inv.setdefault(r["invariant"], []).append(r)
    sections = []
    if metamorph:  # RELATION@TARGET rows are metamorphic results: pairs and relations, not thresholds and AUROC
        summary = {name: s for name, s in summary.items() if name not in metamorph.get("names", ())}
    for name, s in summary.items():
        sections.append({
            "name": name, "s": s, "histogram": svg_histogram(s),
            "sweep": svg_sweep(s) if s.get("labeled") else None,
            "worst": worst_cases(by_inv.get(name, []), worst), "errors": top_errors(by_inv.get(name, [])),
            "disagreeing": [{**r, "judges_map": json.loads(r.get("judges") or "{}")}
                            for r in disagreeing_cases(by_inv.get(name, []), worst)],
        })
    title = "Guardrail metamorphic test report" if metamorph else "Guardrail eval report"
    return _env().get_template("report.html").render(
        title=title, manifest=manifest, summary=summary, sections=sections, rates=svg_rates(summary) if summary else "",
        malformed=list(malformed)[:50], n_malformed=len(malformed), cases=len({r["case_id"] for r in rows}),
        sweep_points=len(SWEEP), metamorph=metamorph,
    )


def render_markdown(summary: dict[str, dict[str, Any]], manifest: dict[str, Any],
                    gate_lines: Sequence[str] = ()) -> str:
    lines = [f"## Guardrail eval — {manifest.get('status', '?')}", "",
             f"Datasets: {', '.join(f'`{d}`' for d in manifest.get('datasets', [])) or '–'} · backend "
             f"`{manifest.get('backend', '?')}` · {manifest.get('cases_done', '?')}/{manifest.get('cases_total', '?')} "
             f"cases · {manifest.get('malformed_rows', 0)} malformed rows skipped", "",
             "| invariant | n | violation rate [95% CI] | errors | skipped | threshold | bal. acc | AUROC | best thr. |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        lab = s.get("labeled") or {}
        lines.append(
            f"| {name} | {s['n']} | {_pct(s['violation_rate'])} [{_pct(s['violation_rate_low'])}, "
            f"{_pct(s['violation_rate_high'])}] | {s['n_error']} | {s['n_skipped']} | {_num(s['threshold'], 2)} | "
            f"{_num(lab.get('balanced_accuracy'))} | {_num(lab.get('auroc'))} | {_num(lab.get('best_threshold'), 2)} |")
    judged = {name: s for name, s in summary.items() if s.get("judges")}
    if judged:
        lines += ["", "### Judges", "",
                  "| invariant | judged | disagree [95% CI] | verdicts agree | slice | n | bal. acc |",
                  "|---|---:|---|---:|---|---:|---:|"]
        for name, s in judged.items():
            j = s["judges"]
            slices = [(f"{k} alone", a) for k, a in j["per_judge"].items()] + [
                (label, a) for label, a in (("primary, judges agree", j["primary_when_agree"]),
                                            ("primary, judges disagree", j["primary_when_disagree"])) if a]
            head = (f"| {name} | {j['n']} | {j['n_disagree']} ({_pct(s['disagreement_rate'])}) "
                    f"[{_pct(j['disagreement_rate_low'])}, {_pct(j['disagreement_rate_high'])}] | "
                    f"{_pct(j['verdict_agreement'])} |")
            for i, (label, a) in enumerate(slices or [("–", {"n": None, "balanced_accuracy": None})]):
                lead = head if i == 0 else "| | | | |"
                lines.append(f"{lead} {label} | {a['n'] if a['n'] is not None else '–'} | "
                             f"{_num(a['balanced_accuracy'])} |")
    if gate_lines:
        lines += ["", "### Gates", "", *(f"- {g}" for g in gate_lines)]
    return "\n".join(lines) + "\n"


def write_reports(out_dir: Path, summary: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]],
                  manifest: dict[str, Any], gate_lines: Sequence[str] = ()) -> tuple[Path, Path]:
    malformed_path = Path(out_dir) / "malformed.jsonl"
    malformed = ([json.loads(line) for line in malformed_path.read_text().splitlines() if line.strip()]
                 if malformed_path.exists() else [])
    html_path, md_path = Path(out_dir) / "report.html", Path(out_dir) / "report.md"
    html_path.write_text(render_html(summary, rows, manifest, malformed=malformed), encoding="utf-8")
    md_path.write_text(render_markdown(summary, manifest, gate_lines), encoding="utf-8")
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return html_path, md_path
