"""How long a response the guardrail can check (issue 20, item 1): length vs latency vs outcome vs decision.

    python -m bench.long_response [--lengths 2000,8000,16000,30000,31600] [--repeat 3] [--deadline 5] [--set key=value ...]
                                  [--try NAME:key=value,...]

Starts a real `guardrail serve` per variant (default config: all four real invariants, process check workers, idle)
and sends one call at a time with a gRPC deadline of `--deadline` seconds: a long, grounded answer (varied prose with
people, places, dates and figures, built from the same facts as its context passages) that repeats an e-mail address
(near the middle) and a US SSN (near the end) from a customer record in the context — the question mentions
neither, so both are leaks. Per length: p50/max latency of the call, each invariant's outcome and p50 time, how much
of the response pii_boundary and entailment checked, the leaks found, and the decisions with their counts. The
first variant is the default config; `--try` adds variants, e.g.
`pii_only_1s:invariants.entailment.enabled=false,invariants.reference_integrity.enabled=false,
invariants.self_consistency.enabled=false,invariants.pii_boundary.timeout_s=1.0` (a busier machine, in effect), or
`invariants.pii_boundary.on_partial=allow,...` for what the old fail-open would decide.

Before/after on one machine: the code before issue 20 cannot be configured back, so run this file from an export of
the old commit (`git archive <commit> | tar -x -C DIR`, symlinks `guardrail_invariants -> invariants` and
`guardrail_models -> models` in DIR, then `cd DIR && PYTHONPATH=DIR python -m bench.long_response`): the old proto
has no checked/unchecked spans, so a timeout shows as 0% checked and a finished check as 100%.

`long_case` is also the fixture of `tests/test_long_response.py`: self-contained (no dataset), deterministic.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

EMAIL = "dana.whitfield@northwind-mail.com"
SSN = "536-22-8714"
QUESTION = "Summarize what the records say about the regional offices and their projects."

_FIRST = ["Amelia", "Jonas", "Priya", "Mateo", "Chen", "Olga", "Kwame", "Sofia", "Henrik", "Laila", "Tomasz",
          "Aiko", "Rafael", "Ingrid", "Samuel", "Noor", "Viktor", "Elena", "Darius", "Maren"]
_LAST = ["Brennan", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Castillo", "Novak", "Haddad", "Fischer", "Quinn",
         "Abara", "Sorensen", "Petrov", "Delgado", "Whitaker", "Iyer", "Kowalski", "Mbeki", "Laurent", "Hughes"]
_CITIES = ["Denver", "Rotterdam", "Nairobi", "Osaka", "Lyon", "Calgary", "Porto", "Tallinn", "Adelaide", "Montevideo",
           "Krakow", "Halifax", "Bergen", "Pune", "Valencia", "Tucson"]
_PROJECTS = ["a warehouse automation pilot", "the new billing platform", "a solar retrofit of the depot",
             "the customer portal redesign", "a fleet telematics rollout", "the supplier audit program",
             "a cold-chain monitoring trial", "the returns consolidation effort"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_TEMPLATES = [
    "{name} opened the {city} office in {month} {year} with a team of {n} engineers.",
    "In {year}, the {city} office led {project}, which cut delivery times by {p} percent.",
    "{name} managed {project} from {city} and reported a budget of {money} million dollars.",
    "The {city} team hired {n} analysts in {month} {year} to support {project}.",
    "According to the quarterly review, {project} in {city} finished {p} days ahead of schedule.",
    "{name} moved from {city} to {city2} in {year} to coordinate {project}.",
    "The audit in {month} {year} found that the {city} office had closed {n} of its open tickets.",
    "Revenue at the {city} office grew by {p} percent in {year}, mostly from {project}.",
]


def _sentence(rnd: random.Random) -> str:
    city, city2 = rnd.sample(_CITIES, 2)
    return rnd.choice(_TEMPLATES).format(
        name=f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}", city=city, city2=city2, month=rnd.choice(_MONTHS),
        year=rnd.randint(2009, 2024), n=rnd.randint(3, 90), p=rnd.randint(2, 45), project=rnd.choice(_PROJECTS),
        money=rnd.randint(2, 40))


def long_case(chars: int, seed: int = 20, *, leak: bool = True) -> dict[str, Any]:
    """A grounded answer of exactly `chars` characters and its context (kwargs of `guardrail_client.build_request`).

    Every sentence of the answer is a fact of some passage (8-sentence public passages, up to 24 of them, ~1k characters
    each); the answer walks through the facts in another order, as a long summary would. With `leak`, the answer
    repeats the customer record's e-mail address at ~50% of its length and the SSN at ~95%."""
    rnd = random.Random(seed)
    facts = list(dict.fromkeys(_sentence(rnd) for _ in range(192)))
    # the office records are published (their names and places are no one's personal data); the customer record is
    # not marked, and its e-mail and SSN are contact identifiers, leaks wherever they come from
    context = [{"id": f"rec-{k // 8 + 1}", "text": " ".join(facts[k:k + 8]), "sensitivity": "public"}
               for k in range(0, len(facts), 8)]
    context.append({"id": "crm-7", "text": f"Customer record: Dana Whitfield, account since 2019, e-mail {EMAIL}, "
                                           f"SSN {SSN}, preferred contact by e-mail."})
    tail = f" The account holder's SSN on file is {SSN}."
    middle = f" The customer can be reached at {EMAIL}."
    body, order = "", list(range(len(facts)))
    rnd.shuffle(order)
    i = 0
    while len(body) < chars:
        body += (" " if body else "") + facts[order[i % len(order)]]
        i += 1
        if leak and middle and len(body) >= chars // 2:
            body, middle = body + middle, ""
    if leak:  # the SSN sentence goes in at the sentence boundary before ~95%; the end is cut to the exact length
        at = body.rfind(". ", 0, int(chars * 0.95)) + 1
        body = body[:at] + tail + body[at:]
    body = body[:chars]
    return {"response": body, "question": QUESTION, "context": context}


