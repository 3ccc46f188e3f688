"""CheckGeneration: one response checked while it is being generated (docs/streaming.md).

The caller sends the question and context first, then the response as text deltas cut anywhere, then a close. What is
decided when:

- **each sentence, as soon as it ends**: the deltas go through `guardrail_invariants.streaming.SentenceStream` (the
  unary splitter with a hold-back rule: a sentence is final once the text after it proves its end), and each final
  sentence — with the citation markers that follow it — is checked at once by `streaming.sentence_invariants`
  (entailment, reference_integrity) in a check worker; its verdict carries the sentence's span, each invariant's
  outcome, score and findings (offsets into the whole response) and the running decision. One sentence at a time
  per stream, in order; a sentence's verdict is sent only once the PII scan has covered it, so a leak in a sentence
  is always reported before that sentence's verdict.
- **a PII leak, as soon as the entity is complete**: pii_boundary runs on the text so far (from the sentence the scan
  last stopped in, up to the last whitespace: an entity followed by whitespace is complete), coalesced — one scan
  in flight per stream, the next one takes all the text that arrived meanwhile. Each leak verdict carries the new
  leak spans and `checked_until`: text before it has been scanned and every leak in it reported; the words after it
  (a trailing run of capitalised words, numbers, e-mail-like tokens — the start of an entity that may go on) are not
  cleared yet. A client that shows only cleared text never shows a leak.
- **BLOCK at once**: a sentence or leak verdict whose decision is BLOCK is sent, then the stream is cut: a final
  verdict with `cut` (the blocking verdicts) follows and the call ends; the client stops the generation.
- **at the close**: the final verdict is `CheckEngine.check` on the full text — the very call unary Check makes, so it
  is what Check returns for the same request (self_consistency, the whole-response rules of every invariant, the
  decision, metrics, log line and review sample all come from there, once per response). It starts once the last
  sentence's check is done (beside that sentence's PII scan) and is sent after every sentence verdict. It is fast because the check workers
  keep a cache of model outputs (`models.cache_size`): the sentences it scores were scored live, on the worker the
  stream prefers (`prefer`).
- **speculation**: when the text ends like a sentence ("... 330 m tall."), that sentence's check starts before the
  next piece proves the end (workers idle, earlier sentences done); the verdict uses it only for the very same span
  and text, so a wrong guess ("3." then "5") costs a check, never a wrong verdict.

Bounded everywhere: the text is capped by `limits.max_response_chars`; at most one sentence check and one PII scan
per stream run or wait for a worker; verdicts waiting for the reader are capped by `streaming.max_pending_verdicts`,
past which the stream stops checking until the reader catches up (a reader that never reads holds one stream's
text, nothing more, until its deadline). A stream sends nothing for `streaming.idle_timeout_s`: it ends with
DEADLINE_EXCEEDED; `streaming.max_duration_s` (or the call's deadline, if sooner) bounds its whole life.

Admission: a stream is admitted when it opens, unless `streaming.max_streams` are open or the open streams' checks
already wait longer than `streaming.max_check_wait_s` for a worker (past capacity a new stream is shed — `Shed`:
RESOURCE_EXHAUSTED — instead of every open stream falling behind); its checks then wait for a worker as kind
`generation` (after every unary and CheckStream waiter, never shed before the stream's deadline; see
`guardrail_server.admission`).
"""

from __future__ import annotations

import asyncio
import bisect
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from guardrail_server import metrics
from guardrail_server.admission import Shed
from guardrail_server.engine import CheckResult
from guardrail_server.logs import get_logger
from guardrail_server.policy import Decision, decide
from guardrail_server.validation import InputError
from guardrail_invariants.streaming import SentenceStream
from guardrail_invariants.text import Span
from guardrail_invariants.types import Case, Finding, Outcome, Verdict

if TYPE_CHECKING:
    from guardrail_server.engine import CheckEngine

log = get_logger("guardrail.generation")

PII = "pii_boundary"
LEAK_KIND = "pii_leak"
PII_WINDOW_CHARS = 2000  # a scan starts at most this far before the text's end (a line with no sentence end)
THREAD_REGION_CHARS = 1500  # a delta whose open region is longer is split in a thread, off the event loop
_SEVERITY = {Decision.ALLOW: 0, Decision.FLAG: 1, Decision.BLOCK: 2}
_ENTITY_START = re.compile(r"[\dA-Z@+#(]|^\S*[\d@]")  # a word that may begin (or be inside) a name, number or e-mail


