"""Numbers from result rows, per invariant: violation rates with Wilson intervals and, where the dataset carries
labels, agreement with them (confusion matrix, balanced accuracy, AUROC, threshold sweep).

The positive class is a *violation* throughout: a labeled row is positive when the dataset says the invariant should
fail, and predicted positive when the verdict is `fail` (score < threshold)."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from guardrail_invariants.stats import auroc

Z95 = 1.959963984540054
SWEEP = np.round(np.linspace(0.0, 1.0, 101), 2)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: honest at small n and near 0 or 1, where the normal approximation is not."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def classification(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    tpr, tnr = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    balanced = (tpr + tnr) / 2 if tpr is not None and tnr is not None else None
    return {"tpr": tpr, "recall": tpr, "tnr": tnr, "fpr": None if tnr is None else 1 - tnr, "precision": precision,
            "f1": f1, "accuracy": _ratio(tp + tn, tp + tn + fp + fn), "balanced_accuracy": balanced}


def sweep(scores: np.ndarray, positive: np.ndarray) -> list[dict[str, float | None]]:
    """Predicting a violation iff score < t, for t = 0.00 .. 1.00."""
    out = []
    for t in SWEEP:
        pred = scores < t
        tp = int((pred & positive).sum())
        fp = int((pred & ~positive).sum())
        fn = int((~pred & positive).sum())
        tn = int((~pred & ~positive).sum())
        m = classification(tp, fp, tn, fn)
        out.append({"threshold": float(t), "tpr": m["tpr"], "fpr": m["fpr"],
                    "balanced_accuracy": m["balanced_accuracy"]})
    return out


def summarize_invariant(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    outcomes = Counter(r["outcome"] for r in rows)
    n = len(rows)
    n_pass, n_fail = outcomes.get("pass", 0), outcomes.get("fail", 0)
    scored = n_pass + n_fail
    low, high = wilson(n_fail, scored)
    thresholds = sorted({r["threshold"] for r in rows if r["threshold"] is not None})
    out: dict[str, Any] = {
        "n": n, "n_pass": n_pass, "n_fail": n_fail, "n_error": outcomes.get("error", 0),
        "n_skipped": outcomes.get("skipped", 0),
        # checked only in part (time budget or a cap): out of the rates, since their score covers part of the case
        "n_partial": outcomes.get("partial", 0),
        "violation_rate": _ratio(n_fail, scored), "violation_rate_low": low, "violation_rate_high": high,
        "pass_rate": _ratio(n_pass, scored), "error_rate": _ratio(outcomes.get("error", 0), n),
        "skipped_rate": _ratio(outcomes.get("skipped", 0), n),
        "threshold": thresholds[0] if len(thresholds) == 1 else None,
        "histogram": np.histogram([r["score"] for r in rows if r["outcome"] in ("pass", "fail")],
                                  bins=20, range=(0.0, 1.0))[0].tolist(),
        "by_dataset": {ds: {"n": len(rs), "violation_rate": _ratio(sum(r["outcome"] == "fail" for r in rs),
                                                                   sum(r["outcome"] in ("pass", "fail") for r in rs))}
                       for ds, rs in _group(rows, "dataset").items()},
        "labeled": None,
        **judge_panel(rows),
    }
    # A skipped check is scored as the service treats it — the call is allowed (score 1.0) — so eval and service
    # agree; only errors stay out (their decision depends on each invariant's on_error policy).
    labeled = [r for r in rows if r.get("expected") in ("pass", "fail") and r["outcome"] in ("pass", "fail", "skipped")]
    if labeled:
        positive = np.array([r["expected"] == "fail" for r in labeled])
        predicted = np.array([r["outcome"] == "fail" for r in labeled])
        scores = np.array([r["score"] for r in labeled], dtype=float)
        tp = int((predicted & positive).sum())
        fp = int((predicted & ~positive).sum())
        fn = int((~predicted & positive).sum())
        tn = int((~predicted & ~positive).sum())
        curve = sweep(scores, positive)
        best = max((c for c in curve if c["balanced_accuracy"] is not None),
                   key=lambda c: c["balanced_accuracy"], default=None)
        hist_by = {}
        for name, mask in (("holds", ~positive), ("violated", positive)):
            hist_by[name] = np.histogram(scores[mask], bins=20, range=(0.0, 1.0))[0].tolist()
        out["labeled"] = {
            "n": len(labeled), "n_positive": int(positive.sum()), "n_negative": int((~positive).sum()),
            "n_skipped": sum(r["outcome"] == "skipped" for r in labeled),
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
            **classification(tp, fp, tn, fn),
            "auroc": auroc(1.0 - scores, positive),
            "sweep": curve,
            "best_threshold": best["threshold"] if best else None,
            "best_balanced_accuracy": best["balanced_accuracy"] if best else None,
            "histogram_by_label": hist_by,
            "unscored": sum(1 for r in rows if r.get("expected") in ("pass", "fail")) - len(labeled),
        }
    return out


def _accuracy(pairs: Sequence[tuple[bool, bool]]) -> dict[str, float | None]:
    """(predicted violation, labeled violation) pairs -> n, accuracy, balanced accuracy."""
    tp = sum(p and y for p, y in pairs)
    tn = sum(not p and not y for p, y in pairs)
    fp = sum(p and not y for p, y in pairs)
    fn = sum(not p and y for p, y in pairs)
    m = classification(tp, fp, tn, fn)
    return {"n": len(pairs), "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}


def judge_panel(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cross-family judges: how often they disagree, and — with labels — each judge's accuracy alone and the primary's
    accuracy where the judges agree vs. where they disagree (the claim to check: agreement is reliable,
    disagreement marks the hard cases). Empty when no secondary judged any row."""
    panel = [r for r in rows if r.get("judges_disagree") is not None]
    if not panel:
        return {"disagreement_rate": None, "judges": None}
    n_dis = sum(bool(r["judges_disagree"]) for r in panel)
    low, high = wilson(n_dis, len(panel))
    per_judge: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    agree_pairs: list[tuple[bool, bool]] = []
    disagree_pairs: list[tuple[bool, bool]] = []
    verdict_agreement = []
    for r in panel:
        judges = json.loads(r["judges"]) if r.get("judges") else {}
        outcomes = [j.get("outcome") for j in judges.values() if j.get("outcome")]
        if len(outcomes) >= 2:
            verdict_agreement.append(len(set(outcomes)) == 1)
        if r.get("expected") not in ("pass", "fail") or r["outcome"] not in ("pass", "fail"):
            continue
        violated = r["expected"] == "fail"
        for name, j in judges.items():
            if j.get("outcome"):
                per_judge[name].append((j["outcome"] == "fail", violated))
        (disagree_pairs if r["judges_disagree"] else agree_pairs).append((r["outcome"] == "fail", violated))
    return {
        "disagreement_rate": n_dis / len(panel),
        "judges": {
            "n": len(panel), "n_disagree": n_dis, "disagreement_rate_low": low, "disagreement_rate_high": high,
            "verdict_agreement": _ratio(sum(verdict_agreement), len(verdict_agreement)),
            "per_judge": {name: _accuracy(pairs) for name, pairs in sorted(per_judge.items())},
            "primary_when_agree": _accuracy(agree_pairs) if agree_pairs else None,
            "primary_when_disagree": _accuracy(disagree_pairs) if disagree_pairs else None,
        },
    }


