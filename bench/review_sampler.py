"""Cost of `ReviewSampler.offer()` on the request path, and how fast samples move to the spool and the store.

    python -m bench.review_sampler [--n 50000] [--pg postgresql://postgres@127.0.0.1:5432/test] [--no-redact]

Prints one table. offer() is timed call by call (perf_counter_ns) on the thread that calls it, with the
background writer running, so GIL contention from the writer is included. Throughput figures are wall time
for N samples from the first offer until they are durable (fsynced in the spool or committed in the store).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from guardrail_server.config import ReviewConfig
from guardrail_server.review.records import Pending, to_record
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.review.spool import Spool
from guardrail_server.review.store import ReviewStore
from guardrail_invariants.types import Case, Outcome, Passage, Verdict

CASE = Case(
    question="When is the rent due and who do I pay it to?",
    context=tuple(
        Passage(f"doc-{i}", f"Clause {i}: the tenant pays rent on day {i} of each month to Acme Property Ltd. " * 4)
        for i in range(1, 5)
    ),
    response="Rent is due on day 1 of each month [doc-1], payable to Acme Property Ltd [doc-2].",
    request_id="bench",
)
PASS = [Verdict("entailment", Outcome.PASS, 0.93, 0.5), Verdict("reference_integrity", Outcome.PASS, 1.0, 0.5)]
FAIL = [Verdict("entailment", Outcome.FAIL, 0.12, 0.5), Verdict("reference_integrity", Outcome.PASS, 1.0, 0.5)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=1"


def pg_schema(admin: str) -> tuple[str, Callable[[], None]]:
    schema = "review_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")

    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-csearch_path%3D{schema}", drop


async def offer_cost(label: str, cfg: ReviewConfig, verdicts: list[Verdict], n: int, redactor) -> list[tuple]:  # noqa: ANN001
    sampler = ReviewSampler(cfg, redactor=redactor)
    await sampler.start()
    times = []
    sampled = 0
    for i in range(n):
        t0 = time.perf_counter_ns()
        sid = sampler.offer(CASE, verdicts, "allow")
        times.append((time.perf_counter_ns() - t0) / 1000)
        sampled += sid is not None
        if i % 100 == 0:
            await asyncio.sleep(0)  # let the loop breathe as a server would
    await sampler.stop()
    return [(f"offer(): {label}", f"p50 {statistics.median(times):.2f} µs", f"p99 {pct(times, 0.99):.2f} µs",
             f"max {max(times):.0f} µs", f"{sampled} sampled, {sampler.counts['dropped']} dropped")]


async def writer_throughput(label: str, cfg: ReviewConfig, n: int, redactor) -> tuple:  # noqa: ANN001
    """N sampled cases offered back to back (queue large enough); time until all are durable."""
    sampler = ReviewSampler(cfg, redactor=redactor)
    await sampler.start()
    t0 = time.perf_counter()
    for _ in range(n):
        sampler.offer(CASE, FAIL, "flag", disagreements=("entailment",))
    while sampler.counts["stored"] + sampler.counts["spooled"] + sampler.counts["replayed"] < n:
        await asyncio.sleep(0.005)
    dt = time.perf_counter() - t0
    await sampler.stop()
    return (f"writer -> {label}", f"{n / dt:,.0f} samples/s", f"{n} in {dt:.2f} s",
            f"spooled {sampler.counts['spooled']}", f"stored {sampler.counts['stored']}")


def pii_case(i: int) -> Case:
    """Distinct names, emails and passages per case, so no cache helps."""
    first, last = f"Alex{i}", f"Morgan{i * 7}"
    return Case(
        question=f"How do I reach {first} {last} about invoice {i}?",
        context=tuple(
            Passage(f"crm-{i}-{k}", f"Record {k} for {first} {last}: email {first}.{last}@example.com, phone "
                    f"212-555-{1000 + i % 9000:04d}, account {i * 31 + k}. Lives at {k} Elm Street, Springfield.")
            for k in range(3)
        ),
        response=f"You can email {first} {last} at {first}.{last}@example.com [crm-{i}-0].",
    )


async def loop_lag(label: str, cfg: ReviewConfig | None, offers: int, redactor) -> tuple:  # noqa: ANN001
    """Event-loop lag (how late a 1 ms sleep wakes up) while `offers` PII cases are offered ~2 ms apart and the
    writer stores what `cfg.random_rate` samples: what a Check on the same loop would feel."""
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t0 - 0.001) * 1e6)

    sampler = ReviewSampler(cfg, redactor=redactor) if cfg else None
    if sampler:
        await sampler.start()
    task = asyncio.create_task(probe())
    t0 = time.perf_counter()
    for i in range(offers):
        if sampler:
            sampler.offer(pii_case(i), PASS, "allow")
        await asyncio.sleep(0.002)
    if sampler:
        while sampler.counts["stored"] + sampler.counts["spooled"] < sampler.counts["sampled"]:
            await asyncio.sleep(0.01)
    dt = time.perf_counter() - t0
    done.set()
    await task
    n = sampler.counts["sampled"] if sampler else 0
    if sampler:
        await sampler.stop()
    return (f"loop lag: {label}", f"p50 {statistics.median(lags):.0f} µs", f"p99 {pct(lags, 0.99):.0f} µs",
            f"{n / dt:,.1f} samples/s" if n else "-", f"{offers} offers, {n} sampled in {dt:.1f} s")


def spool_append(directory: Path, n: int, batch: int) -> tuple:
    recs = [to_record(Pending(str(uuid.uuid4()), time.time(), CASE, FAIL, "flag", ("failure",)), None) for _ in range(n)]
    sp = Spool(directory).open()
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        sp.append(recs[i:i + batch])
    dt = time.perf_counter() - t0
    sp.close()
    return (f"spool append, batch {batch}", f"{n / dt:,.0f} samples/s", f"{dt / (n / batch) * 1000:.2f} ms/fsync",
            f"{sum(p.stat().st_size for p in directory.glob('*.jsonl')) / n:,.0f} B/sample", "")


def replay(directory: Path, url: str, label: str) -> tuple:
    sp = Spool(directory).open()
    depth = sp.depth
    with ReviewStore(url) as store:
        t0 = time.perf_counter()
        sp.replay(store.insert_samples)
        dt = time.perf_counter() - t0
        again = store.insert_samples(
            [to_record(Pending(store.sample_ids()[0], time.time(), CASE, FAIL, "flag", ("failure",)), None)]
        )
    sp.close()
    return (f"spool replay -> {label}", f"{depth / dt:,.0f} samples/s", f"{depth} in {dt:.2f} s",
            f"re-insert of a stored id adds {again}", "")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="offer() calls per variant")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--no-redact", action="store_true", help="skip the Presidio redaction variants")
    ap.add_argument("--redact-n", type=int, default=100, help="offers per redaction variant (x10 for the 2%% rows)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="review-bench-"))
    rows: list[tuple] = []
    no_redact = None

    def cfg(name: str, url: str = "", **kw: object) -> ReviewConfig:
        return ReviewConfig(url=url or f"sqlite:///{tmp / name / 'r.db'}", spool_dir=str(tmp / name / "spool"),
                            store_raw_text=True, queue_size=kw.pop("queue_size", 1000), **kw)

    rows += await offer_cost("pass, not sampled", cfg("o1", random_rate=0.0), PASS, args.n, no_redact)
    rows += await offer_cost("random_rate=1% (SQLite writer)", cfg("o2", random_rate=0.01), PASS, args.n, no_redact)
    rows += await offer_cost("every call sampled (SQLite writer)", cfg("o3", random_rate=1.0, queue_size=args.n),
                             PASS, args.n, no_redact)
    rows += await offer_cost("every call sampled (store down -> spool)",
                             cfg("o4", dead_url(), random_rate=1.0, queue_size=args.n), PASS, args.n, no_redact)

    m = 20_000
    rows.append(spool_append(tmp / "s1", 2000, 1))
    rows.append(spool_append(tmp / "s200", m, 200))
    rows.append(replay(tmp / "s200", f"sqlite:///{tmp / 'replay.db'}", "SQLite"))
    pg_url, drop = pg_schema(args.pg)
    try:
        rows.append(spool_append(tmp / "s200pg", m, 200))
        rows.append(replay(tmp / "s200pg", pg_url, "PostgreSQL"))
        rows.append(await writer_throughput("PostgreSQL", cfg("w3", pg_url, queue_size=m), m, no_redact))
    finally:
        drop()
    rows.append(await writer_throughput("SQLite", cfg("w1", queue_size=m), m, no_redact))
    rows.append(await writer_throughput("spool (store down)", cfg("w2", dead_url(), queue_size=m), m, no_redact))
    if not args.no_redact:
        from guardrail_invariants.pii import redact

        def in_thread(text: str) -> str:  # a closure cannot be pickled, so the sampler redacts in its thread
            return redact(text)

        def lcfg(name: str, rate: float, raw: bool = False) -> ReviewConfig:
            return ReviewConfig(url=f"sqlite:///{tmp / name / 'r.db'}", spool_dir=str(tmp / name / "spool"),
                                random_rate=rate, queue_size=m, store_raw_text=raw)

        k = args.redact_n
        rows.append(await loop_lag("baseline: no sampler", None, k, None))
        rows.append(await loop_lag("every case, raw text", lcfg("l1", 1.0, raw=True), k, None))
        rows.append(await loop_lag("every case, redaction in writer thread", lcfg("l2", 1.0), k, in_thread))
        rows.append(await loop_lag("every case, redaction in worker process", lcfg("l3", 1.0), k, redact))
        rows.append(await loop_lag("baseline: no sampler", None, 10 * k, None))
        rows.append(await loop_lag("2% sampled, redaction in writer thread", lcfg("l4", 0.02), 10 * k, in_thread))
        rows.append(await loop_lag("2% sampled, redaction in worker process", lcfg("l5", 0.02), 10 * k, redact))

    print(f"review sampler bench: {os.cpu_count()} cores, case with 4 passages, 2 verdicts; n={args.n} offers/variant")
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    asyncio.run(main())