def worse(a: Decision, b: Decision) -> Decision:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


# ------------------------------------------------------------------------------------------------------ events in


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    samples: tuple[str, ...] = ()


Chunk = Delta | Close


class BadChunk(Exception):
    """A message out of place (a second start): INVALID_ARGUMENT."""


# ------------------------------------------------------------------------------------------------------ events out


@dataclass(frozen=True, slots=True)
class Started:
    request_id: str
    sentence_invariants: tuple[str, ...]
    live_pii: bool
    final_invariants: tuple[str, ...]
    running: Decision = Decision.ALLOW


@dataclass(frozen=True, slots=True)
class SentenceChecked:
    request_id: str
    index: int
    start: int
    end: int
    verdicts: tuple[Verdict, ...]
    decision: Decision  # this sentence alone
    running: Decision  # the most severe decision so far
    latency_s: float  # from the arrival of the sentence's last character to the verdict handed to the transport
    ended_at: float = 0.0  # perf_counter() of that arrival


@dataclass(frozen=True, slots=True)
class LeakFound:
    request_id: str
    findings: tuple[Finding, ...]  # new pii_leak findings: the spans to hold back
    checked_until: int
    decision: Decision
    running: Decision
    latency_s: float  # from the arrival of the last new entity's last character (0 without findings)
    ended_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Finished:
    request_id: str
    result: CheckResult
    cut: bool  # cut by a BLOCK before the close: `result` holds the blocking verdicts, not a unary Check
    sentences: int
    running: Decision


Event = Started | SentenceChecked | LeakFound | Finished