def disagreeing_cases(rows: Sequence[dict[str, Any]], k: int = 50) -> list[dict[str, Any]]:
    """The cases the judges disagree on, widest score gap first: the first ones to put in front of people."""
    def gap(r: dict[str, Any]) -> float:
        scores = [j["score"] for j in json.loads(r.get("judges") or "{}").values() if "score" in j]
        return max(scores) - min(scores) if len(scores) >= 2 else 0.0

    return sorted((r for r in rows if r.get("judges_disagree")), key=gap, reverse=True)[:k]


def _group(rows: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[str(r.get(key))].append(r)
    return dict(groups)


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """invariant -> its numbers, in a stable (sorted) order."""
    return {name: summarize_invariant(rs) for name, rs in sorted(_group(rows, "invariant").items())}


GATE_METRICS = ("n", "n_pass", "n_fail", "n_error", "n_skipped", "violation_rate", "violation_rate_low",
                "violation_rate_high", "pass_rate", "error_rate", "skipped_rate", "disagreement_rate")
LABELED_METRICS = ("tpr", "recall", "tnr", "fpr", "precision", "f1", "accuracy", "balanced_accuracy", "auroc")


def metric(summary: dict[str, Any], name: str) -> float | None:
    """A scalar metric of one invariant's summary, by the name gates and compare use."""
    if name in GATE_METRICS:
        return summary.get(name)
    if name in LABELED_METRICS:
        labeled = summary.get("labeled")
        return None if labeled is None else labeled.get(name)
    raise KeyError(name)
