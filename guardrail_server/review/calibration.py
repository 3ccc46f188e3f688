"""Agreement between judges and people, and thresholds tuned to it.

Per invariant: split the human-labeled cases (stratified by label, seeded) into a tuning part and a held-out
part; pick the threshold that maximises accuracy on the tuning part; report accuracy (Wilson interval),
Cohen's kappa (asymptotic interval, Cohen 1960) and the confusion matrix on the held-out part only. The
positive class is a *violation* (human label `fail`; judge score < threshold).

Two guards, because a calibration that looks perfect can switch a check off (issue 16): an invariant whose
human labels are all one class cannot be calibrated (`one_class_invariants`; the CLI refuses, exit 2) — any
threshold below every score "agrees" with all-pass labels, and kappa is undefined there, not 1.0; and no tuned
threshold is ever <= 0 (a judge "fails" when score < threshold, so 0 means it never fails: every leak allowed)
unless the caller passes `allow_disable=True`.

A third, because a calibration on a handful of labels can move a threshold anywhere (issue 23: five labels moved
entailment from 0.85 to 0.34 on two held-out cases, accuracy 0.50 [0.09, 0.91]): `validate` says whether a tuned
threshold is backed by enough evidence to be written — at least `min_labels` labeled cases (the seed's anchor set is
20-30), a held-out part large enough that agreement there could show the new threshold beats the current one, and a
held-out agreement whose 95% Wilson interval lies above the current threshold's agreement. The current threshold's
agreement is measured on every labeled case (it was tuned on none of them), the new one's on the held-out part only. A
threshold that does not move needs no such evidence beyond the minimum count. When it fails, `more_labels` estimates
how many more labeled cases would let it pass (at the same agreement; None when more labels cannot help).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Item:
    sample_id: str
    score: float
    holds: bool  # the human label: True = pass
    threshold: float  # the judge's threshold when the case was checked


@dataclass(slots=True)
class Confusion:
    tp: int = 0  # judge fail, human fail
    fp: int = 0  # judge fail, human pass
    fn: int = 0  # judge pass, human fail
    tn: int = 0  # judge pass, human pass

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def add(self, judge_fails: bool, human_fails: bool) -> None:
        if judge_fails and human_fails:
            self.tp += 1
        elif judge_fails:
            self.fp += 1
        elif human_fails:
            self.fn += 1
        else:
            self.tn += 1


@dataclass(slots=True)
class InvariantResult:
    invariant: str
    n_train: int
    n_test: int
    threshold_before: float
    threshold: float
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    confusion: dict[str, Any] = field(default_factory=dict)
    agrees: bool = False
    accuracy_before: float | None = None  # accuracy at threshold_before on every labeled case (it was not tuned on any)
    held_out_classes: int = 0  # how many of pass/fail the held-out part holds (kappa needs both)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for a proportion k/n (sane at n small and at 0 or n)."""
    if n == 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_low(k: int, n: int, z: float = Z95) -> float | None:
    return wilson(k, n, z)[0]


def disables(threshold: float) -> bool:
    """A threshold at which the judge can never fail a case (scores are >= 0 and it fails when score < t)."""
    return threshold <= 0.0


def cohen_kappa(c: Confusion) -> float | None:
    """(po - pe) / (1 - pe). Undefined (None) when a rater uses one class only (pe = 1): agreement then says
    nothing about whether the judge can tell the classes apart."""
    n = c.n
    if n == 0:
        return None
    po = (c.tp + c.tn) / n
    judge_fail = (c.tp + c.fp) / n
    human_fail = (c.tp + c.fn) / n
    pe = judge_fail * human_fail + (1 - judge_fail) * (1 - human_fail)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def kappa_interval(c: Confusion, z: float = Z95) -> tuple[float | None, float | None]:
    """Asymptotic interval kappa ± z·sqrt(po(1-po) / (n(1-pe)²)), clipped to [-1, 1]."""
    kappa = cohen_kappa(c)
    n = c.n
    if kappa is None or n == 0:
        return None, None
    po = (c.tp + c.tn) / n
    judge_fail = (c.tp + c.fp) / n
    human_fail = (c.tp + c.fn) / n
    pe = judge_fail * human_fail + (1 - judge_fail) * (1 - human_fail)
    se = math.sqrt(po * (1 - po) / (n * (1 - pe) ** 2))
    return max(-1.0, kappa - z * se), min(1.0, kappa + z * se)