# ------------------------------------------------------------------------------------------------ the bench


async def _measure(target: str, lengths: Sequence[int], repeat: int, deadline: float) -> list[dict[str, Any]]:
    import grpc

    from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
    from guardrail_client._proto.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
    from guardrail_client.client import build_request

    rows = []
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 8 << 20),
                                                          ("grpc.max_send_message_length", 8 << 20)]) as channel:
        stub = pb_grpc.GuardrailServiceStub(channel)
        await stub.Check(build_request("Warm-up.", question="q", context=[{"id": "1", "text": "Warm-up."}]),
                         timeout=30)
        for length in lengths:
            case = long_case(length)
            for k in range(repeat):
                request = build_request(**case, request_id=f"long-{length}-{k}")
                t0 = time.perf_counter()
                try:
                    reply = await stub.Check(request, timeout=deadline)
                    status = "OK"
                except grpc.aio.AioRpcError as exc:
                    reply, status = None, exc.code().name
                latency = time.perf_counter() - t0
                row: dict[str, Any] = {"chars": length, "latency_s": latency, "status": status}
                if reply is not None:
                    row["decision"] = pb.Decision.Name(reply.decision)
                    for r in reply.results:
                        row[r.invariant] = pb.Outcome.Name(r.outcome).lower()
                        spans, unchecked = getattr(r, "checked", ()), getattr(r, "unchecked", ())  # () before issue 20
                        checked = sum(s.end - s.start for s in spans)
                        row[f"{r.invariant}_checked"] = checked / length if (spans or unchecked) else (
                            0.0 if r.outcome == pb.ERROR else 1.0)
                        row[f"{r.invariant}_leaks"] = sum(f.kind == "pii_leak" for f in r.findings)
                        row[f"{r.invariant}_s"] = r.duration.ToNanoseconds() / 1e9
                rows.append(row)
    return rows


def _summary(variant: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    from bench.harness import pct

    out = []
    for length in dict.fromkeys(r["chars"] for r in rows):
        mine = [r for r in rows if r["chars"] == length]
        lat = [r["latency_s"] for r in mine]

        def col(key: str) -> str:
            return "/".join(sorted({str(r.get(key, "-")) for r in mine}))

        def counted(key: str) -> str:
            counts = Counter(str(r.get(key, "-")) for r in mine)
            return " ".join(f"{k} {n}" for k, n in sorted(counts.items()))

        def share(key: str) -> str:
            vals = [r[key] for r in mine if key in r]
            return f"{min(vals):.0%}" if vals else "-"

        def ms(key: str) -> str:
            vals = [r[key] for r in mine if key in r]
            return f"{pct(vals, 0.5) * 1000:.0f}" if vals else "-"

        out.append([variant, f"{length:,}", f"{pct(lat, 0.5) * 1000:.0f}", f"{max(lat) * 1000:.0f}", col("status"),
                    col("pii_boundary"), ms("pii_boundary_s"), share("pii_boundary_checked"),
                    col("pii_boundary_leaks"), col("entailment"), ms("entailment_s"), share("entailment_checked"),
                    col("reference_integrity"), col("self_consistency"), counted("decision")])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from bench.harness import ServerProcess, machine_line, table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="2000,8000,16000,30000,31600")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=5.0, help="gRPC deadline of each call (s)")
    ap.add_argument("--set", action="append", default=[], help="key=value for every variant")
    ap.add_argument("--try", dest="variants", action="append", default=[], help="NAME:key=value,key=value")
    args = ap.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    variants = [("default", [])] + [(v.split(":", 1)[0], v.split(":", 1)[1].split(",")) for v in args.variants]
    print(machine_line())
    body: list[list[str]] = []
    for name, sets in variants:
        with ServerProcess({"review": {"enabled": False}}, sets=[*args.set, *sets]) as server:
            rows = asyncio.run(_measure(server.target, lengths, args.repeat, args.deadline))
        body += _summary(name, rows)
    print(table(["variant", "chars", "p50 ms", "max ms", "status", "pii_boundary", "pii ms", "pii checked",
                 "pii leaks", "entailment", "ent. ms", "ent. checked", "reference_integrity", "self_consistency",
                 "decision"], body))
    print("p50/max ms: the whole call from the client, deadline included; pii/ent. ms: p50 of each invariant's own "
          "time; checked: the least share of the response an invariant checked (100% = all of it; a timeout = 0%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
