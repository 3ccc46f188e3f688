"""Production samples from the review store as eval cases: an anchor set (people's labels become the expected
outcomes) or every sample in a date range, so a model or threshold change is replayed on real traffic first.

Samples stored redacted carry redacted text; a replay of `pii_boundary` on them measures the redactor, not the
check — store raw text (`review.store_raw_text`) where that matters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from guardrail_server.convert import case_from_dict
from guardrail_server.evals.datasets import EvalCase, LoadedDataset, Malformed


class ReviewImportError(ValueError):
    pass


def _when(text: str | None, flag: str) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ReviewImportError(f"{flag}: {text!r} is not an ISO 8601 date or date-time") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _labels(sample: dict[str, Any]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for annotation in sample.get("annotations", []):  # oldest first: the latest label per invariant wins
        merged.update(annotation.get("labels", {}))
    return merged


def sample_to_eval_case(sample: dict[str, Any], dataset: str) -> EvalCase:
    data = dict(sample["case"])
    data["request_id"] = sample["id"]
    data["app"] = sample.get("app", "")
    labels = _labels(sample)
    return EvalCase(
        case=case_from_dict(data),
        dataset=dataset,
        source=f"review:{sample['id']}",
        task="review_sample",
        label=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        expected={k: v == "pass" for k, v in labels.items()},
    )


def load_review_cases(url: str, *, anchor_set: str | None = None, since: str | None = None,
                      until: str | None = None, limit: int | None = None) -> tuple[LoadedDataset, dict[str, Any]]:
    """Returns the cases and what to record about their origin in the run manifest."""
    from guardrail_server.review.store import ReviewStore

    with ReviewStore(url) as store:
        if anchor_set:
            found = store.anchor_set(anchor_set)
            if found is None:
                known = sorted({s["name"] for s in store.anchor_sets()})
                raise ReviewImportError(f"no anchor set {anchor_set!r}; known: {known}")
            ids = list(found["sample_ids"])
            dataset = f"anchor:{found['name']}@v{found['version']}"
            info = {"datasets": [dataset], "review": {"anchor_set": found["name"], "version": found["version"]}}
        else:
            start = _when(since, "--since") or datetime(1970, 1, 1, tzinfo=UTC)
            end = _when(until, "--until") or datetime.now(UTC)
            ids = store.recent_sample_ids(start, end, random_slice_only=False)
            dataset = "review_samples"
            info = {"datasets": [f"review:{start.isoformat()}..{end.isoformat()}"],
                    "review": {"since": start.isoformat(), "until": end.isoformat()}}
        if limit is not None:
            ids = ids[:limit]
        cases, malformed = [], []
        for sample_id in ids:
            sample = store.get_sample(sample_id)
            if sample is None:
                malformed.append(Malformed(f"review:{sample_id}", "sample no longer in the store"))
                continue
            try:
                item = sample_to_eval_case(sample, dataset)
            except (KeyError, TypeError, AttributeError) as exc:
                malformed.append(Malformed(f"review:{sample_id}", f"unreadable case record ({exc})"))
                continue
            if not item.case.response.strip():
                malformed.append(Malformed(f"review:{sample_id}", "empty response"))
                continue
            cases.append(item)
    return LoadedDataset(cases, malformed), info
