"""What a reviewer is shown of a stored sample: the raw text when it was sealed and the key is at hand, and
the judges' verdicts only when review is not blind or the reviewer has already labeled the case.

Blind review exists because a verdict shown next to the buttons anchors the label: people agree with a
judge they can see far more often than with one they cannot, and calibration then measures the judge
against itself. Other reviewers' labels anchor the same way, so blind mode hides them too until this
reviewer has labeled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from guardrail_server.review.records import unseal

log = logging.getLogger(__name__)


def with_raw_text(sample: Mapping[str, Any], key: bytes | None) -> dict[str, Any]:
    """The sample with its sealed raw case and verdicts in place of the redacted ones (`raw_text: True`), or
    unchanged (`raw_text: False`) when nothing was sealed, no key is configured or the key does not fit."""
    out = dict(sample)
    out["raw_text"] = False
    token = sample.get("sealed")
    out.pop("sealed", None)
    if not token or key is None:
        return out
    try:
        raw = unseal(token, key)
    except Exception as exc:  # noqa: BLE001 - wrong key or tampered row: show the redacted copy
        log.warning("review: sealed text of a sample could not be opened (%s)", type(exc).__name__)
        return out
    out["case"] = raw.get("case", out["case"])
    out["verdicts"] = _merge_verdicts(out.get("verdicts", []), raw.get("verdicts", []))
    out["raw_text"] = True
    return out


def _merge_verdicts(redacted: list[dict[str, Any]], raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw finding quotes and messages over the redacted verdicts (same order, same invariants)."""
    if len(raw) != len(redacted):
        return redacted
    merged = []
    for red, r in zip(redacted, raw, strict=True):
        v = dict(red)
        if r.get("invariant") == red.get("invariant") and len(r.get("findings", [])) == len(red.get("findings", [])):
            v["findings"] = [{**fr, "quote": frw.get("quote", fr.get("quote")),
                              "message": frw.get("message", fr.get("message"))}
                             for fr, frw in zip(red.get("findings", []), r.get("findings", []), strict=True)]
        merged.append(v)
    return merged


def labeled_by(sample: Mapping[str, Any], reviewer: str) -> dict[str, Any] | None:
    return next((a for a in sample.get("annotations", []) if a.get("reviewer") == reviewer), None)


def reveal(sample: Mapping[str, Any], reviewer: str, blind: bool) -> bool:
    """Whether verdicts, reasons and other reviewers' labels may be shown to `reviewer`."""
    return not blind or labeled_by(sample, reviewer) is not None
