"""Input validation against the documented limits. Errors name the request field, as the proto spells it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from guardrail_server.config import LimitsConfig
from guardrail_invariants.types import Case

Code = Literal["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]


@dataclass(frozen=True)
class InputError(Exception):
    code: Code
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _too_long(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InputError("RESOURCE_EXHAUSTED", field, f"{len(value)} characters exceeds the limit of {limit}")


def validate_case(
    case: Case, requested: Collection[str], enabled: Collection[str], known: Collection[str], limits: LimitsConfig,
    *, response_required: bool = True,
) -> None:
    """Every documented limit. `response_required=False`: the first message of a CheckGeneration stream, whose
    response is still to come (its limit is checked as it grows)."""
    if response_required and not case.response.strip():
        raise InputError("INVALID_ARGUMENT", "response", "must not be empty")
    _too_long("response", case.response, limits.max_response_chars)
    _too_long("question", case.question, limits.max_question_chars)
    _too_long("request_id", case.request_id, limits.max_request_id_chars)
    _too_long("app", case.app, limits.max_app_chars)
    if len(case.context) > limits.max_passages:
        raise InputError(
            "RESOURCE_EXHAUSTED", "context", f"{len(case.context)} passages exceeds the limit of {limits.max_passages}"
        )
    seen: set[str] = set()
    total = 0
    for i, passage in enumerate(case.context):
        _too_long(f"context[{i}].text", passage.text, limits.max_passage_chars)
        _too_long(f"context[{i}].id", passage.id, limits.max_passage_id_chars)
        _too_long(f"context[{i}].title", passage.title, limits.max_passage_title_chars)
        _too_long(f"context[{i}].url", passage.url, limits.max_passage_url_chars)
        total += len(passage.text)
        if passage.id:
            if passage.id in seen:
                raise InputError("INVALID_ARGUMENT", f"context[{i}].id", f"duplicate passage id {passage.id!r}")
            seen.add(passage.id)
    if total > limits.max_context_chars:
        raise InputError(
            "RESOURCE_EXHAUSTED", "context", f"{total} characters in all exceeds the limit of {limits.max_context_chars}"
        )
    if len(case.samples) > limits.max_samples:
        raise InputError(
            "RESOURCE_EXHAUSTED", "samples", f"{len(case.samples)} samples exceeds the limit of {limits.max_samples}"
        )
    for i, sample in enumerate(case.samples):
        _too_long(f"samples[{i}]", sample, limits.max_sample_chars)
    if len(case.metadata) > limits.max_metadata_entries:
        raise InputError(
            "RESOURCE_EXHAUSTED",
            "metadata",
            f"{len(case.metadata)} entries exceeds the limit of {limits.max_metadata_entries}",
        )
    for key, value in case.metadata.items():
        _too_long("metadata key", key, limits.max_metadata_key_chars)
        _too_long(f"metadata[{key}]", value, limits.max_metadata_value_chars)
    for i, name in enumerate(requested):
        if name not in known:
            raise InputError("INVALID_ARGUMENT", f"invariants[{i}]", f"unknown invariant {name!r}")
        if name not in enabled:
            raise InputError("INVALID_ARGUMENT", f"invariants[{i}]", f"invariant {name!r} is not enabled on this server")
