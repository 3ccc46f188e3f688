"""Seeded, bounded fuzzing of a real `guardrail serve` (issue 13): does any message crash, stall or leak the server?

    python -m bench.fuzz [--messages 100000] [--seed 13] [--max-minutes 40] [--set key=value ...]

The server runs in its own process with the default config (all four real invariants, process check workers; review
store in a temp dir). Messages come from seeded generators by category: raw bytes (random, truncated and bit-flipped
valid protos, invalid UTF-8 in every string field), unicode (all planes, combining marks, RTL, zero-width,
non-ASCII digits in citation markers), pathological punctuation runs (31 KB of backticks, `[`, emoji, `【`, `:`,
`a-`, `[1]`, ...), huge fields (each field just under and just over its limit, ~4 MiB messages), hostile passage
ids/titles/urls/metadata and invariant names, deadline extremes (0, 1 ms, none), and CheckStream calls cancelled
mid-stream or never read. Message content depends only on (seed, category, index); lane timing does not change it.

Three lanes run at once: a fast lane (most categories; valid ones ask for `reference_integrity` only, so 100k
messages fit in minutes), a heavy lane (valid hostile messages that run all four real checks, one at a time by
default) and a stream lane. Measured: messages by category and status, how many reached the checks, findings whose
span lies outside the response, server crashes, event-loop stalls > 100 ms (`guardrail_event_loop_lag_seconds`
before vs after) and client-side health latency (a prober in its own process, every 0.5 s), worker restarts
(`check_worker_replaced` log lines), fail-opens (`guardrail_fail_open_total`), RSS before/after, and the SIGTERM exit
time at the end (a few heavy calls and an unread stream still in flight) against `server.grace_period_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

from bench.harness import (
    HealthProber,
    ProbeReport,
    Rss,
    Samples,
    ServerProcess,
    StopReport,
    delta,
    loop_lag_max_bucket,
    loop_stalls_over,
    machine_line,
    pct,
    table,
)
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb

CHECK = "/guardrail.v1.GuardrailService/Check"
STREAM = "/guardrail.v1.GuardrailService/CheckStream"
CHEAP = ("reference_integrity",)  # what valid fast-lane messages ask for: the citation parser, no model
LIMIT = 32_000  # limits.max_response_chars, max_passage_chars, max_sample_chars (defaults)
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 2**20), ("grpc.max_send_message_length", 64 * 2**20)]
STATUS_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}

Lane = Literal["fast", "heavy"]


@dataclass(frozen=True, slots=True)
class Message:
    """One unary call: the bytes on the wire, the call's deadline (None = no deadline) and its lane."""

    category: str
    payload: bytes
    timeout: float | None = 30.0
    lane: Lane = "fast"


@dataclass(frozen=True, slots=True)
class StreamScenario:
    """One CheckStream call. mode: read_all | cancel_after (cancel after `cut` replies) | cancel_mid_send (cancel
    after `cut` writes, reading nothing) | never_read (write until flow control blocks or all sent, hold, cancel)."""

    category: str
    payloads: tuple[bytes, ...]
    mode: Literal["read_all", "cancel_after", "cancel_mid_send", "never_read"]
    cut: int
    timeout: float | None = 60.0


# ------------------------------------------------------------------------------------------------ building blocks

