"""Recalibration over time: every period (monthly by default) a random sample of recent production cases is
queued for review; once labeled, each round's agreement with the judges is compared with the agreement the
current anchor calibration promised. A falling line is drift.

Rounds draw from the uniform random slice only (not from failures or disagreements), so a round's agreement
estimates agreement on real traffic.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from typing import Any

from guardrail_server.review.calibration import agreement_at
from guardrail_server.review.store import ReviewStore, now, utc

KIND = "recalibration"
_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}
ALIASES = {"monthly": "30d", "weekly": "7d", "daily": "1d", "hourly": "1h"}


def parse_period(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `monthly`, ... (a bare number is days)."""
    match = _PERIOD.match(ALIASES.get(text.strip().lower(), text))
    if not match:
        raise ValueError(f"not a period: {text!r} (examples: 30d, 12h, monthly)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def due(store: ReviewStore, period: timedelta, *, at: datetime | None = None) -> bool:
    rounds = store.rounds(KIND)
    return not rounds or (at or now()) - rounds[-1]["created_at"] >= period


def queue_round(
    store: ReviewStore,
    *,
    size: int = 50,
    period: timedelta = timedelta(days=30),
    anchor_name: str = "default",
    seed: int | None = None,
    random_slice_only: bool = True,
) -> dict[str, Any]:
    """Queues a uniform random sample of cases sampled since the previous round (or within one period)."""
    end = now()
    rounds = store.rounds(KIND)
    start = rounds[-1]["window_end"] if rounds else end - period
    pool = store.recent_sample_ids(start, end, random_slice_only=random_slice_only)
    picked = sorted(random.Random(seed).sample(pool, min(size, len(pool))))
    anchors = store.anchor_set(anchor_name)
    round_id = store.create_round(KIND, anchors["id"] if anchors else None, start, end, size, picked)
    return {
        "id": round_id, "window_start": start.isoformat(), "window_end": end.isoformat(),
        "requested": size, "queued": len(picked), "pool": len(pool),
        "anchor_set": f"{anchors['name']}@{anchors['version']}" if anchors else None,
    }


def report(store: ReviewStore, *, drift_tolerance: float = 0.05) -> dict[str, Any]:
    """Per round and invariant: agreement of production verdicts with the labels given so far, against the
    baseline (held-out accuracy of the latest calibration run made before the round)."""
    runs = sorted(store.calibration_runs(), key=lambda r: (r["created_at"], r["id"]))
    rows = []
    for rnd in store.rounds(KIND):
        labeled = store.labeled_samples(rnd["sample_ids"])
        baseline_run = None
        for run in runs:
            if utc(run["created_at"]) <= rnd["created_at"]:
                baseline_run = run
        baseline = {
            r["invariant"]: r["accuracy"] for r in (baseline_run or {}).get("results", []) if r["accuracy"] is not None
        }
        per_inv = agreement_at(labeled)
        for name, agg in per_inv.items():
            base = baseline.get(name)
            agg["baseline"] = base
            agg["drift"] = None if base is None or agg["accuracy"] is None else agg["accuracy"] - base
            agg["drifting"] = agg["drift"] is not None and agg["drift"] < -drift_tolerance
        rows.append(
            {
                "round": rnd["id"], "created_at": rnd["created_at"].isoformat(), "queued": len(rnd["sample_ids"]),
                "labeled": len(labeled), "invariants": per_inv,
            }
        )
    return {"rounds": rows, "drift_tolerance": drift_tolerance}


def format_report(rep: dict[str, Any]) -> str:
    rows = rep["rounds"]
    if not rows:
        return "no recalibration rounds yet (run `guardrail recalibrate`)"
    names = sorted({n for r in rows for n in r["invariants"]})
    head = f"{'round':>5}  {'date':<10}  {'labeled':>9}  " + "  ".join(f"{n[:22]:>22}" for n in names)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for n in names:
            a = r["invariants"].get(n)
            if not a or a["accuracy"] is None:
                cells.append(f"{'-':>22}")
                continue
            base = "" if a["baseline"] is None else f" vs {a['baseline']:.2f}"
            flag = " DRIFT" if a["drifting"] else ""
            cells.append(f"{a['accuracy']:.2f} n={a['n']}{base}{flag}".rjust(22))
        lines.append(f"{r['round']:>5}  {r['created_at'][:10]:<10}  {r['labeled']:>4}/{r['queued']:<4}  " + "  ".join(cells))
    lines.append(f"agreement = production verdict vs human label; 'vs' = calibrated held-out accuracy; DRIFT = "
                 f"more than {rep['drift_tolerance']:.2f} below it")
    return "\n".join(lines)