def confusion_at(items: Iterable[Item], threshold: float) -> Confusion:
    c = Confusion()
    for it in items:
        c.add(judge_fails=it.score < threshold, human_fails=not it.holds)
    return c


def tune_threshold(items: Sequence[Item], current: float, *, allow_disable: bool = False) -> float:
    """The threshold with the best accuracy on `items`; ties go to the best kappa, then the one nearest the
    current threshold. Candidates sit midway between adjacent distinct scores, so nothing rests on an edge.
    A threshold that disables the check (<= 0) is a candidate only with `allow_disable`."""
    if not items:
        return current
    scores = sorted({round(it.score, 6) for it in items})
    candidates = {current, 0.0}
    candidates.update((a + b) / 2 for a, b in zip(scores, scores[1:]))
    candidates.add(min(1.0, scores[-1] + (1.0 - scores[-1]) / 2) if scores[-1] < 1.0 else 1.0)
    if not allow_disable:
        candidates = {t for t in candidates if not disables(t)} or {current}

    def key(t: float) -> tuple[float, float, float]:
        c = confusion_at(items, t)
        kappa = cohen_kappa(c)
        return ((c.tp + c.tn) / c.n, -1.0 if kappa is None else kappa, -abs(t - current))

    return round(max(sorted(candidates), key=key), 4)