class StreamEnded(Exception):
    """The stream ran out of time: `reason` is idle_timeout or deadline (DEADLINE_EXCEEDED)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------------------------------ service


class GenerationService:
    """Opens CheckGeneration streams on one engine; counts the open ones against `streaming.max_streams`."""

    def __init__(self, engine: CheckEngine) -> None:
        self.engine = engine
        self.open: set[GenerationStream] = set()

    def start(self, case: Case, requested: Sequence[str], *, deadline_s: float | None) -> GenerationStream:
        """Validates the first message (every limit of Check; the response may still be empty) and admits the
        stream, or raises InputError / Shed."""
        self.engine.validate(case, requested, response_required=False)
        cfg = self.engine.config.streaming
        if self.engine.admission.closed:
            reason, message = "shutting_down", "server is shutting down; retry on another instance"
        elif len(self.open) >= cfg.max_streams:
            reason, message = "streams_full", (f"server busy: {cfg.max_streams} CheckGeneration streams open "
                                                "(streaming.max_streams); retry with backoff")
        elif (behind := self.engine.admission.oldest_wait("generation")) > cfg.max_check_wait_s:
            reason, message = "behind", (f"server busy: the open streams' checks wait {behind:.1f}s for a worker "
                                         "(streaming.max_check_wait_s); retry with backoff")
        else:
            stream = GenerationStream(self, case, requested, deadline_s)
            self.open.add(stream)
            metrics.GENERATION_STREAMS_OPEN.set(len(self.open))
            return stream
        metrics.SHED.labels("generation", reason).inc()
        metrics.GENERATION_STREAMS.labels("shed").inc()
        log.warning("shed", kind="generation", reason=reason, request_id=case.request_id)
        raise Shed(reason, message)

    def _closed(self, stream: GenerationStream) -> None:
        self.open.discard(stream)
        metrics.GENERATION_STREAMS_OPEN.set(len(self.open))


@dataclass(slots=True)
class _State:
    text: str = ""
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (text length after a delta, its arrival)
    sentences: list[Span] = field(default_factory=list)  # final sentences, in order
    ends: list[int] = field(default_factory=list)  # where each sentence's segment (its trailing markers) ends
    checked: int = 0  # sentences checked
    closed: bool = False
    samples: tuple[str, ...] = ()
    running: Decision = Decision.ALLOW
    leaks: dict[tuple[int, int], Finding] = field(default_factory=dict)
    checked_until: int = 0  # PII: text before it scanned and its leaks reported
    scanned_end: int = 0


class GenerationStream:
    """One CheckGeneration call: feed it the chunks after the first message, iterate the events it produces."""

    def __init__(self, service: GenerationService, case: Case, requested: Sequence[str],
                 deadline_s: float | None) -> None:
        engine = service.engine
        cfg = engine.config.streaming
        self.service = service
        self.engine = engine
        self.started = time.perf_counter()
        limit = cfg.max_duration_s if deadline_s is None else min(deadline_s, cfg.max_duration_s)
        self.deadline = self.started + limit
        self.requested = list(dict.fromkeys(requested))
        names = self.requested or list(engine.invariants)
        self.case = case if case.request_id else replace(case, request_id=uuid.uuid4().hex)
        # the worker this stream's sentences and final verdict prefer (its model cache), PII scans the next one
        self.affinity = zlib.crc32(self.case.request_id.encode())
        self.sentence_names = [n for n in cfg.sentence_invariants if n in names]
        self.live_pii = cfg.live_pii and PII in names
        self.final_names = names
        self.splitter = SentenceStream(case.context)
        self.s = _State(text=case.response)
        if case.response:
            self.s.arrivals.append((len(case.response), self.started))
        self._out: asyncio.Queue[Event] = asyncio.Queue(maxsize=cfg.max_pending_verdicts)
        self._wake = asyncio.Event()
        self._sentence_wake = asyncio.Event()
        self._pii_wake = asyncio.Event()
        self._error: BaseException | None = None
        self._finished = False
        self._pii_done = not self.live_pii
        self._spec: tuple[tuple[int, int, str], asyncio.Task[list[Verdict]]] | None = None
        self.speculated = 0  # sentence checks started before their end was proven
        self._final: asyncio.Future[CheckResult] | None = None
        self.leak_reports = 0
        self.pii_scans = 0

    @property
    def request_id(self) -> str:
        return self.case.request_id

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    # -------------------------------------------------------------------------------------------------- driving

    async def events(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Event]:
        """The stream's events, in order: Started, then sentence and leak verdicts as they are decided, then Finished.
        Raises StreamEnded (idle, deadline), InputError (a limit), BadChunk, Shed."""
        end = "error"
        tasks: list[asyncio.Task[None]] = []
        try:
            yield Started(self.request_id, tuple(self.sentence_names), self.live_pii, tuple(self.final_names))
            if self.s.text:
                self._feed_now(self.splitter.feed(self.s.text))
            tasks = [asyncio.create_task(self._guard(self._read(chunks))),
                     asyncio.create_task(self._guard(self._check_sentences())),
                     asyncio.create_task(self._guard(self._deadline()))]
            if self.live_pii:
                tasks.append(asyncio.create_task(self._guard(self._pii_then_done())))
            while True:
                if self._error is not None:
                    raise self._error
                if not self._out.empty():
                    event = self._out.get_nowait()
                    self._wake.set()  # room in the queue: a producer waiting to put goes on
                    if isinstance(event, SentenceChecked):
                        event = replace(event, latency_s=time.perf_counter() - event.ended_at)
                        metrics.SENTENCE_VERDICT_LATENCY.observe(event.latency_s)
                    elif isinstance(event, LeakFound) and event.findings:
                        event = replace(event, latency_s=time.perf_counter() - event.ended_at)
                        metrics.LEAK_VERDICT_LATENCY.observe(event.latency_s)
                    yield event
                    if isinstance(event, Finished):
                        end = "cut" if event.cut else "closed"
                        return
                    continue
                self._wake.clear()
                await self._wake.wait()
        except StreamEnded as exc:
            end = exc.reason
            raise
        except (InputError, BadChunk):
            end = "invalid"
            raise
        except Shed as exc:
            end = "shutdown" if exc.reason == "shutting_down" else "deadline"
            raise
        except (asyncio.CancelledError, GeneratorExit):
            end = "cancelled"
            raise
        finally:
            for task in tasks:
                task.cancel()
            if self._spec is not None:
                self._spec[1].cancel()
            if self._final is not None:
                self._final.cancel()
            self.service._closed(self)
            metrics.GENERATION_STREAMS.labels(end).inc()
            log.info("generation", request_id=self.request_id, app=self.case.app, end=end,
                     sentences=len(self.s.sentences), checked=self.s.checked, leaks=len(self.s.leaks),
                     pii_scans=self.pii_scans, speculated=self.speculated,
                     response_chars=len(self.s.text), decision=self.s.running.value,
                     duration_ms=round((time.perf_counter() - self.started) * 1000, 2))

    async def _guard(self, work: AsyncIterator[None] | asyncio.Future[None] | object) -> None:
        try:
            await work  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # delivered to the reader of `events`, whatever the queue holds
            if self._error is None:
                self._error = exc
            self._wake.set()

    async def _emit(self, event: Event) -> None:
        """Queues an event for the reader; waits while `max_pending_verdicts` are unread (back-pressure)."""
        while self._out.full():
            self._wake.clear()
            await self._wake.wait()
        self._out.put_nowait(event)
        self._wake.set()

    async def _deadline(self) -> None:
        await asyncio.sleep(self.remaining())
        raise StreamEnded("deadline", f"stream exceeded its {self.deadline - self.started:.0f}s limit "
                                      "(streaming.max_duration_s or the call's deadline)")

    # -------------------------------------------------------------------------------------------------- reading

    async def _read(self, chunks: AsyncIterator[Chunk]) -> None:
        idle = self.engine.config.streaming.idle_timeout_s
        limit = self.engine.config.limits.max_response_chars
        iterator = aiter(chunks)
        while True:
            try:
                chunk = await asyncio.wait_for(anext(iterator), timeout=min(idle, self.remaining() + 0.001))
            except StopAsyncIteration:
                chunk = Close()  # a half-close is a close
            except TimeoutError:
                if self.remaining() <= 0:
                    raise StreamEnded("deadline", "stream exceeded its time limit") from None
                raise StreamEnded("idle_timeout", f"no chunk for {idle:.0f}s (streaming.idle_timeout_s)") from None
            if isinstance(chunk, Close):
                self.s.samples = chunk.samples
                self._feed_now(self.splitter.close())
                self.s.closed = True
                self._sentence_wake.set()
                self._pii_wake.set()
                return
            if not chunk.text:
                continue
            if len(self.s.text) + len(chunk.text) > limit:
                raise InputError("RESOURCE_EXHAUSTED", "response",
                                 f"{len(self.s.text) + len(chunk.text)} characters exceeds the limit of {limit}")
            self.s.text += chunk.text
            self.s.arrivals.append((len(self.s.text), time.perf_counter()))
            if len(self.s.text) - self.splitter.pending_start() > THREAD_REGION_CHARS:
                final = await asyncio.to_thread(self.splitter.feed, chunk.text)
            else:
                final = self.splitter.feed(chunk.text)
            self._feed_now(final)
            self._speculate()
            if self.live_pii and any(ch.isspace() for ch in chunk.text):
                self._pii_wake.set()

    def _speculate(self) -> None:
        """Starts checking the sentence the text seems to have just ended ("... tall.") before the next piece proves
        it: most ends are real, so its verdict is ready about when the proof arrives. Only with every sentence
        before it checked and no call waiting for a worker (a wrong guess costs a check, never a verdict: the
        sentence worker uses the result only for the very same span and text)."""
        s = self.s
        if not self.sentence_names or s.checked < len(s.sentences) or self._finished:
            return
        if self._spec is not None and not self._spec[1].done():
            return
        if self.engine.admission.queued():
            return
        span = self.splitter.tentative()
        if span is None:
            return
        key = (span.start, span.end, s.text[span.start : span.end])
        if self._spec is not None and self._spec[0] == key:
            return
        part = replace(self.case, response=key[2], samples=())
        task = asyncio.ensure_future(self.engine.check_part(part, self.sentence_names, deadline_s=self.remaining(),
                                                            prefer=self.affinity))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failed guess is not an error
        self._spec = (key, task)
        self.speculated += 1

    def _feed_now(self, final: list[Span]) -> None:
        if not final:
            return
        s = self.s
        for i, span in enumerate(final):
            s.sentences.append(span)
            s.ends.append(final[i + 1].start if i + 1 < len(final) else self.splitter.following)
        self._sentence_wake.set()

    def _arrival(self, offset: int) -> float:
        """When the character at `offset` arrived."""
        arrivals = self.s.arrivals
        i = bisect.bisect_right(arrivals, (offset, float("inf")))
        return arrivals[min(i, len(arrivals) - 1)][1] if arrivals else self.started

    # -------------------------------------------------------------------------------------------------- sentences

    async def _check_sentences(self) -> None:
        s = self.s
        policies = self.engine.config.invariants
        while True:
            while s.checked >= len(s.sentences):
                if s.closed:
                    await self._finish()
                    return
                self._sentence_wake.clear()
                await self._sentence_wake.wait()
            index = s.checked
            span, seg_end = s.sentences[index], s.ends[index]
            verdicts: list[Verdict] = []
            if self.sentence_names:
                segment = s.text[span.start : seg_end].rstrip()
                spec, self._spec = self._spec, None
                if spec is not None and spec[0] == (span.start, span.end, segment) and not spec[1].cancelled():
                    found = await spec[1]  # started before the proof came (see _speculate)
                else:
                    if spec is not None:
                        spec[1].cancel()
                    part = replace(self.case, response=segment, samples=())
                    found = await self.engine.check_part(part, self.sentence_names, deadline_s=self.remaining(),
                                                         prefer=self.affinity)
                verdicts = [_shifted(v, span.start) for v in found]
            if s.closed and index == len(s.sentences) - 1:
                self._start_final()  # its model outputs are cached now: the final verdict starts beside the PII scan
            while self.live_pii and s.scanned_end < span.end and not self._pii_done and not self._finished:
                # a sentence's verdict follows the PII scan that covered it: its leaks are always reported first
                self._sentence_wake.clear()
                await self._sentence_wake.wait()
            if self._finished:
                return
            decision = decide(verdicts, policies)
            s.running = worse(s.running, decision)
            s.checked += 1
            await self._emit(SentenceChecked(self.request_id, index, span.start, span.end, tuple(verdicts),
                                             decision, s.running, 0.0, self._arrival(span.end - 1)))
            if decision is Decision.BLOCK:
                await self._cut([v for v in verdicts if decide([v], policies) is Decision.BLOCK])
                return

    # -------------------------------------------------------------------------------------------------- PII

    async def _scan_pii(self) -> None:
        s = self.s
        policy = self.engine.config.invariants[PII]
        while not self._finished:
            self._pii_wake.clear()
            closed = s.closed  # at the close every entity is complete: the last scan reads to the end
            scan_end = len(s.text) if closed else _scan_limit(s.text)
            if scan_end <= s.scanned_end:
                if closed:
                    break
                await self._pii_wake.wait()
                continue
            if s.checked_until >= s.scanned_end and not _may_hold_entity(s.text[s.scanned_end:scan_end]):
                # plain lower-case words after cleared text: no entity can have ended in them; nothing to scan
                s.scanned_end = s.checked_until = scan_end
                self._sentence_wake.set()
                await self._emit(LeakFound(self.request_id, (), scan_end, Decision.ALLOW, s.running, 0.0))
                continue
            anchor = self._pii_anchor(scan_end)
            part = replace(self.case, response=s.text[anchor:scan_end], samples=())
            self.pii_scans += 1
            (verdict,) = await self.engine.check_part(part, [PII], deadline_s=self.remaining(),
                                                      prefer=self.affinity + 1)
            if self._finished:
                return
            s.scanned_end = scan_end
            self._sentence_wake.set()
            verdict = _shifted(verdict, anchor)
            new = [f for f in verdict.findings if f.kind == LEAK_KIND and (f.start, f.end) not in s.leaks]
            for f in new:
                s.leaks[(f.start, f.end)] = f
            until = s.checked_until
            if verdict.outcome not in (Outcome.ERROR, Outcome.SKIPPED):
                checked_to = scan_end
                unchecked = getattr(verdict, "coverage", None) and verdict.coverage.unchecked  # a partial scan
                if unchecked:
                    checked_to = min(scan_end, unchecked[0][0])
                until = max(until, checked_to if closed else _hold_back(s.text, anchor, checked_to))
            if not new and until == s.checked_until:
                continue
            s.checked_until = until
            decision = Decision(policy.on_fail) if new else Decision.ALLOW
            s.running = worse(s.running, decision)
            ended = self._arrival(max(f.end for f in new) - 1) if new else 0.0
            self.leak_reports += bool(new)
            await self._emit(LeakFound(self.request_id, tuple(new), until, decision, s.running, 0.0, ended))
            if decision is Decision.BLOCK:
                blocking = replace(verdict, findings=tuple(new), outcome=Outcome.FAIL)
                await self._cut([blocking])
                return

    async def _pii_then_done(self) -> None:
        try:
            await self._scan_pii()
        finally:
            self._pii_done = True
            self._sentence_wake.set()

    def _pii_anchor(self, scan_end: int) -> int:
        """Where a scan starts: the sentence holding the first character not cleared yet (entities do not cross
        sentences), at most PII_WINDOW_CHARS back."""
        s = self.s
        at = s.checked_until
        starts = [sp.start for sp in s.sentences]
        k = bisect.bisect_right(starts, at) - 1
        anchor = 0
        if k >= 0:
            sentence = s.sentences[k]
            anchor = sentence.start if at < sentence.end else sentence.end
        floor = scan_end - PII_WINDOW_CHARS
        if anchor < floor:
            space = s.text.find(" ", floor, scan_end)
            anchor = space + 1 if space >= 0 else floor
        return anchor

    # -------------------------------------------------------------------------------------------------- the end

    async def _cut(self, blocking: list[Verdict]) -> None:
        """A BLOCK: the stream ends here, with a final verdict made of the verdicts that blocked."""
        if self._finished:
            return
        self._finished = True
        for v in blocking:
            metrics.GENERATION_CUT.labels(v.invariant).inc()
        metrics.DECISIONS.labels(Decision.BLOCK.value,
                                 metrics.app_label(self.case.app, self.engine.config.metrics.apps)).inc()
        case = replace(self.case, response=self.s.text)
        if self.engine.sampler is not None:
            self.engine.sampler.offer(case, blocking, Decision.BLOCK.value)
        result = CheckResult(self.request_id, Decision.BLOCK, blocking, time.perf_counter() - self.started)
        log.warning("generation_cut", request_id=self.request_id, app=self.case.app,
                    invariants=sorted({v.invariant for v in blocking}), response_chars=len(self.s.text))
        await self._emit(Finished(self.request_id, result, True, len(self.s.sentences), Decision.BLOCK))

    async def _final_check(self) -> CheckResult:
        """The final verdict: unary Check's on the full text (the very call)."""
        case = replace(self.case, response=self.s.text, samples=(*self.case.samples, *self.s.samples))
        return await self.engine.check(case, self.requested, deadline_s=self.remaining(), kind="generation",
                                       prefer=self.affinity)

    def _start_final(self) -> None:
        if self._final is None:
            self._final = asyncio.ensure_future(self._final_check())
            self._final.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _finish(self) -> None:
        """The close, every sentence checked: the final verdict (started with the last sentence's verdict) goes out
        last."""
        if self._finished:
            return
        self._start_final()
        assert self._final is not None
        result = await self._final
        self._finished = True
        self.s.running = worse(self.s.running, result.decision)
        await self._emit(Finished(self.request_id, result, False, len(self.s.sentences), result.decision))