BASES: list[dict[str, Any]] = [
    {"question": "How tall is the Eiffel Tower and when did it open?",
     "context": [{"id": "1", "text": "The Eiffel Tower is 330 metres tall. It opened to the public in 1889."},
                 {"id": "doc-2", "title": "History of the tower", "url": "https://example.org/eiffel?utm_source=x",
                  "text": "Construction began in 1887 and finished in March 1889."}],
     "response": "The Eiffel Tower is 330 m tall [1]. It opened in 1887 [doc-2]. See [the history]"
                 "(https://example.org/eiffel) and [3].",
     "samples": ["The tower is about 330 metres high and opened in 1889.", "It is 300 m tall."]},
    {"question": "Who is the account manager?",
     "context": [{"id": "crm-7", "text": "Account manager: Jane Roe, jane.roe@corp.internal, +1 212 555 0187.",
                  "sensitivity": 2},
                 {"id": "kb-1", "text": "Managers answer within one business day.", "sensitivity": 1}],
     "response": "Your manager is Jane Roe (jane.roe@corp.internal) [crm-7]; answers come within a day [kb-1].",
     "samples": ["Jane Roe manages the account."]},
    {"question": "Summarise the quarter.",
     "context": [{"id": f"p{i}", "text": f"Quarter figure {i}: revenue grew {i * 3}% and costs fell {i}%."}
                 for i in range(1, 6)],
     "response": "Revenue grew 3% [1] and 6% [p2]; costs fell [1-3]【4†source】[^5]. Sources:\n[1]: "
                 "https://a.example/q\n[^5]: p5",
     "samples": []},
]
PUNCT_RUNS: dict[str, str] = {
    "backticks": "`" * 31_000, "brackets": "[" * 30_000, "emoji": "\U0001F600" * 31_000,
    "lenticular": "\u3010" * 31_000, "colons": ":" * 31_000, "dashed": "a-" * 15_500, "citations": "[1]" * 10_000,
    "closers": "]" * 31_000, "parens": "(" * 31_000, "links": "[a](b)" * 5_000, "dots": "." * 31_000,
    "bangs": "!?" * 15_500, "abbrev": "Mr. " * 7_700, "stars": "*_~" * 10_000, "backslash": "\\" * 31_000,
    "oai": "\u3010" + "1\u2020source\u3011" * 3_400, "footnotes": "[^1]" * 7_700, "urls": "http://a.b/" * 2_800,
    "emails": "a@b.corp " * 3_400, "phones": "+1 (212) 555-0187 " * 1_700, "cards": "4111 1111 1111 1111 " * 1_500,
    "digits": "[" + "9" * 30_000 + "]", "source9": "[source: " + "9" * 30_000 + "]",
    "fn9": "[^" + "9" * 30_000 + "]", "zwsp": "\u200b" * 31_000, "combining": "a" + "\u0301" * 30_999,
    "rtl": "\u202e\u05d0" * 15_500, "dotted_i": "\u0130" * 31_000, "newlines": "x\n" * 15_500,
}
WIDE_UNICODE = [
    "\u0000", "\u0007", "\u001b[31m", "\u0085", "\u00a0", "\u00ad", "\u034f", "\u061c", "\u115f", "\u180e",
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2028", "\u2029", "\u202a", "\u202b", "\u202d", "\u202e",
    "\u2060", "\u2066", "\u2067", "\u2069", "\ufeff", "\ufff9", "\ufffd", "\ufffe", "\uffff", "\U000e0001",
    "\U000e0041", "\U000f0000", "\U0010ffff", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1fa\U0001f1f8",
    "\U0001f44d\U0001f3fd", "\u2764\ufe0f", "\u0130", "\u00df", "\ufb03", "\u1e9e", "\u03a3", "\u0345", "\u2126",
    "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627", "\u0e01\u0e34\u0e19", "\u4e2d\u6587", "\ud55c",
    "\u0928\u092e\u0938\u094d\u0924\u0947", "\U00020000", "\U0002a6d6", "\U0001d7d3", "\u2460", "\u00b2", "\u2075",
    "\u0661\u0662", "\uff11", "\u3010\u00b2\u2020source\u3011", "[source: \u00b2]", "[^\u00b2]", "[\u0661]",
    "[source: \u2460]", "[\uff11]", "\uff3b1\uff3d", "[doc-\u0662]", "[\U0001d7d3]", "[1\u200b]", "[\u200b1]",
]
COMBINING = [chr(c) for c in (*range(0x300, 0x370), *range(0x1AB0, 0x1AC0), *range(0x20D0, 0x20F1),
                              *range(0xFE20, 0xFE30))]
