"""Base vs adapted judge, measured where it counts: people's labels (the anchors) and documents it never trained on.

Both judges run through `guardrail eval` (in process, the servicer's engine, only `entailment` enabled), so the run
folders are ordinary eval runs and `guardrail eval compare BASE ADAPTED` shows them side by side. From the anchors'
rows:

- **agreement** with people: a judge agrees on an anchor when it passes the case exactly when the human label says
  pass (score >= threshold), counted over the anchors the check decided (pass or fail), with its 95% Wilson interval;
  AUROC of the score for the human label (threshold-free);
- **threshold**: `guardrail calibrate`'s own procedure (`review.calibration.calibrate`: a stratified tuning part and
  a held-out part) on the adapted judge's scores, starting from the base's threshold, and kept only when
  `calibration.validate` says the labels back it — otherwise the adapted judge keeps the base's threshold;
- **the ship rule**: the adapted judge is worse — and no overlay is written — when it agrees with fewer anchors than
  the base (each at the threshold it would run with), or ranks them worse: an AUROC lower by more than one discordant
  pair of anchors (1 / (pass anchors x fail anchors); one pair of near-tied scores trading places is the smallest
  change there is, and int8 kernels alone move scores by ~1e-3). Equal is not worse.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from guardrail_server.review import calibration

INVARIANT = "entailment"


class AnchorError(ValueError):
    """The anchors cannot judge the adapted model (no entailment labels, or only one class of them)."""


@dataclass(frozen=True, slots=True)
class Agreement:
    threshold: float
    n: int  # anchors the check decided (pass or fail) that carry a human entailment label
    agree: int
    accuracy: float | None
    low: float | None
    high: float | None
    auroc: float | None
    undecided: int = 0  # anchors whose check was skipped or errored
    pairs: int = 0  # (pass, fail) pairs of decided anchors: the AUROC's denominator

    def describe(self) -> str:
        if not self.n:
            return "no decided anchors"
        auroc = "-" if self.auroc is None else f"{self.auroc:.3f}"
        return (f"{self.agree}/{self.n} = {self.accuracy:.2f} [{self.low:.2f}, {self.high:.2f}] at threshold "
                f"{self.threshold:.2f}, AUROC {auroc}")

    def row(self) -> dict[str, Any]:
        return asdict(self)


def anchor_rows(samples: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Native eval rows for the anchors people labelled for entailment (latest label wins); id = the sample id."""
    rows = []
    for s in samples:
        label = s.get("labels", {}).get(INVARIANT)
        case = s.get("case") or {}
        if label not in ("pass", "fail") or not str(case.get("response", "")).strip():
            continue
        rows.append({"id": str(s["id"]), "question": case.get("question", ""), "context": case.get("context", []),
                     "response": case["response"], "expected": {INVARIANT: label}, "label": label})
    return rows


