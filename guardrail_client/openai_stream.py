"""Guarding an OpenAI-compatible streaming completion: the model's tokens go to the guardrail as they arrive, and the
application gets the text back only once the guardrail has cleared it.

    from guardrail_client import GuardrailClient
    from guardrail_client.openai_stream import guard_stream, stream_chat_completion

    deltas = stream_chat_completion("http://llm:8000/v1", model="m", messages=[{"role": "user", "content": q}])
    with GuardrailClient("localhost:50051") as guard:
        for piece in guard_stream(guard, deltas, question=q, context=passages):
            show(piece.text)                      # safe to display: cleared, leaks withheld
            if piece.blocked:                     # a BLOCK: the model stream has been closed
                show_refusal()

`deltas` may be `stream_chat_completion(...)` (stdlib HTTP, server-sent events: no dependency), the `openai` SDK's
stream (`client.chat.completions.create(..., stream=True)`), raw SSE lines (`httpx`'s `iter_lines()`), parsed chunk
dicts, or plain strings.

What is held back (`hold`):
- `"pii"` (default): text is released as soon as the guardrail has scanned it for personal data (`checked_until` of
  its leak verdicts: a few words behind the model); a span flagged as a leak is never released — `placeholder`
  stands in its place. Sentence verdicts arrive alongside (`piece.event`) for the app to mark or retract.
- `"sentence"`: text is released a sentence at a time, once that sentence's verdict has arrived (and its PII is
  cleared): nothing unchecked is ever shown, at the cost of one sentence of delay.
A BLOCK (a sentence or a leak under a blocking policy) releases nothing more and closes the model's stream. At the
end the rest is released, less every leak the final verdict found.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from guardrail_client.generation import GenerationEvent, GenerationResult, GenerationStarted, LeakResult, SentenceResult
from guardrail_client.results import Decision

LEAK_KIND = "pii_leak"


# ------------------------------------------------------------------------------------------------- the model side


def sse_text_deltas(lines: Iterable[bytes | str]) -> Iterator[str]:
    """Text deltas of an OpenAI-compatible server-sent event stream (chat `delta.content` or completion `text`),
    up to `data: [DONE]`. Other fields (role, tool calls, usage) are skipped."""
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        text = _chunk_text(json.loads(data))
        if text:
            yield text


def _chunk_text(chunk: Any) -> str:
    """The text of one streamed chunk: a parsed dict or an SDK object (`chunk.choices[0].delta.content`)."""
    if isinstance(chunk, Mapping):
        choices = chunk.get("choices") or []
        if not choices:
            return ""
        choice = choices[0]
        delta = choice.get("delta") or {}
        return delta.get("content") or choice.get("text") or ""
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return ""
    delta = getattr(choices[0], "delta", None)
    return (getattr(delta, "content", None) if delta is not None else getattr(choices[0], "text", None)) or ""


def text_deltas(source: Iterable[Any]) -> Iterator[str]:
    """Text from whatever a streaming completion yields: strings, SSE lines (bytes, or str starting with `data:`),
    parsed chunk dicts, SDK chunk objects."""
    for item in source:
        if isinstance(item, bytes) or (isinstance(item, str) and item.startswith("data:")):
            yield from sse_text_deltas([item])
        elif isinstance(item, str):
            yield item
        else:
            text = _chunk_text(item)
            if text:
                yield text


def stream_chat_completion(base_url: str, *, model: str, messages: Sequence[Mapping[str, Any]],
                           api_key: str | None = None, timeout: float = 60.0, **params: Any) -> Iterator[str]:
    """POSTs `{base_url}/chat/completions` with `stream: true` (stdlib only) and yields the text deltas as they
    arrive. Closing the generator closes the connection: the model stops generating."""
    body = json.dumps({"model": model, "messages": list(messages), "stream": True, **params}).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", data=body, headers=headers,
                                     method="POST")
    response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the caller's own endpoint
    try:
        yield from sse_text_deltas(response)
    finally:
        response.close()


# ------------------------------------------------------------------------------------------------- the guarded side


@dataclass(frozen=True)
class GuardedPiece:
    """`text`: the next piece of the response that is safe to show (may be empty); `event`: the guardrail verdict that
    released it (or that arrived with it); `withheld`: the (start, end) leak spans replaced by the placeholder in
    `text`, as offsets into the response."""

    text: str
    event: GenerationEvent | None = None
    withheld: tuple[tuple[int, int], ...] = ()

    @property
    def blocked(self) -> bool:
        e = self.event
        return (isinstance(e, GenerationResult) and e.blocked) or (
            isinstance(e, (SentenceResult, LeakResult)) and e.decision is Decision.BLOCK)

    @property
    def final(self) -> GenerationResult | None:
        return self.event if isinstance(self.event, GenerationResult) else None


class _Source:
    """The model's deltas, recorded as they are read (in gRPC's sending thread), and stoppable from outside."""

    def __init__(self, source: Iterable[Any]) -> None:
        self._source = source
        self._parts: list[str] = []
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    def __iter__(self) -> Iterator[str]:
        deltas = text_deltas(self._source)
        try:
            for delta in deltas:
                if self.stopped.is_set():
                    return
                with self._lock:
                    self._parts.append(delta)
                yield delta
        finally:
            deltas.close()
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # the model's connection: stop generating

    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)


def guard_stream(guard: Any, source: Iterable[Any], *, hold: Literal["pii", "sentence"] = "pii",
                 placeholder: str = "[withheld]", **kwargs: Any) -> Iterator[GuardedPiece]:
    """Sends a streaming completion through `guard.check_generation` (a `GuardrailClient`) and yields the text that
    is safe to show, as it is cleared (see the module doc). kwargs: question, context, invariants, app, ... as for
    `check_generation`. The last piece carries the GenerationResult (`piece.final`)."""
    if hold not in ("pii", "sentence"):
        raise ValueError("hold must be 'pii' or 'sentence'")
    model = _Source(source)
    released = 0
    leaks: list[tuple[int, int]] = []
    live_pii = False
    pii_until = 0
    sentence_until = 0
    events = guard.check_generation(model, **kwargs)
    try:
        for event in events:
            text = model.text()
            if isinstance(event, GenerationStarted):
                live_pii = event.live_pii
                yield GuardedPiece("", event)
                continue
            if isinstance(event, LeakResult):
                leaks += [(f.start, f.end) for f in event.findings if f.kind == LEAK_KIND]
                pii_until = max(pii_until, event.checked_until)
            elif isinstance(event, SentenceResult):
                sentence_until = max(sentence_until, event.end)
            elif isinstance(event, GenerationResult):
                if event.blocked:
                    model.stopped.set()
                    yield GuardedPiece("", event)
                    return
                for r in event.result.results:
                    leaks += [(f.start, f.end) for f in r.findings if f.kind == LEAK_KIND and f.start >= 0]
                piece, spans = _release(text, released, len(text), leaks, placeholder)
                yield GuardedPiece(piece, event, spans)
                return
            if getattr(event, "decision", None) is Decision.BLOCK:
                model.stopped.set()
                yield GuardedPiece("", event)
                continue  # the server's cut (a GenerationResult) follows
            if hold == "sentence":
                until = min(sentence_until, pii_until) if live_pii else sentence_until
            else:
                until = pii_until if live_pii else sentence_until
            until = _not_inside(min(until, len(text)), leaks)
            piece, spans = _release(text, released, until, leaks, placeholder) if until > released else ("", ())
            released = max(released, until)
            yield GuardedPiece(piece, event, spans)
    finally:
        model.stopped.set()
        close = getattr(events, "close", None)
        if close is not None:
            close()


def _not_inside(until: int, leaks: list[tuple[int, int]]) -> int:
    """`until`, moved back to the start of a leak span it would cut through."""
    for start, end in leaks:
        if start < until < end:
            until = start
    return until


def _release(text: str, start: int, end: int, leaks: list[tuple[int, int]], placeholder: str
             ) -> tuple[str, tuple[tuple[int, int], ...]]:
    """text[start:end] with every leak span in it replaced by `placeholder`."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    merged: list[tuple[int, int]] = []
    for a, b in sorted(leaks):  # "Jane" then "Jane Doe": one span, one placeholder
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    at = start
    for a, b in merged:
        if b <= at or a >= end:
            continue
        a = max(a, at)
        out.append(text[at:a])
        out.append(placeholder)
        spans.append((a, min(b, end)))
        at = min(b, end)
    out.append(text[at:end])
    return "".join(out), tuple(spans)