def _scan_end(text: str) -> int:
    """Just after the last whitespace: everything before it is made of complete words."""
    i = len(text)
    while i > 0 and not text[i - 1].isspace():
        i -= 1
    return i


def _scan_limit(text: str) -> int:
    """How far a scan reads now: the complete words, less a trailing run of words that may be an entity still going
    on ("filed by Marta " waits for the word after "Marta"; "in 1889. " does not wait: an end mark closes a run).
    One scan per entity, when it is complete, instead of one per word of it."""
    end = _scan_end(text)
    base = max(0, end - 400)
    cut = end
    for m in reversed(list(re.finditer(r"\S+\s*", text[base:end]))):
        word = m.group(0).rstrip()
        if not _ENTITY_START.match(word) or word.rstrip("\"')]\u201d\u2019*_")[-1:] in (".", "!", "?", ";", ":"):
            break
        cut = base + m.start()
    return cut


def _may_hold_entity(text: str) -> bool:
    return any(_ENTITY_START.match(word) for word in text.split())


def _hold_back(text: str, anchor: int, end: int) -> int:
    """`end`, less the trailing words that may be the start of an entity that goes on (a capitalised word, a number,
    something with @ or +): "Call 555 123 " clears only "Call ", "I met John " only "I met "."""
    cut = end
    for m in reversed(list(re.finditer(r"\S+\s*", text[anchor:end]))):
        if not _ENTITY_START.match(m.group(0)):
            break
        cut = anchor + m.start()
    return cut


def _shifted(verdict: Verdict, offset: int) -> Verdict:
    """A verdict on a part of the response, its spans moved into the whole response."""
    if not offset:
        return verdict
    findings = tuple(f if f.start < 0 else replace(f, start=f.start + offset, end=f.end + offset)
                     for f in verdict.findings)
    coverage = getattr(verdict, "coverage", None)  # the checked/unchecked spans of a partial verdict
    if coverage is None:
        return replace(verdict, findings=findings)
    coverage = type(coverage)(coverage.length + offset, tuple((a + offset, b + offset) for a, b in coverage.checked),
                              tuple((a + offset, b + offset) for a, b in coverage.unchecked), coverage.reason)
    return replace(verdict, findings=findings, coverage=coverage)
