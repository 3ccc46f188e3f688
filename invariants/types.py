"""Domain types shared by every invariant, the server and the offline runner.

They are plain frozen dataclasses, not protobuf messages: the checks must not depend on the transport.
"""

from __future__ import annotations

import enum
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

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL
