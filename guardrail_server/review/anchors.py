"""Anchor sets: a small frozen set of labeled cases with critiques that the judges are calibrated against.

Selection covers every (invariant, human outcome) cell first, then fills up by farthest-point sampling on
word sets (Jaccard distance), so the set is not twenty variations of one case. Cases with a critique, a
judge-human disagreement or a judge-judge disagreement are preferred: they teach the most.
Sets export to JSON Lines (one case per line, critiques included) so they can live in git.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrail_server.review.store import ReviewStore, sample_to_record

_WORD = re.compile(r"\w+")
FORMAT = "guardrail-anchor/v1"


def _words(sample: Mapping[str, Any]) -> frozenset[str]:
    case = sample.get("case", {})
    text = " ".join([case.get("question", ""), case.get("response", "")]).lower()
    return frozenset(_WORD.findall(text))


def _distance(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return 1.0 - len(a & b) / union if union else 0.0


def _value(sample: Mapping[str, Any]) -> float:
    """How much a case teaches, in [0, 1]."""
    critique = any(a.get("critique", "").strip() for a in sample.get("annotations", []))
    labels = sample.get("labels", {})
    judge_wrong = any(
        labels.get(v["invariant"]) in ("pass", "fail") and (v["outcome"] == "pass") != (labels[v["invariant"]] == "pass")
        for v in sample.get("verdicts", [])
        if v.get("outcome") in ("pass", "fail")
    )
    return (0.4 * critique) + (0.4 * judge_wrong) + (0.2 * bool(sample.get("disagreements")))


def cells(sample: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(inv, lab) for inv, lab in sample.get("labels", {}).items() if lab in ("pass", "fail")}


def select(
    samples: Sequence[Mapping[str, Any]], *, size: int = 25, per_cell: int = 2
) -> tuple[list[str], list[tuple[str, str]]]:
    """Returns (chosen sample ids, cells that no labeled case covers). Deterministic for a given input."""
    pool = sorted((s for s in samples if cells(s)), key=lambda s: s["id"])
    words = {s["id"]: _words(s) for s in pool}
    value = {s["id"]: _value(s) for s in pool}
    all_cells = sorted({c for s in pool for c in cells(s)})
    invariants = sorted({inv for inv, _ in all_cells})
    missing = [(inv, lab) for inv in invariants for lab in ("pass", "fail") if (inv, lab) not in all_cells]
    chosen: list[str] = []

    def spread(sid: str) -> float:
        if not chosen:
            return 1.0
        return min(_distance(words[sid], words[c]) for c in chosen)

    def best(candidates: list[Mapping[str, Any]]) -> Mapping[str, Any]:
        return max(candidates, key=lambda s: (spread(s["id"]) + 0.3 * value[s["id"]], s["id"]))

    covered: dict[tuple[str, str], int] = dict.fromkeys(all_cells, 0)
    by_scarcity = sorted(all_cells, key=lambda c: (sum(c in cells(s) for s in pool), c))
    for cell in by_scarcity:
        while covered[cell] < per_cell and len(chosen) < size:
            candidates = [s for s in pool if cell in cells(s) and s["id"] not in chosen]
            if not candidates:
                break
            pick = best(candidates)
            chosen.append(pick["id"])
            for c in cells(pick):
                covered[c] += 1
    while len(chosen) < size:
        candidates = [s for s in pool if s["id"] not in chosen]
        if not candidates:
            break
        least = min(covered.values()) if covered else 0
        pick = max(
            candidates,
            key=lambda s: (
                spread(s["id"]) + 0.3 * value[s["id"]] + 0.2 * any(covered[c] == least for c in cells(s)),
                s["id"],
            ),
        )
        chosen.append(pick["id"])
        for c in cells(pick):
            covered[c] += 1
    return chosen, missing


def export_jsonl(store: ReviewStore, name: str, version: int | None, path: str | Path) -> dict[str, Any]:
    """Writes the set as JSON Lines: one case per line with its verdicts, labels and critiques."""
    aset = store.anchor_set(name, version)
    if aset is None:
        raise KeyError(f"no anchor set {name!r}" + (f" version {version}" if version else ""))
    by_id = {s["id"]: s for s in store.labeled_samples(aset["sample_ids"])}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w") as fh:
        for pos, sid in enumerate(aset["sample_ids"]):
            s = by_id.get(sid) or store.get_sample(sid)
            line = {
                "format": FORMAT,
                "anchor_set": {"name": aset["name"], "version": aset["version"], "description": aset["description"]},
                "position": pos,
                "sample": sample_to_record(s),
                "annotations": [
                    {"reviewer": a["reviewer"], "critique": a["critique"], "labels": a["labels"]}
                    for a in s.get("annotations", [])
                ],
            }
            fh.write(json.dumps(line, sort_keys=True) + "\n")
    return {**aset, "path": str(p)}


def import_jsonl(store: ReviewStore, path: str | Path, *, name: str | None = None) -> dict[str, Any]:
    """Loads cases, labels and critiques (idempotent on sample id) and freezes them as a new version."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no anchor cases")
    for n, line in enumerate(lines, 1):
        if line.get("format") != FORMAT:
            raise ValueError(f"{path}:{n}: not a {FORMAT} line")
    lines.sort(key=lambda line: line.get("position", 0))
    store.insert_samples([{**line["sample"], "status": "labeled"} for line in lines])
    for line in lines:
        for a in line.get("annotations", []):
            store.save_annotation(line["sample"]["id"], a["reviewer"], a.get("labels", {}), a.get("critique", ""))
    meta = lines[0].get("anchor_set", {})
    set_name = name or meta.get("name") or "default"
    desc = f"imported from {Path(path).name}" + (f" ({meta['name']} v{meta['version']})" if meta.get("version") else "")
    return store.create_anchor_set(set_name, [line["sample"]["id"] for line in lines], desc)