def split(items: Sequence[Item], test_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Stratified by human label; each stratum of two or more gives at least one case to each side."""
    train: list[Item] = []
    test: list[Item] = []
    for holds in (True, False):
        group = sorted((it for it in items if it.holds is holds), key=lambda it: it.sample_id)
        random.Random(f"{seed}:{holds}").shuffle(group)
        k = round(len(group) * test_fraction)
        if len(group) >= 2:
            k = min(max(k, 1), len(group) - 1)
        test.extend(group[:k])
        train.extend(group[k:])
    return train, test


def items_by_invariant(samples: Iterable[Mapping[str, Any]]) -> dict[str, list[Item]]:
    """Pairs (judge score, human label) from labeled samples; errored or skipped verdicts are left out."""
    out: dict[str, list[Item]] = {}
    for s in samples:
        labels = s.get("labels", {})
        for v in s.get("verdicts", []):
            label = labels.get(v["invariant"])
            if label not in ("pass", "fail") or v.get("outcome") not in ("pass", "fail"):
                continue
            out.setdefault(v["invariant"], []).append(
                Item(s["id"], float(v["score"]), label == "pass", float(v["threshold"]))
            )
    return out


def label_counts(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Human labels per invariant (only those paired with a pass/fail judge verdict): {name: {pass, fail}}."""
    return {
        name: {"pass": sum(it.holds for it in items), "fail": sum(not it.holds for it in items)}
        for name, items in sorted(items_by_invariant(samples).items())
    }


def one_class_invariants(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Invariants whose human labels are all pass or all fail: they cannot be calibrated."""
    return {name: c for name, c in label_counts(samples).items() if not (c["pass"] and c["fail"])}


def _confusion_dict(c: Confusion) -> dict[str, Any]:
    cells = {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}
    return {
        **cells,
        "n": c.n,
        "ci": {k: list(wilson(v, c.n)) for k, v in cells.items()},
    }


def calibrate(
    samples: Iterable[Mapping[str, Any]],
    current: Mapping[str, float] | None = None,
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
    target: float = 0.90,
    allow_disable: bool = False,
    invariants: Iterable[str] | None = None,
) -> list[InvariantResult]:
    """One result per invariant that has human labels (or per one of `invariants`). `current` maps invariant ->
    threshold in force (else the threshold recorded with the verdicts). Callers check `one_class_invariants`
    first: a one-class invariant gets a result here, but its kappa is None and it never `agrees`."""
    wanted = set(invariants) if invariants is not None else None
    results = []
    for name, items in sorted(items_by_invariant(samples).items()):
        if wanted is not None and name not in wanted:
            continue
        before = (current or {}).get(name)
        if before is None:
            before = sorted(it.threshold for it in items)[len(items) // 2]
        train, test = split(items, test_fraction, seed)
        tuned = tune_threshold(train, before, allow_disable=allow_disable)
        c = confusion_at(test, tuned)
        acc = (c.tp + c.tn) / c.n if c.n else None
        c_before = confusion_at(items, before)  # the current threshold was fit to none of them: all are held out
        acc_before = (c_before.tp + c_before.tn) / c_before.n if c_before.n else None
        acc_lo, acc_hi = wilson(c.tp + c.tn, c.n)
        kappa = cohen_kappa(c)
        k_lo, k_hi = kappa_interval(c)
        results.append(
            InvariantResult(
                invariant=name, n_train=len(train), n_test=len(test), threshold_before=before, threshold=tuned,
                accuracy=acc, accuracy_low=acc_lo, accuracy_high=acc_hi, kappa=kappa, kappa_low=k_lo,
                kappa_high=k_hi, confusion=_confusion_dict(c),
                agrees=acc is not None and acc > target and kappa is not None and len({it.holds for it in items}) == 2,
                accuracy_before=acc_before, held_out_classes=len({it.holds for it in test}),
            )
        )
    return results


# -- is a tuned threshold backed by evidence? ------------------------------------------------------------

MIN_LABELS = 20  # the seed's anchor set: 20-30 labeled cases
_MAX_HELD_OUT = 100_000  # where the search for "how many labels would do" gives up


@dataclass(frozen=True, slots=True)
class Validation:
    """Whether a result may be written as a threshold; `reasons` say why not, in the operator's words."""

    invariant: str
    validated: bool
    reasons: tuple[str, ...] = ()
    more_labels: int | None = None  # labeled cases to add (at the same agreement) for it to pass; None: cannot help

    def describe(self) -> str:
        if self.validated:
            return f"{self.invariant}: validated"
        more = (f"about {self.more_labels} more labeled cases would be needed" if self.more_labels is not None
                else "more labels at this agreement would not change that")
        return f"{self.invariant}: " + "; ".join(self.reasons) + f" — {more}"


def _held_out_needed(k_of: Any, beat: float) -> int | None:
    """The smallest held-out size n at which agreement k_of(n) out of n has a Wilson lower bound above `beat`."""
    n = 1
    while n <= _MAX_HELD_OUT:
        low = wilson_low(k_of(n), n)
        if low is not None and low > beat:
            return n
        n = n + 1 if n < 512 else int(n * 1.05)
    return None


def _labels_for(held_out: int, test_fraction: float) -> int:
    return math.ceil(held_out / test_fraction)


def validate(result: InvariantResult, *, min_labels: int = MIN_LABELS, test_fraction: float = 0.3) -> Validation:
    """Refuses a tuned threshold that the labels cannot back (see the module docstring). `test_fraction` is the
    held-out share the run used, for turning a held-out size into labeled cases."""
    n = result.n_train + result.n_test
    reasons: list[str] = []
    needed = [min_labels - n] if n < min_labels else []
    if n < min_labels:
        reasons.append(f"{n} labeled cases, fewer than the minimum {min_labels} (--min-anchors)")
    moved = abs(result.threshold - result.threshold_before) > 1e-9
    helpless = False
    if moved:
        before = result.accuracy_before
        if result.n_test == 0 or before is None or result.held_out_classes < 2:
            reasons.append(f"the held-out part ({result.n_test} cases) lacks a pass or a fail label, so it cannot "
                           "tell the thresholds apart (label more cases of the rarer outcome)")
            needed.append(1)
        else:
            perfect = wilson_low(result.n_test, result.n_test) or 0.0
            current = f"the current threshold's {before:.2f} (at {result.threshold_before:.2f}, on all {n} labels)"
            if perfect <= before:
                held_out = _held_out_needed(lambda m: m, before)
                reasons.append(
                    f"the held-out part is too small to tell: even {result.n_test}/{result.n_test} agreement "
                    f"[{perfect:.2f}, 1.00] would not beat {current}")
                if held_out is None:
                    helpless = True
                else:
                    needed.append(_labels_for(held_out, test_fraction) - n)
            acc, low = result.accuracy, result.accuracy_low
            if acc is not None and low is not None and low <= before and perfect > before:
                reasons.append(
                    f"held-out agreement {acc:.2f} [{low:.2f}, {result.accuracy_high or 1.0:.2f}] at "
                    f"{result.threshold:.2f} does not beat {current}")
                held_out = _held_out_needed(lambda m: math.floor(acc * m), before) if acc > before else None
                if held_out is None:
                    helpless = True
                else:
                    needed.append(_labels_for(held_out, test_fraction) - n)
    if not reasons:
        return Validation(result.invariant, True)
    more = None if helpless else max(1, max(needed, default=1))
    return Validation(result.invariant, False, tuple(reasons), more)


def agreement_at(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Agreement of the judges' production outcomes (their thresholds at the time) with human labels."""
    out = {}
    for name, items in sorted(items_by_invariant(samples).items()):
        c = Confusion()
        for it in items:
            c.add(judge_fails=it.score < it.threshold, human_fails=not it.holds)
        acc = (c.tp + c.tn) / c.n if c.n else None
        lo, hi = wilson(c.tp + c.tn, c.n)
        out[name] = {"n": c.n, "accuracy": acc, "accuracy_low": lo, "accuracy_high": hi, "kappa": cohen_kappa(c)}
    return out


# -- thresholds as a config overlay ---------------------------------------------------------------------


def write_overlay(path: str | Path, thresholds: Mapping[str, float], *, comment: str = "",
                  notes: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Writes `invariants: {name: {threshold: x, calibration: {...}}}`, the schema of `guardrail_server.config`.
    Load it alone (`--config`) or on top of a base config with `overlay_overrides()`. `notes` (per invariant: run,
    source, validated, note) say where a threshold came from; every key is written, so a later overlay replaces an
    earlier one's note whole. An overlay holding an unvalidated threshold says so in its first line too."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    notes = notes or {}
    unvalidated = sorted(k for k in thresholds if not notes.get(k, {}).get("validated", True))
    header = "# Thresholds tuned by `guardrail calibrate`" + (f": {comment}" if comment else "") + "\n"
    if unvalidated:
        header = (f"# UNVALIDATED: written with --allow-unvalidated-threshold; the labels do not show that "
                  f"{', '.join(unvalidated)} agree(s) with people better than before.\n" + header)
    tree: dict[str, Any] = {}
    for name, value in sorted(thresholds.items()):
        tree[name] = {"threshold": float(value)}
        if name in notes:
            note = notes[name]
            tree[name]["calibration"] = {"run": note.get("run"), "source": str(note.get("source", "")),
                                         "validated": bool(note.get("validated", True)),
                                         "note": str(note.get("note", ""))}
    p.write_text(header + yaml.safe_dump({"invariants": tree}, sort_keys=True, width=1000))
    return p


def overlay_overrides(path: str | Path) -> list[tuple[str, Any]]:
    """An overlay file as `load_config(..., overrides=...)` pairs, so it refines a base config key by key."""
    tree = yaml.safe_load(Path(path).read_text()) or {}
    pairs: list[tuple[str, Any]] = []
    for name, policy in (tree.get("invariants") or {}).items():
        for key, value in (policy or {}).items():
            pairs.append((f"invariants.{name}.{key}", value))
    return pairs


# -- latest agreement for the server --------------------------------------------------------------------


def latest_agreement(store: Any) -> dict[str, float]:
    """Held-out accuracy per invariant from the newest calibration run (`store`: ReviewStore or URL)."""
    from guardrail_server.review.store import ReviewStore

    own = not isinstance(store, ReviewStore)
    st = ReviewStore(store).open() if own else store
    try:
        runs = st.calibration_runs(limit=1)
    finally:
        if own:
            st.close()
    if not runs:
        return {}
    return {r["invariant"]: float(r["accuracy"]) for r in runs[0]["results"] if r["accuracy"] is not None}


def set_agreement_gauge(store: Any) -> dict[str, float]:
    """Sets `guardrail_judge_agreement_ratio{invariant}` from the store; never raises (logs instead)."""
    import logging

    from guardrail_server.metrics import JUDGE_AGREEMENT
    from guardrail_invariants.registry import REGISTRY

    try:
        values = latest_agreement(store)
    except Exception as exc:  # noqa: BLE001 - a missing store must not stop the server
        logging.getLogger(__name__).warning("review: could not read calibration runs (%s)", type(exc).__name__)
        return {}
    values = {k: v for k, v in values.items() if k in REGISTRY}  # label values stay a closed set
    for name, value in values.items():
        JUDGE_AGREEMENT.labels(name).set(value)
    return values
