"""Builders for the adapt and walkthrough tests (no tests here): an anchor set made the way a team makes one — cases
checked by the judge, labelled by a person (here: the synth set's construction labels stand in for the person) and
written in `guardrail anchors export`'s format, so `guardrail anchors import` freezes it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrail_server.convert import case_from_dict
from guardrail_server.review.anchors import FORMAT
from guardrail_server.review.records import Pending, raw_record
from guardrail_invariants.types import Outcome, Verdict


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def eval_rows(run_dir: Path, invariant: str = "entailment") -> dict[str, dict[str, Any]]:
    return {r["case_id"]: r for r in read_jsonl(run_dir / "results.jsonl") if r["invariant"] == invariant}


def pick_confident(cases: Sequence[Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]], per_label: int, *,
                   high: float = 0.9, low: float = 0.2) -> list[Mapping[str, Any]]:
    """Cases the judge gets right with a margin: supported ones it scores >= high, hallucinated ones <= low."""
    good = [c for c in cases if c["expected"].get("entailment") == "pass"
            and results.get(c["id"], {}).get("score", 0) >= high]
    bad = [c for c in cases if c["expected"].get("entailment") == "fail"
           and results.get(c["id"], {}).get("score", 1) <= low]
    return good[:per_label] + bad[:per_label]


def anchor_lines(cases: Iterable[Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]], name: str,
                 reviewer: str = "tester") -> list[dict[str, Any]]:
    """`anchors export` lines: each case with the judge's verdict as it was checked, and the person's label."""
    lines = []
    for pos, c in enumerate(cases):
        r = results[c["id"]]
        v = Verdict("entailment", Outcome(r["outcome"]), float(r["score"]), float(r["threshold"]), judge="base")
        sample_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}:{c['id']}"))
        record = raw_record(Pending(sample_id, 1.7e9 + pos, case_from_dict(c), [v], r.get("decision") or "allow",
                                    ("random",)))
        label = c["expected"]["entailment"]
        critique = "" if label == "pass" else f"Not what the passage says ({c['meta']['kind'].replace('_', ' ')})."
        lines.append({"format": FORMAT, "anchor_set": {"name": name, "version": 1, "description": "test"},
                      "position": pos, "sample": record,
                      "annotations": [{"reviewer": reviewer, "critique": critique, "labels": {"entailment": label}}]})
    return lines


def write_anchor_file(path: Path, lines: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines), encoding="utf-8")
    return path
