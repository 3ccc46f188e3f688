"""`guardrail synth`: an eval set drawn from your own documents, labelled by construction.

    guardrail synth DOCS... --out set.jsonl [--cases N] [--seed S] [--kind K]... [--citation F]...
                    [--anchors NAME[@VERSION]|FILE.jsonl [--url STORE]] [--llm URL --llm-model M --llm-family F]

DOCS are folders (searched recursively) or files: .txt, .md, .html, .pdf, or JSONL with id/title/text. The output
is a native `guardrail eval` dataset: each row has its context passages (ids doc-N), a question, the response, what
each invariant should conclude (`expected`), a `label` and `meta.kind`. A summary (cases per kind and grid cell) is
printed and written beside it as <out>.summary.json. See docs/synth.md.

Exit codes: 0 written, 2 bad input or usage (unreadable documents, unknown anchor set, a same-family judge).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from guardrail_server.cli.common import add_config_flags, config_from_args

EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction) -> None:
    from guardrail_server.synth.markers import FORMATS

    p = sub.add_parser("synth", help="build a labelled eval set from your documents",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("docs", nargs="+", metavar="DOCS", help="folders or files (.txt .md .html .pdf, .jsonl)")
    p.add_argument("--out", "-o", required=True, help="dataset to write (JSONL)")
    p.add_argument("--cases", type=int, default=1000, help="cases to plan over the grid (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="same seed + same documents = same file (default 0)")
    p.add_argument("--kind", action="append", default=None, metavar="KIND",
                   help="only these kinds, or groups: supported, hallucinated, citation, pii (repeatable)")
    p.add_argument("--citation", action="append", default=None, choices=FORMATS,
                   help="only these citation formats (repeatable; default all)")
    p.add_argument("--anchors", default=None, metavar="NAME[@VERSION]|FILE.jsonl",
                   help="anchor set whose failed labels and critiques get their kinds more cases")
    p.add_argument("--url", default=None, help="review store URL for --anchors (default: review.url)")
    p.add_argument("--anchor-boost", type=float, default=2.0,
                   help="weight of the kind the anchors point at most: 1 + boost (default 2 -> 3x)")
    p.add_argument("--llm", default=None, metavar="URL", help="OpenAI-compatible endpoint that writes more cases")
    p.add_argument("--llm-model", default=None, help="model id to ask --llm for")
    p.add_argument("--llm-family", default=None,
                   help="the generator's model family (required with --llm; must differ from the judge's)")
    p.add_argument("--llm-api-key-env", default=None, metavar="VAR", help="environment variable holding its key")
    p.add_argument("--llm-passages", type=int, default=20, help="passages the model writes about (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p)
    p.set_defaults(handler=cmd_synth)


def _refuse(message: str) -> int:
    print(f"guardrail: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from guardrail_server.synth import anchors as steer
    from guardrail_server.synth import build, grid, kinds, llm
    from guardrail_server.synth.documents import DocumentError, build_corpus, load_documents
    from guardrail_server.synth.markers import FORMATS

    started = time.perf_counter()
    if args.cases < 1:
        return _refuse("--cases must be at least 1")
    if args.llm and not (args.llm_model and args.llm_family):
        return _refuse("--llm needs --llm-model and --llm-family (the generator's model family, e.g. 'llama-3')")
    try:
        kind_names = kinds.kinds_for(args.kind)
    except ValueError as exc:
        return _refuse(f"--kind: {exc}")
    extra: list[tuple[str, object]] = [("review.url", args.url)] if args.url else []
    config = config_from_args(args, extra)
    judge_model = judge_family = None
    if args.llm:
        judge_model, judge_family = llm.judge_identity(config)
        try:
            llm.check_families(args.llm_family, judge_model, judge_family)
        except llm.SameFamilyError as exc:
            return _refuse(str(exc))

    weights = {k: 1.0 for k in kind_names}
    anchor_info: dict[str, Any] | None = None
    if args.anchors:
        try:
            samples, described = steer.load_anchor_samples(args.anchors, config.review.url)
        except (KeyError, OSError, ValueError) as exc:
            return _refuse(f"--anchors: {exc.args[0] if exc.args else exc}")
        kind_hits = steer.hits(samples)
        weights = steer.weights(kind_names, kind_hits, args.anchor_boost)
        anchor_info = {"set": described, "hits": dict(sorted(kind_hits.items())),
                       "weights": {k: round(w, 3) for k, w in weights.items()}}

    try:
        docs = load_documents(args.docs)
    except DocumentError as exc:
        return _refuse(str(exc))
    corpus = build_corpus(docs)
    for note in corpus.skipped:
        print(f"guardrail: skipped {note}", file=sys.stderr)
    if not corpus.passages:
        return _refuse("the documents gave no passages (each needs at least two sentences of 5-60 words)")
    loaded = time.perf_counter()

    citations = tuple(args.citation) if args.citation else FORMATS
    slots = grid.plan(args.cases, weights, args.seed, citations=citations)
    bar = tqdm(total=len(slots) + (args.llm_passages if args.llm else 0), unit="case", desc="synth",
               disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
    try:
        built = build.synthesize(corpus, slots, args.seed, progress=bar.update)
        llm_result = None
        if args.llm:
            settings = llm.LlmSettings(args.llm, args.llm_model, args.llm_family, args.llm_api_key_env,
                                       passages=args.llm_passages)
            seen = {build.dedup_key(c.question, c.response) for c in built.cases}
            judge_config = config_from_args(args, [*extra, *llm.judge_overrides(config)])
            llm_result = asyncio.run(_run_llm(corpus, settings, judge_config, args.seed, seen, bar.update))
            llm_result.judge, llm_result.judge_family = str(judge_model), str(judge_family)
            built.cases += llm_result.cases
    finally:
        bar.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = build.rows(built.cases)
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    seconds = time.perf_counter() - started
    summary = _summary(args, corpus, slots, built, weights, anchor_info, llm_result, seconds, loaded - started,
                       citations)
    summary_path = out.with_name(out.name.removesuffix(".jsonl") + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(_report(summary, built, kind_names, citations, llm_result))
    print(f"wrote {len(rows)} cases to {out} (summary: {summary_path}); run them: guardrail eval {out}")
    return 0


async def _run_llm(corpus: Any, settings: Any, judge_config: Any, seed: int, seen: set[str], progress: Any) -> Any:
    from guardrail_server.synth import llm

    async with llm.EntailmentJudge(judge_config) as judge:
        return await llm.generate(corpus, settings, judge, seed, seen=seen, progress=progress)


def _summary(args: argparse.Namespace, corpus: Any, slots: list[Any], built: Any, weights: dict[str, float],
             anchor_info: dict[str, Any] | None, llm_result: Any, seconds: float, load_seconds: float,
             citations: tuple[str, ...]) -> dict[str, Any]:
    from guardrail_server.synth import llm

    planned = Counter(s.kind for s in slots)
    made = Counter(c.kind for c in built.cases)
    cells = Counter(f"{c.kind}|{c.cell.length}|{c.cell.passages}|{c.cell.citation}" for c in built.cases)
    expected: dict[str, Counter[str]] = {}
    for c in built.cases:
        for inv, outcome in c.expected.items():
            expected.setdefault(inv, Counter())[outcome] += 1
    out: dict[str, Any] = {
        "seed": args.seed, "documents": len(corpus.docs), "pages": round(corpus.pages, 1), "chars": corpus.chars,
        "passages": len(corpus.passages), "skipped_documents": corpus.skipped, "cases": len(built.cases),
        "planned": sum(planned.values()), "duplicates_redrawn": built.duplicates,
        "per_kind": {k: {"planned": planned.get(k, 0), "made": made.get(k, 0)} for k in sorted(set(planned) | set(made))},
        "shortfall": dict(sorted(built.shortfall.items())), "per_cell": dict(sorted(cells.items())),
        "expected": {inv: dict(sorted(c.items())) for inv, c in sorted(expected.items())},
        "weights": {k: round(w, 3) for k, w in weights.items()}, "anchors": anchor_info, "citations": list(citations),
        "seconds": round(seconds, 2), "load_seconds": round(load_seconds, 2),
    }
    if llm_result is not None:
        out["llm"] = {"model": args.llm_model, "family": args.llm_family, "judge": llm_result.judge,
                      "judge_family": llm_result.judge_family, "asked": llm_result.asked,
                      "written": llm_result.written, "kept": llm_result.kept, "rejected": llm_result.rejected,
                      "unusable": llm_result.unusable, "kinds": list(llm.kinds())}
    return out


def _report(summary: dict[str, Any], built: Any, kind_names: list[str], citations: tuple[str, ...],
            llm_result: Any) -> str:
    from guardrail_server.synth import grid
    from guardrail_server.synth.kinds import KINDS

    lines = [f"synth: {summary['documents']} documents, {summary['pages']} pages, {summary['passages']} passages -> "
             f"{summary['cases']} cases of {summary['planned']} planned in {summary['seconds']:.1f} s "
             f"(seed {summary['seed']})"]
    if summary["anchors"]:
        a = summary["anchors"]
        top = sorted(a["weights"].items(), key=lambda kv: -kv[1])[:5]
        lines.append(f"anchors {a['set']}: weights " + ", ".join(f"{k} x{w:.2f}" for k, w in top if w > 1)
                     + ("" if any(w > 1 for _, w in top) else "all 1 (no failed label or critique word matched)"))
    lines.append("")
    lines.append(f"{'kind':<21}{'group':<13}{'planned':>8}{'made':>6}  expected")
    for k in kind_names:
        row = summary["per_kind"].get(k, {"planned": 0, "made": 0})
        spec = KINDS[k]
        exp = spec.expected("numeric")
        shown = " ".join(f"{inv[:4]}={v}" for inv, v in exp.items())
        lines.append(f"{k:<21}{spec.group:<13}{row['planned']:>8}{row['made']:>6}  {shown}")
    if llm_result is not None:
        for k in ("llm_supported", "llm_hallucinated"):
            n = sum(c.kind == k for c in built.cases)
            lines.append(f"{k:<21}{'llm':<13}{'':>8}{n:>6}")
    lines.append("")
    cell_counts = grid.counts((c.kind, c.cell) for c in built.cases if c.kind in KINDS)
    lines.append(grid.format_grid(cell_counts, kind_names, citations=citations))
    if llm_result is not None:
        from guardrail_server.synth import llm

        lines += ["", llm.describe(summary["llm"]["model"], summary["llm"]["family"], llm_result)]
    return "\n".join(lines)