BAD_UTF8 = [b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
            b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80", b"\xbf\xbf", b"ok\xc3"]
HOSTILE_STRINGS = [
    "", " ", "0", "-1", "1", "01", "99999999999999999999", "1e309", "NaN", "null", "None", "true", "[1]", "[^1]",
    "\u3010" + "1\u2020s\u3011", "../../etc/passwd", "C:\\Windows\\system32", "'; DROP TABLE review_samples; --",
    "%s%s%s%n", "{0}{1}{__class__}", "${jndi:ldap://x/a}", "<script>alert(1)</script>", "\r\n{\"event\": \"forged\"}",
    "\u0000", "\u202e", "\u200b", "doc-1", "DOC-1", "doc 1", "doc_1", "a" + "_" * 254 + "x", "a_" * 127 + "1",
    "-" * 255 + "x", "javascript:alert(1)", "file:///etc/passwd", "http://[::1]:0/", "https://xn--80ak6aa92e.com/",
    "http://a.b/" + "%" * 100, "https://a.b/?" + "&".join(f"utm_{i}=1" for i in range(100)), "http://" + "a." * 120,
    "\U0001F600" * 60, "\u05d0\u05d1\u05d2 [1] \u05d3", "*" * 256,
]


def _ld(field_no: int, data: bytes) -> bytes:
    """A length-delimited protobuf field, hand-encoded (so it can carry bytes no protobuf library would write)."""
    return _varint((field_no << 3) | 2) + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def request(response: str, *, question: str = "", context: Sequence[Mapping[str, Any]] = (),
            samples: Sequence[str] = (), invariants: Sequence[str] = (), request_id: str = "", app: str = "",
            metadata: Mapping[str, str] | None = None) -> bytes:
    """A serialized CheckRequest with `invariants` first on the wire: a truncated or bit-flipped copy then mostly
    keeps asking for what it asked for (a cheap check), or names an unknown invariant."""
    head = pb.CheckRequest(invariants=list(invariants)).SerializeToString()
    body = pb.CheckRequest(request_id=request_id, app=app, question=question, response=response,
                           samples=list(samples), metadata=dict(metadata or {}),
                           context=[pb.Passage(**{k: v for k, v in p.items()}) for p in context])
    return head + body.SerializeToString()


def rid(rng: random.Random, category: str) -> str:
    """A request id naming the category, so a worker restart or a fail-open in the server's log points at its cause."""
    return f"fz.{category}.{rng.randrange(10**9)}"


def base(rng: random.Random, invariants: Sequence[str] = CHEAP, category: str = "base") -> bytes:
    b = rng.choice(BASES)
    return request(b["response"], question=b["question"], context=b["context"], samples=b["samples"],
                   invariants=invariants, request_id=rid(rng, category))


def hostile_unicode(rng: random.Random, n: int) -> str:
    """`n` pieces: random code points of any plane, stacked combining marks, bidi and zero-width controls, emoji
    sequences, case-changing letters, non-ASCII digits inside citation markers."""
    parts: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.35:
            plane = rng.choice([0, 0, 0, 1, 1, 2, 3, 14, 15, 16])
            cp = rng.randrange(plane * 0x10000, plane * 0x10000 + 0x10000)
            parts.append(chr(cp) if not 0xD800 <= cp <= 0xDFFF else "\ufffd")
        elif roll < 0.55:
            parts.append(rng.choice(WIDE_UNICODE))
        elif roll < 0.7:
            parts.append(rng.choice("aeiouxyz") + "".join(rng.choice(COMBINING) for _ in range(rng.randrange(1, 60))))
        elif roll < 0.85:
            parts.append(rng.choice([" ", ". ", "\n", " [1] ", " [doc-2]. ", "\u3002", "\u061f "]))
        else:
            parts.append(rng.choice(["The tower", " is 330 m tall", " Jane Roe", " jane@corp.internal",
                                     " +44 20 7946 0958", " opened in 1889"]))
    return "".join(parts)


# ------------------------------------------------------------------------------------------------ generators


def g_random_bytes(rng: random.Random) -> Message:
    n = int(math.exp(rng.uniform(0, math.log(4096))))
    return Message("bytes.random", rng.randbytes(n))


def g_truncated(rng: random.Random) -> Message:
    data = base(rng)
    return Message("bytes.truncated", data[: rng.randrange(0, len(data))])


def g_bitflip(rng: random.Random) -> Message:
    data = bytearray(base(rng))
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data) * 8)
        data[i // 8] ^= 1 << (i % 8)
    return Message("bytes.bitflip", bytes(data))


def g_bad_utf8(rng: random.Random) -> Message:
    """Invalid UTF-8 in one string field (top-level, inside a passage, a metadata key or value)."""
    bad = b"x" * rng.randrange(0, 8) + rng.choice(BAD_UTF8) + b"y" * rng.randrange(0, 8)
    where = rng.randrange(9)
    inv = _ld(7, b"reference_integrity")
    ok_response = _ld(5, b"It is 330 m tall [1].")
    ok_passage = _ld(4, _ld(1, b"1") + _ld(2, b"The tower is 330 m tall."))
    if where < 5:
        field_no = (1, 2, 3, 5, 6)[where]
        rest = b"" if field_no == 5 else ok_response
        return Message("bytes.bad_utf8", inv + ok_passage + rest + _ld(field_no, bad))
    if where == 5:
        return Message("bytes.bad_utf8", inv + ok_response + _ld(7, bad))
    if where == 6:
        sub = rng.choice([1, 2, 3, 4])
        return Message("bytes.bad_utf8", inv + ok_response + _ld(4, _ld(sub, bad) + _ld(2 if sub != 2 else 1, b"t")))
    entry = _ld(1, bad) + _ld(2, b"v") if where == 7 else _ld(1, b"k") + _ld(2, bad)
    return Message("bytes.bad_utf8", inv + ok_response + ok_passage + _ld(8, entry))


def g_unicode(rng: random.Random, lane: Lane = "fast") -> Message:
    ctx = [{"id": rng.choice(["1", "doc-2", hostile_unicode(rng, 2)[:200] or "x"]), "text": hostile_unicode(rng, 40),
            "title": hostile_unicode(rng, 3)[:1000], "url": rng.choice(["", "https://example.org/" +
                                                                        hostile_unicode(rng, 2)[:100]])}
           for _ in range(rng.randrange(0, 4))]
    ids = [p["id"] for p in ctx]
    if len(set(ids)) != len(ids):
        ctx = ctx[:1]
    payload = request(hostile_unicode(rng, rng.randrange(1, 120)), question=hostile_unicode(rng, 10)[:2000],
                      context=ctx, samples=[hostile_unicode(rng, 20) for _ in range(rng.randrange(0, 3))],
                      invariants=CHEAP if lane == "fast" else (), app=hostile_unicode(rng, 1)[:16],
                      request_id=rid(rng, "unicode" if lane == "fast" else "heavy.unicode"),
                      metadata={hostile_unicode(rng, 1)[:32]: hostile_unicode(rng, 3)[:500]})
    return Message("unicode" if lane == "fast" else "heavy.unicode", payload, lane=lane)


def g_punct(rng: random.Random, lane: Lane = "fast") -> Message:
    """A 31 KB pathological run in the response, question, a passage or a sample (heavy: every real check)."""
    name = rng.choice(sorted(PUNCT_RUNS))
    run = PUNCT_RUNS[name]
    where = rng.choice(["response", "response", "question", "passage", "sample"])
    b = BASES[0]
    kwargs: dict[str, Any] = {"question": b["question"], "context": list(b["context"]), "samples": b["samples"],
                              "invariants": CHEAP if lane == "fast" else (), "request_id": rid(rng, f"punct.{name}")}
    response = b["response"]
    if where == "response":
        response = run
    elif where == "question":
        kwargs["question"] = run[:16_000]
    elif where == "passage":
        kwargs["context"] = [*b["context"], {"id": "run", "text": run}]
    else:
        kwargs["samples"] = [run, *b["samples"]]
    return Message(f"punct.{'cheap' if lane == 'fast' else 'heavy'}", request(response, **kwargs), lane=lane)


# every free-text field and count limit of `limits` (defaults), as (name, builder(size) -> request kwargs, limit)
def _fields() -> list[tuple[str, Callable[[int], dict[str, Any]], int]]:
    p1 = {"id": "1", "text": "The tower is 330 m tall."}
    return [
        ("response", lambda n: {"response": ("It is tall [1]. " * (n // 16 + 1))[:n]}, 32_000),
        ("question", lambda n: {"question": "q" * n}, 16_000),
        ("passages", lambda n: {"context": [{"id": str(i), "text": "t"} for i in range(n)]}, 64),
        ("passage", lambda n: {"context": [{"id": "1", "text": ("Tall tower. " * (n // 12 + 1))[:n]}]}, 32_000),
        ("context", lambda n: {"context": [{"id": str(i), "text": "c" * (n // 9 + (i < n % 9))} for i in range(9)]},
         256_000),
        ("samples", lambda n: {"samples": ["It is 330 m tall."] * n}, 20),
        ("sample", lambda n: {"samples": [("It is tall. " * (n // 12 + 1))[:n]]}, 32_000),
        ("metadata", lambda n: {"metadata": {f"k{i}": "v" for i in range(n)}}, 32),
        ("metadata_key", lambda n: {"metadata": {"k" * n: "v"}}, 128),
        ("metadata_value", lambda n: {"metadata": {"k": "v" * n}}, 1024),
        ("passage_id", lambda n: {"context": [{"id": "i" * n, "text": "t"}]}, 256),
        ("passage_title", lambda n: {"context": [{**p1, "title": "t" * n}]}, 1024),
        ("passage_url", lambda n: {"context": [{**p1, "url": "https://a.org/" + "u" * (n - 14)}]}, 4096),
        ("request_id", lambda n: {"request_id": "r" * n}, 128),
        ("app", lambda n: {"app": "a" * n}, 64),
    ]


FIELDS = _fields()


def g_huge(rng: random.Random, lane: Lane = "fast") -> Message:
    """One field just under or just over its limit (heavy: just under, every real check)."""
    name, build, limit = rng.choice(FIELDS)
    over = lane == "fast" and rng.random() < 0.6
    kwargs: dict[str, Any] = {"response": "It is 330 m tall [1].", "context": [BASES[0]["context"][0]],
                              "invariants": CHEAP if lane == "fast" else (), "request_id": rid(rng, f"huge.{name}")}
    kwargs.update(build(limit + 1 if over else limit))
    category = f"huge.{'over' if over else 'under'}" if lane == "fast" else "heavy.huge_under"
    return Message(category, request(**kwargs), lane=lane)


def g_4mib(rng: random.Random, lane: Lane = "fast") -> Message:
    """~4 MiB: past the transport limit, just under it but past a field limit, or (heavy) just under it and valid:
    every text field at its limit in 4-byte characters (3.8 MB)."""
    mib4 = 4 * 2**20
    if lane == "heavy":
        emoji = "\U0001F600"
        payload = request(emoji * 31_990 + " [1].", question=emoji * 16_000,
                          context=[{"id": str(i), "text": emoji * 32_000} for i in range(1, 9)],
                          samples=[emoji * 32_000] * 20, request_id=rid(rng, "heavy.4mib_valid"))
        return Message("heavy.4mib_valid", payload, lane="heavy")
    kind = rng.choice(["over", "under"])
    filler = mib4 - 200 + (300 if kind == "over" else 0)
    payload = request("It is tall [1].", context=[{"id": "1", "text": "x" * filler}], invariants=CHEAP)
    return Message(f"huge.4mib_{kind}", payload)


def g_ids(rng: random.Random, lane: Lane = "fast") -> Message:
    """Hostile passage ids, titles, urls, metadata and app/request_id values (within their limits, or duplicated)."""
    n = rng.randrange(1, 6)
    ctx, seen = [], set()
    for i in range(n):
        pid = rng.choice(HOSTILE_STRINGS)[:256]
        if pid in seen and rng.random() < 0.8:
            pid = f"{pid}{i}"[:256]
        seen.add(pid)
        ctx.append({"id": pid, "text": rng.choice(["The tower is 330 m tall.", "Jane Roe, jane@x.corp.",
                                                  hostile_unicode(rng, 5)]),
                    "title": rng.choice(HOSTILE_STRINGS)[:1024], "url": rng.choice(HOSTILE_STRINGS)[:4096],
                    "sensitivity": rng.choice([0, 1, 2])})
    refs = " ".join(f"[{rng.choice([p['id'], p['title'], str(rng.randrange(9))])}]" for p in ctx)
    response = f"It is 330 m tall {refs}. See [source: {rng.choice(HOSTILE_STRINGS)}] and [^{rng.randrange(99)}]."
    meta = {rng.choice(HOSTILE_STRINGS)[:128]: rng.choice(HOSTILE_STRINGS)[:1024] for _ in range(rng.randrange(4))}
    payload = request(response, question=rng.choice(HOSTILE_STRINGS), context=ctx,
                      invariants=CHEAP if lane == "fast" else (), request_id=rng.choice(HOSTILE_STRINGS)[:128],
                      app=rng.choice(HOSTILE_STRINGS)[:64], metadata=meta)
    return Message("ids" if lane == "fast" else "heavy.ids", payload, lane=lane)


def g_invariant_names(rng: random.Random) -> Message:
    names = [rng.choice([*HOSTILE_STRINGS, "entailment ", "ENTAILMENT", "reference_integrity\u0000", "x" * 10_000,
                         "reference_integrity", "test_sleepy"]) for _ in range(rng.randrange(1, 4))]
    b = BASES[0]
    return Message("invariant_names", request(b["response"], context=b["context"], invariants=names,
                                              request_id=rid(rng, "invariant_names")))


def g_deadline(rng: random.Random) -> Message:
    timeout = rng.choice([0.0, 0.001, None, 0.05])
    return Message(f"deadline.{'none' if timeout is None else f'{timeout * 1000:g}ms'}",
                   base(rng, CHEAP if rng.random() < 0.8 else (), f"deadline.{timeout}"), timeout=timeout)


def g_heavy_none(rng: random.Random) -> Message:
    """A realistic case with every real check and no deadline at all (the server's default deadline applies)."""
    return Message("heavy.no_deadline", base(rng, (), "heavy.no_deadline"), timeout=None, lane="heavy")


def g_stream(rng: random.Random) -> StreamScenario:
    mode = rng.choice(["read_all", "cancel_after", "cancel_mid_send", "never_read"])
    timeout = rng.choice([60.0, 60.0, 60.0, 0.001, 0.5, None])
    if mode == "never_read":
        # checked requests whose unread replies (~10 KB each: 100 dangling-citation findings) soon overflow the
        # transport's buffers: the server must stop reading (its stream window), not buffer replies without bound
        response = " ".join(f"Claim {i} [{i + 10}]." for i in range(150))
        payloads = tuple(request(response, context=BASES[0]["context"], invariants=CHEAP,
                                 request_id=rid(rng, "stream.never_read")) for _ in range(rng.randrange(300, 1500)))
        return StreamScenario("stream.never_read", payloads, "never_read", len(payloads), 60.0)
    n = rng.randrange(5, 120)
    makers: list[Callable[[random.Random], Message]] = [g_random_bytes, g_truncated, g_bitflip, g_bad_utf8, g_unicode,
                                                        g_ids, g_invariant_names, g_huge]
    payloads = tuple((rng.choice(makers)(rng).payload if rng.random() < 0.6 else base(rng, CHEAP, "stream"))
                     for _ in range(n))
    return StreamScenario(f"stream.{mode}", payloads, mode, rng.randrange(0, n), timeout)  # type: ignore[arg-type]


FAST: dict[str, tuple[float, Callable[[random.Random], Message]]] = {  # share of fast-lane unary messages
    "bytes.random": (0.20, g_random_bytes),
    "bytes.truncated": (0.14, g_truncated),
    "bytes.bitflip": (0.14, g_bitflip),
    "bytes.bad_utf8": (0.10, g_bad_utf8),
    "unicode": (0.12, g_unicode),
    "ids": (0.10, g_ids),
    "huge": (0.06, g_huge),
    "invariant_names": (0.04, g_invariant_names),
    "deadline": (0.06, g_deadline),
    "punct": (0.04, g_punct),
}
HEAVY: dict[str, tuple[float, Callable[[random.Random], Message]]] = {  # share of heavy-lane messages
    "punct": (0.45, lambda r: g_punct(r, "heavy")),
    "unicode": (0.15, lambda r: g_unicode(r, "heavy")),
    "huge": (0.15, lambda r: g_huge(r, "heavy")),
    "ids": (0.10, lambda r: g_ids(r, "heavy")),
    "no_deadline": (0.13, g_heavy_none),
    "4mib": (0.02, lambda r: g_4mib(r, "heavy")),
}


@dataclass(frozen=True)
class Plan:
    """How many of each: fast-lane unary messages, heavy-lane messages, ~4 MiB messages, streams."""

    seed: int = 13
    fast: int = 94_000
    heavy: int = 500
    mib4: int = 40
    streams: int = 90

    @classmethod
    def scaled(cls, messages: int, seed: int = 13, heavy: int | None = None) -> Plan:
        """At least `messages` unary messages, plus ~3% more in streams (how many a stream writes depends on how it
        ends: cancelled mid-send or blocked by flow control, it writes fewer than it planned)."""
        streams = max(1, round(messages * 0.055 / 62))
        heavy = max(1, round(messages * 0.005)) if heavy is None else heavy
        mib4 = max(2, min(40, messages // 2500))
        return cls(seed, max(0, messages - heavy - mib4), heavy, mib4, streams)


def _pick(rng: random.Random, table_: Mapping[str, tuple[float, Callable[[random.Random], Message]]]
          ) -> Callable[[random.Random], Message]:
    names = list(table_)
    return table_[rng.choices(names, weights=[table_[n][0] for n in names])[0]][1]


def fast_messages(plan: Plan) -> Iterator[Message]:
    for i in range(plan.fast):
        rng = random.Random(f"{plan.seed}/fast/{i}")
        yield _pick(rng, FAST)(rng)
    for i in range(plan.mib4):
        yield g_4mib(random.Random(f"{plan.seed}/4mib/{i}"))


def heavy_messages(plan: Plan) -> Iterator[Message]:
    for i in range(plan.heavy):
        rng = random.Random(f"{plan.seed}/heavy/{i}")
        yield _pick(rng, HEAVY)(rng)


def stream_scenarios(plan: Plan) -> Iterator[StreamScenario]:
    for i in range(plan.streams):
        yield g_stream(random.Random(f"{plan.seed}/stream/{i}"))


# ------------------------------------------------------------------------------------------------ driving


@dataclass
class Tally:
    """What the client saw: messages by (category, status), latencies, replies that break the contract."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    bad_spans: int = 0
    bad_examples: list[str] = field(default_factory=list)
    client_errors: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)

    def add(self, category: str, status: str, latency: float | None = None) -> None:
        self.counts[(category, status)] += 1
        if latency is not None:
            self.latencies[(category, status)].append(latency)

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    def status(self, status: str) -> int:
        return sum(n for (_, s), n in self.counts.items() if s == status)

    def unexpected(self) -> dict[str, int]:
        """Statuses a server under fuzzing must never return: UNKNOWN/INTERNAL mean an exception escaped a handler;
        UNAVAILABLE means the server went away."""
        ok = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED", "unanswered"}
        out: Counter[str] = Counter()
        for (_, s), n in self.counts.items():
            if s not in ok:
                out[s] += n
        return dict(out)


def check_reply(raw: bytes, payload: bytes, tally: Tally, category: str) -> None:
    """A reply's findings must lie inside the response (char offsets, or -1/-1 for the whole response)."""
    try:
        reply = pb.CheckResponse.FromString(raw)
        req = pb.CheckRequest.FromString(payload)
    except Exception:  # noqa: BLE001 - a payload only the server's lenient path accepted; nothing to compare
        return
    n = len(req.response)
    for result in reply.results:
        for f in result.findings:
            if (f.start, f.end) != (-1, -1) and not 0 <= f.start <= f.end <= n:
                tally.bad_spans += 1
                if len(tally.bad_examples) < 5:
                    tally.bad_examples.append(f"{category}: {result.invariant} {f.kind} [{f.start},{f.end}) of {n}")


async def run_unary(channel: grpc.aio.Channel, messages: Iterator[Message], concurrency: int, tally: Tally,
                    stop_at: float, retry_shed: int = 0) -> None:
    """Sends each message once — or, with `retry_shed`, again after a back-off while admission control sheds it
    (the heavy lane: a hostile valid message is only useful if it reaches the checks). The latency recorded is the
    last attempt's."""
    call = channel.unary_unary(CHECK)
    source = iter(messages)

    async def worker() -> None:
        for msg in source:
            if time.monotonic() > stop_at:
                return
            for attempt in range(retry_shed + 1):
                t0 = time.perf_counter()
                try:
                    raw = await call(msg.payload, timeout=msg.timeout)
                    status = "OK"
                    check_reply(raw, msg.payload, tally, msg.category)
                except grpc.aio.AioRpcError as err:
                    status = err.code().name
                    shed = status == "RESOURCE_EXHAUSTED" and "retry" in (err.details() or "")
                    if shed and attempt < retry_shed and time.monotonic() < stop_at:
                        tally.retries[msg.category] += 1
                        await asyncio.sleep(0.2 + 0.1 * min(attempt, 8))
                        continue
                except Exception as exc:  # noqa: BLE001 - the client's own failure, reported separately
                    tally.client_errors[type(exc).__name__] += 1
                    break
                tally.add(msg.category, status, time.perf_counter() - t0)
                break

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_stream(channel: grpc.aio.Channel, sc: StreamScenario, tally: Tally) -> None:
    """One CheckStream scenario; every message written counts once: with its reply's status, or `unanswered`."""
    started = time.monotonic()
    call = channel.stream_stream(STREAM)(timeout=sc.timeout)
    sent: list[bytes] = []
    answered = 0
    reader: asyncio.Future[None] | None = None

    async def read_all() -> None:
        nonlocal answered
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                return
            reply = pb.CheckResponse.FromString(raw)
            answered += 1
            tally.add(sc.category, STATUS_NAMES.get(reply.error_code, str(reply.error_code)))
            if sc.mode == "cancel_after" and answered >= sc.cut:
                call.cancel()
                return

    try:
        if sc.mode == "read_all" or sc.mode == "cancel_after":
            reader = asyncio.ensure_future(read_all())
            for p in sc.payloads:
                if reader.done():
                    break
                await call.write(p)
                sent.append(p)
            if not reader.done():
                await call.done_writing()
            await reader
        else:
            limit = sc.cut if sc.mode == "cancel_mid_send" else len(sc.payloads)
            for p in sc.payloads[:limit]:
                await asyncio.wait_for(call.write(p), timeout=2.0)  # a client that never reads blocks here
                sent.append(p)
            if sc.mode == "never_read":
                await asyncio.sleep(2.0)
            call.cancel()
    except (asyncio.TimeoutError, asyncio.InvalidStateError, grpc.aio.AioRpcError, grpc.aio.UsageError):
        call.cancel()
    except Exception as exc:  # noqa: BLE001 - reported, never fatal to the run
        tally.client_errors[type(exc).__name__] += 1
        call.cancel()
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)
    final = await call.code() if call.done() else grpc.StatusCode.CANCELLED
    rest = len(sent) - answered
    if rest > 0:
        # the call's status covers the messages left without a reply: CANCELLED by us (unanswered, expected),
        # DEADLINE_EXCEEDED; OK with replies missing would be replies lost by the server
        label = {grpc.StatusCode.CANCELLED: "unanswered", grpc.StatusCode.OK: "LOST"}.get(final, final.name)
        if label == "INTERNAL" and sc.timeout is not None and time.monotonic() - started >= sc.timeout and \
                await call.details() == "Internal error from Core":
            # a stream deadline expiring inside the client's own grpc core while it writes: the status is best effort
            # over HTTP/2 (grpc/grpc#2685). A bare grpc echo server gets it on 21 of 60 streams with a 1 ms deadline,
            # and on 8 of 930 with 10-400 ms deadlines expiring mid-stream (this server: 18 of 832; RELIABILITY.md),
            # so it is the deadline, not a handler's exception, whatever the deadline's length
            label = "DEADLINE_EXCEEDED"
        tally.counts[(sc.category, label)] += rest


async def run_streams(target: str, scenarios: Iterator[StreamScenario], concurrency: int, tally: Tally,
                      stop_at: float) -> None:
    source = iter(scenarios)

    async def worker() -> None:
        async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
            for sc in source:
                if time.monotonic() > stop_at:
                    return
                await run_stream(channel, sc, tally)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass
class FuzzResult:
    tally: Tally
    seconds: float
    alive: bool
    probe: ProbeReport
    before: Samples
    after: Samples
    rss_before: Rss
    rss_after: Rss
    restarts: int
    stop: StopReport | None = None

    @property
    def reached_checks(self) -> int:
        return self.tally.status("OK")

    @property
    def stalls(self) -> float:
        return loop_stalls_over(self.after) - loop_stalls_over(self.before)

    def checks_by_invariant(self) -> dict[str, int]:
        names = sorted({dict(ls).get("invariant", "") for (n, ls) in self.after if n == "guardrail_checks_total"})
        return {n: int(delta(self.before, self.after, "guardrail_checks_total", invariant=n)) for n in names if n}

    def fail_opens(self) -> dict[str, float]:
        out = {}
        for (name, labels), v in self.after.items():
            if name == "guardrail_fail_open_total":
                d = v - self.before.get((name, labels), 0.0)
                if d:
                    out["/".join(val for _, val in labels)] = d
        return out


async def fuzz(server: ServerProcess, plan: Plan, *, fast_concurrency: int = 16, heavy_concurrency: int = 1,
               stream_concurrency: int = 2, max_seconds: float = 40 * 60,
               progress: Callable[[str], None] | None = None) -> FuzzResult:
    """Runs the plan against a started server with the health prober on; stops sending at `max_seconds`."""
    tally = Tally()
    before, rss_before = server.metrics(), server.rss()
    restarts0 = server.count_events("check_worker_replaced")["check_worker_replaced"]
    stop_at = time.monotonic() + max_seconds
    started = time.monotonic()
    with HealthProber(server.target) as prober:
        async with grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS) as fast_ch, \
                grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS) as heavy_ch:
            tasks = [run_unary(fast_ch, fast_messages(plan), fast_concurrency, tally, stop_at),
                     run_unary(heavy_ch, heavy_messages(plan), heavy_concurrency, tally, stop_at, retry_shed=50),
                     run_streams(server.target, stream_scenarios(plan), stream_concurrency, tally, stop_at)]
            job = asyncio.gather(*tasks)
            while not job.done():
                await asyncio.wait([job], timeout=30)
                if progress is not None and server.alive:  # where in the run a stall or a restart happened
                    now = await asyncio.to_thread(server.metrics)
                    replaced = server.count_events("check_worker_replaced")["check_worker_replaced"] - restarts0
                    progress(f"{tally.messages} messages, {tally.status('OK')} checked, loop stalls > 100 ms "
                             f"{loop_stalls_over(now) - loop_stalls_over(before):.0f}, worker restarts {replaced}, "
                             f"fail-opens {delta(before, now, 'guardrail_fail_open_total'):.0f}")
                elif progress is not None:
                    progress(f"{tally.messages} messages: SERVER DOWN")
            await job
        probe = prober.stop()
    seconds = time.monotonic() - started
    alive = server.alive
    after = server.metrics() if alive else before
    restarts = server.count_events("check_worker_replaced")["check_worker_replaced"] - restarts0
    return FuzzResult(tally, seconds, alive, probe, before, after, rss_before, server.rss() if alive else Rss(0, []),
                      restarts)


async def stop_under_load(server: ServerProcess, plan: Plan) -> StopReport:
    """SIGTERM with heavy calls and an unread stream in flight: the exit must still fit in the grace period."""
    rng = random.Random(f"{plan.seed}/stop")
    async with grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS) as ch:
        call = ch.unary_unary(CHECK)
        in_flight = [asyncio.ensure_future(call(g_punct(rng, "heavy").payload, timeout=60)) for _ in range(4)]
        stream = ch.stream_stream(STREAM)(timeout=60)
        for _ in range(20):
            with_timeout = asyncio.wait_for(stream.write(base(rng)), 1.0)
            try:
                await with_timeout
            except (asyncio.TimeoutError, grpc.aio.AioRpcError):
                break
        await asyncio.sleep(0.3)
        report = await asyncio.to_thread(server.sigterm)
        stream.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
    return report


# ------------------------------------------------------------------------------------------------ report


def category_table(tally: Tally) -> str:
    statuses = ["OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED", "unanswered"]
    others = sorted({s for (_, s) in tally.counts} - set(statuses))
    cols = statuses + others
    cats = sorted({c for (c, _) in tally.counts})
    rows = []
    for c in cats:
        n = sum(tally.counts[(c, s)] for s in cols)
        refused = [x for s in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED") for x in tally.latencies.get((c, s), [])]
        ok = tally.latencies.get((c, "OK"), [])
        rows.append([c, n, *[tally.counts[(c, s)] for s in cols], pct(refused, 0.99) * 1e3, pct(ok, 0.5) * 1e3,
                     max(ok, default=math.nan) * 1e3])
    rows.append(["TOTAL", tally.messages, *[tally.status(s) for s in cols], math.nan, math.nan, math.nan])
    short = {"INVALID_ARGUMENT": "INVALID_ARG", "RESOURCE_EXHAUSTED": "RES_EXHAUSTED", "DEADLINE_EXCEEDED": "DEADLINE"}
    return table(["category", "messages", *[short.get(s, s) for s in cols], "refused p99 ms", "OK p50 ms",
                  "OK max ms"], rows)


def summary(r: FuzzResult, grace: float) -> str:
    fo = r.fail_opens()
    lines = [
        f"messages sent                 {r.tally.messages} in {r.seconds:.0f} s ({r.tally.messages / r.seconds:.0f}/s)",
        f"reached the checks (OK)       {r.reached_checks} (server: "
        f"{delta(r.before, r.after, 'guardrail_request_duration_seconds_count'):.0f} checked requests; by invariant "
        f"{r.checks_by_invariant()})",
        f"server crashes                {0 if r.alive else 1}  (process {'up' if r.alive else 'DIED'} at the end)",
        f"unexpected statuses           {r.tally.unexpected() or 0}",
        f"findings outside the response {r.tally.bad_spans}  {'; '.join(r.tally.bad_examples)}",
        f"event-loop stalls > 100 ms    {r.stalls:.0f} of "
        f"{delta(r.before, r.after, 'guardrail_event_loop_lag_seconds_count'):.0f} ticks (server histogram; "
        f"worst tick {loop_lag_max_bucket(r.before, r.after)})",
        f"health probe (client side)    {r.probe}; > 100 ms: {r.probe.over(0.1)}, > 1 s: {r.probe.over(1.0)}",
        f"worker restarts               {r.restarts} (check_worker_replaced log lines)",
        f"fail-opens (invariant/reason) {fo or 0}",
        f"shed (guardrail_shed_total)   {delta(r.before, r.after, 'guardrail_shed_total'):.0f}",
        f"RSS before / after            {r.rss_before}  ->  {r.rss_after}",
        f"client-side errors            {dict(r.tally.client_errors) or 0}",
        f"heavy lane retries after shed {sum(r.tally.retries.values())}",
    ]
    if r.stop is not None:
        lines.append(f"SIGTERM exit                  {r.stop.seconds:.2f} s, exit code {r.stop.exit_code} "
                     f"(grace {grace:g} s: {'within' if r.stop.within_grace else 'NOT within'})")
    return "\n".join(lines)


def stall_report(events: Sequence[dict[str, Any]], frames: int = 8) -> str:
    """The server's own attribution of each loop stall (`event_loop_stall`: the loop thread's stack while overdue)."""
    stalls = [e for e in events if e.get("event") == "event_loop_stall"]
    pauses = [e for e in events if e.get("event") == "gc_pause"]
    each = ", ".join(f"gen {e.get('generation')} {e.get('ms')} ms" for e in pauses)
    lines = [f"gc_pause events (> 100 ms)     {len(pauses)}{': ' + each if pauses else ''}",
             f"event_loop_stall events        {len(stalls)}"]
    for e in stalls:
        lines.append(f"  {e.get('timestamp', '?')} late {e.get('late_ms')} ms, innermost first:")
        lines += [f"      {frame}" for frame in e.get("stack", [])[:frames]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000, help="about this many in all (default %(default)s)")
    ap.add_argument("--heavy", type=int, default=None, help="valid hostile messages running every real check "
                    "(default 0.5%% of --messages)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--max-minutes", type=float, default=40.0, help="stop sending after this long")
    ap.add_argument("--fast-concurrency", type=int, default=16)
    ap.add_argument("--heavy-concurrency", type=int, default=1)
    ap.add_argument("--stream-concurrency", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to `guardrail serve --set` (repeatable)")
    ap.add_argument("--nice", type=int, default=0, help="run the server under `nice -n`")
    args = ap.parse_args(argv)
    plan = Plan.scaled(args.messages, args.seed, args.heavy)
    print(f"plan: {plan}", flush=True)
    server = ServerProcess(sets=args.sets, nice=args.nice)
    with server:
        print(f"server SERVING after {server.started_s:.1f} s; {server.rss()}; {machine_line()}", flush=True)

        def progress(line: str) -> None:
            print(f"  {time.strftime('%H:%M:%S')} {line}; load average {os.getloadavg()[0]:.2f}", flush=True)

        result = asyncio.run(fuzz(server, plan, fast_concurrency=args.fast_concurrency,
                                  heavy_concurrency=args.heavy_concurrency,
                                  stream_concurrency=args.stream_concurrency, max_seconds=args.max_minutes * 60,
                                  progress=progress))
        if result.alive:
            result.stop = asyncio.run(stop_under_load(server, plan))
        grace = 10.0
        for s in args.sets:
            if s.startswith("server.grace_period_s="):
                grace = float(s.split("=", 1)[1])
        flags = " + " + " ".join(args.sets) if args.sets else ""
        print(f"\nbench.fuzz seed {plan.seed}: {plan.fast} fast-lane + {plan.mib4} ~4 MiB + {plan.heavy} heavy "
              f"unary messages, {plan.streams} streams; server default config{flags}; {machine_line()}\n")
        print(category_table(result.tally))
        print()
        print(summary(result, grace))
        print(stall_report(server.events()))
        crashed = not result.alive or (result.stop is not None and result.stop.exit_code != 0)
    return 1 if crashed or result.tally.unexpected() else 0


if __name__ == "__main__":
    sys.exit(main())
