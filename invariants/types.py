"""Domain types shared by every invariant, the server and the offline runner.

They are plain frozen dataclasses, not protobuf messages: the checks must not depend on the transport.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal


Sensitivity = Literal["", "public", "private"]
SENSITIVITIES: tuple[str, ...] = ("", "public", "private")


def parse_sensitivity(value: object) -> Sensitivity:
    """`public` / `private` / empty (unmarked) from JSON or config, also accepting the wire names
    (`SENSITIVITY_PRIVATE`); anything else is a ValueError naming the accepted values."""
    text = "" if value is None else str(value).strip().lower().removeprefix("sensitivity_")
    text = "" if text == "unspecified" else text
    if text not in SENSITIVITIES:
        raise ValueError(f"sensitivity must be 'public', 'private' or empty, got {str(value)[:40]!r}")
    return text  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved context passage. `id` may be empty; passages are then addressed by 1-based index.

    `sensitivity` says whose data the passage holds (see `pii_boundary`): `private` (a CRM record, a ticket) makes
    the names and places in it personal data, `public` (an encyclopedia) makes them not; empty leaves it to policy."""

    id: str
    text: str
    title: str = ""
    url: str = ""
    sensitivity: Sensitivity = ""


@dataclass(frozen=True, slots=True)
class Case:
    """One LLM response to check, with everything the invariants may look at."""

    response: str
    question: str = ""
    context: tuple[Passage, ...] = ()
    samples: tuple[str, ...] = ()
    request_id: str = ""
    app: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


class Outcome(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"
    # The part of the response the invariant checked holds, but it could not check all of it (its time budget ran
    # out, or a configured cap such as `max_sentences`): `Verdict.coverage` says which spans. Never a PASS, because
    # the caller's policy (`on_partial`) decides what an unchecked span is worth.
    PARTIAL = "partial"


CoverageReason = Literal["deadline", "limit"]
COVERAGE_REASONS: tuple[str, ...] = ("deadline", "limit")


@dataclass(frozen=True, slots=True)
class Coverage:
    """Which characters of the response an invariant checked and which it did not, when it did not check them all.

    `checked` and `unchecked` are sorted, disjoint, non-empty `(start, end)` char spans (end exclusive) that together
    cover `[0, length)` exactly — build it with `Coverage.of`, which guarantees that. `reason` says why something is
    unchecked: `deadline` (the check's time budget ran out) or `limit` (a configured cap, e.g. `max_sentences`).
    """

    length: int
    checked: tuple[tuple[int, int], ...]
    unchecked: tuple[tuple[int, int], ...]
    reason: CoverageReason

    @classmethod
    def of(cls, length: int, checked: Iterable[tuple[int, int]], reason: CoverageReason) -> Coverage:
        """From the spans that were checked (any order, may overlap or spill outside the response): clipped to
        `[0, length)`, merged, and the rest of the response listed as unchecked."""
        if reason not in COVERAGE_REASONS:
            raise ValueError(f"coverage reason must be one of {COVERAGE_REASONS}, got {reason!r}")
        merged: list[tuple[int, int]] = []
        for start, end in sorted((max(0, s), min(length, e)) for s, e in checked):
            if end <= start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        gaps, at = [], 0
        for start, end in merged:
            if start > at:
                gaps.append((at, start))
            at = end
        if at < length:
            gaps.append((at, length))
        return cls(length, tuple(merged), tuple(gaps), reason)

    @classmethod
    def prefix(cls, length: int, until: int, reason: CoverageReason) -> Coverage:
        """Checked from the start up to `until` (the invariants work front to back), unchecked after it."""
        return cls.of(length, [(0, until)], reason)

    @property
    def complete(self) -> bool:
        return not self.unchecked

    @property
    def checked_chars(self) -> int:
        return sum(e - s for s, e in self.checked)

    @property
    def unchecked_chars(self) -> int:
        return sum(e - s for s, e in self.unchecked)


@dataclass(frozen=True, slots=True)
class Finding:
    """Why a verdict is what it is: a span of the response plus the evidence a reviewer needs.

    `start`/`end` are character offsets into `Case.response` (end exclusive); both are -1 when the finding
    is about the response as a whole.
    """

    kind: str
    message: str
    start: int = -1
    end: int = -1
    passage_id: str = ""
    score: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of one invariant on one case.

    `score` is the confidence in [0, 1] that the invariant *holds*; the invariant passes iff
    `score >= threshold`. Every invariant follows this direction so that thresholds calibrate the same way.
    """

    invariant: str
    outcome: Outcome
    score: float
    threshold: float
    findings: tuple[Finding, ...] = ()
    latency_s: float = 0.0
    judge: str = ""
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # None: the verdict is about the whole response. Set when part of it went unchecked (outcome PARTIAL, a FAIL
    # found in the checked part, or a timeout: ERROR with nothing checked).
    coverage: Coverage | None = None

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL

    @property
    def unchecked(self) -> tuple[tuple[int, int], ...]:
        """The spans of the response this verdict says nothing about (empty when it covers all of it)."""
        return self.coverage.unchecked if self.coverage is not None else ()