def check_anchor_labels(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"pass": sum(r["label"] == "pass" for r in rows), "fail": sum(r["label"] == "fail" for r in rows)}
    if not rows:
        raise AnchorError("the anchor set has no case labelled for entailment; label some (`guardrail review`) and "
                          "freeze a new version (`guardrail anchors select`)")
    if not (counts["pass"] and counts["fail"]):
        raise AnchorError(f"the anchors' entailment labels are all one class ({counts['pass']} pass, {counts['fail']} "
                          "fail): they cannot tell a better judge from a worse one; label cases of the other class")
    return counts


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def run_eval(dataset: Path, out_dir: Path, config_args: Sequence[str], sets: Sequence[str], log: Path) -> None:
    """`guardrail eval DATASET --invariant entailment --out OUT_DIR` in this process, its report into `log`."""
    from guardrail_server.cli import main

    argv = ["eval", str(dataset), "--out", str(out_dir), "--invariant", INVARIANT, "--no-progress",
            *config_args, *[x for s in sets for x in ("--set", s)]]
    log.parent.mkdir(parents=True, exist_ok=True)
    buf_err = io.StringIO()
    with log.open("a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(buf_err):
        print(f"# guardrail {' '.join(argv)}", flush=True)
        code = main(argv)
    if code not in (0, 1):
        raise RuntimeError(f"guardrail eval on {dataset} exited {code}: {buf_err.getvalue().strip()[-500:]}")


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    from guardrail_server.evals.results import read_rows

    return [r for r in read_rows(run_dir) if r["invariant"] == INVARIANT]


def agreement(rows: Sequence[Mapping[str, Any]], threshold: float) -> Agreement:
    from guardrail_invariants.stats import auroc

    decided = [r for r in rows if r["outcome"] in ("pass", "fail") and r.get("expected") in ("pass", "fail")]
    agree = sum((float(r["score"]) >= threshold) == (r["expected"] == "pass") for r in decided)
    lo, hi = calibration.wilson(agree, len(decided))
    area = auroc([float(r["score"]) for r in decided], [r["expected"] == "pass" for r in decided]) if decided else None
    undecided = sum(r["outcome"] not in ("pass", "fail") for r in rows)
    n_pass = sum(r["expected"] == "pass" for r in decided)
    return Agreement(threshold, len(decided), agree, agree / len(decided) if decided else None, lo, hi, area,
                     undecided, n_pass * (len(decided) - n_pass))


def calibrate(rows: Sequence[Mapping[str, Any]], base_threshold: float, *, min_labels: int, test_fraction: float,
              seed: int) -> tuple[float, calibration.InvariantResult, calibration.Validation]:
    """`guardrail calibrate` on the adapted judge's anchor scores: (threshold to use, the result, its validation).
    An unvalidated threshold is not used: the base's stays."""
    samples = [{"id": r["case_id"], "labels": {INVARIANT: r["expected"]},
                "verdicts": [{"invariant": INVARIANT, "outcome": r["outcome"], "score": r["score"],
                              "threshold": r["threshold"]}]}
               for r in rows if r.get("expected") in ("pass", "fail")]
    [result] = calibration.calibrate(samples, {INVARIANT: base_threshold}, test_fraction=test_fraction, seed=seed,
                                     invariants=[INVARIANT])
    check = calibration.validate(result, min_labels=min_labels, test_fraction=test_fraction)
    usable = check.validated and not calibration.disables(result.threshold)
    return (result.threshold if usable else base_threshold), result, check


def worse(base: Agreement, adapted: Agreement) -> str | None:
    """Why the adapted judge is worse on the anchors, or None (equal is not worse)."""
    reasons = []
    if adapted.agree < base.agree or adapted.n < base.n:
        reasons.append(f"it agrees with {adapted.agree} of {adapted.n} anchors, the base with {base.agree} of {base.n}")
    one_pair = 1.0 / base.pairs if base.pairs else 0.0
    if base.auroc is not None and (adapted.auroc is None or adapted.auroc < base.auroc - one_pair - 1e-9):
        reasons.append(f"its AUROC on the anchors is {_f(adapted.auroc)}, the base's {_f(base.auroc)} (more than one "
                       "pair of anchors ranked the wrong way round)")
    return "; ".join(reasons) or None


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def synth_summary(rows: Sequence[Mapping[str, Any]], threshold: float) -> dict[str, Any]:
    """AUROC and balanced accuracy on a labelled-by-construction set, and the share flagged per label."""
    from guardrail_invariants.stats import auroc

    decided = [r for r in rows if r["outcome"] in ("pass", "fail") and r.get("expected") in ("pass", "fail")]
    good = [r for r in decided if r["expected"] == "pass"]
    bad = [r for r in decided if r["expected"] == "fail"]
    tpr = sum(float(r["score"]) < threshold for r in bad) / len(bad) if bad else None
    tnr = sum(float(r["score"]) >= threshold for r in good) / len(good) if good else None
    area = auroc([float(r["score"]) for r in decided], [r["expected"] == "pass" for r in decided]) if decided else None
    return {"n": len(decided), "auroc": area, "threshold": threshold,
            "balanced_accuracy": (tpr + tnr) / 2 if tpr is not None and tnr is not None else None,
            "false_flags": (1 - tnr) if tnr is not None else None, "caught": tpr}


def write_overlay(path: Path, *, model: str, models_dir: Path, threshold: float, source: str, validated: bool,
                  note: str, comment: str) -> Path:
    """The config overlay that serves the adapted judge: `models.dir`, `invariants.entailment.options.model` and
    `threshold`, with calibrate's note of where the threshold came from. Layer it over the base config
    (`guardrail serve -c config.yaml -c OVERLAY`): files merge key by key."""
    tree = {"models": {"dir": str(models_dir.resolve())},
            "invariants": {INVARIANT: {"threshold": float(threshold), "options": {"model": model},
                                       "calibration": {"run": None, "source": source, "validated": bool(validated),
                                                       "note": note}}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by `guardrail adapt`: {comment}\n"
              f"# Serve it over your config: guardrail serve -c CONFIG -c {path.name}\n")
    path.write_text(header + yaml.safe_dump(tree, sort_keys=True, width=1000), encoding="utf-8")
    return path
