"""What `check_generation` yields: the server's verdicts on a response while it is being generated (CheckGeneration).

In order: one `GenerationStarted` (what the server checks live), then `SentenceResult`s (one per sentence, in order,
as each one ends) and `LeakResult`s (PII on the text so far: new leak spans to hold back, and `checked_until`, the
offset before which the text has been scanned), then one `GenerationResult`: the final verdict, equal to what `check`
returns for the full text — or, when `cut`, the BLOCK that ended the stream early (stop generating).

Offsets are character offsets into the response as sent (Python `str` indices), as in `check`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from guardrail_client.results import CheckResult, Decision, Finding, InvariantResult, _result


@dataclass(frozen=True)
class GenerationStarted:
    request_id: str
    sentence_invariants: tuple[str, ...]  # run on each sentence as it ends
    live_pii: bool  # pii_boundary runs on the text so far (LeakResults follow)
    final_invariants: tuple[str, ...]
    raw: pb.GenerationVerdict | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SentenceResult:
    """One sentence's verdict: `start`/`end` into the response; `decision` is this sentence's, `running` the most
    severe so far; `latency_s` the server's time from the arrival of the sentence's last character."""

    request_id: str
    index: int
    start: int
    end: int
    results: tuple[InvariantResult, ...]
    decision: Decision
    running: Decision
    latency_s: float
    raw: pb.GenerationVerdict | None = field(default=None, repr=False, compare=False)

    def result(self, invariant: str) -> InvariantResult | None:
        return next((r for r in self.results if r.invariant == invariant), None)


@dataclass(frozen=True)
class LeakResult:
    """PII on the text so far: `findings` are new leaks (kind pii_leak), the spans to hold back; the text before
    `checked_until` has been scanned and every leak in it reported. Without findings it is progress only."""

    request_id: str
    findings: tuple[Finding, ...]
    checked_until: int
    decision: Decision
    running: Decision
    raw: pb.GenerationVerdict | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class GenerationResult:
    """The final verdict. Not `cut`: `result` is what `check` returns for the full text. `cut`: a sentence or leak
    verdict was BLOCK and the server ended the stream there; `result` holds the blocking verdicts."""

    request_id: str
    result: CheckResult
    cut: bool
    sentences: int
    raw: pb.GenerationVerdict | None = field(default=None, repr=False, compare=False)

    @property
    def decision(self) -> Decision:
        return self.result.decision

    @property
    def blocked(self) -> bool:
        return self.result.decision is Decision.BLOCK


GenerationEvent = GenerationStarted | SentenceResult | LeakResult | GenerationResult


def event_from_pb(reply: pb.GenerationVerdict) -> GenerationEvent:
    kind = reply.WhichOneof("verdict")
    running = Decision(reply.decision)
    if kind == "sentence":
        s = reply.sentence
        return SentenceResult(reply.request_id, s.index, s.start, s.end, tuple(_result(r) for r in s.results),
                              Decision(s.decision), running, s.latency.ToNanoseconds() / 1e9, reply)
    if kind == "leak":
        leak = reply.leak
        findings = tuple(Finding(f.start, f.end, f.kind, f.message, f.passage_id, f.score if f.has_score else None)
                         for f in leak.findings)
        return LeakResult(reply.request_id, findings, leak.checked_until, Decision(leak.decision), running, reply)
    if kind == "final":
        return GenerationResult(reply.request_id, CheckResult.from_pb(reply.final.response), reply.final.cut,
                                reply.final.sentences, reply)
    started = reply.started
    return GenerationStarted(reply.request_id, tuple(started.sentence_invariants), started.live_pii,
                             tuple(started.final_invariants), reply)


def generation_chunks(start: pb.CheckRequest, deltas: Iterable[str], samples: Iterable[str] = ()
                      ) -> Iterator[pb.GenerationChunk]:
    """The request stream: `start`, a delta per non-empty piece of text, then the close."""
    yield pb.GenerationChunk(start=start)
    for delta in deltas:
        if delta:
            yield pb.GenerationChunk(delta=delta)
    yield pb.GenerationChunk(close=pb.GenerationClose(samples=list(samples)))
