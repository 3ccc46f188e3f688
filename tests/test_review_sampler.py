"""The sampler: what gets sampled, and that nothing is lost or doubled when the store goes away and comes back."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from prometheus_client import REGISTRY

from guardrail_server.config import ReviewConfig
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.review.spool import Spool, SpoolLockedError
from guardrail_server.review.store import ReviewStore
from guardrail_invariants.types import Case, Finding, Passage
from tests.review_support import (
    PG_ADMIN,
    TcpProxy,
    drop_schema,
    make_case,
    new_schema,
    pg_url,
    verdict,
)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def config(tmp_path: Path, url: str = "", **kw: object) -> ReviewConfig:
    base = {
        "url": url or f"sqlite:///{tmp_path / 'review.db'}",
        "spool_dir": str(tmp_path / "spool"),
        "random_rate": 0.0,
        "failure_rate_limit_per_minute": 60.0,
        "queue_size": 10_000,
        "store_raw_text": True,
    }
    return ReviewConfig(**{**base, **kw})


async def wait_for(pred: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# -- sampling rules ---------------------------------------------------------------------------------------


def test_passing_traffic_is_not_sampled_without_random_slice(tmp_path: Path) -> None:
    s = ReviewSampler(config(tmp_path))
    assert all(s.offer(make_case(i), [verdict("entailment", 0.9)], "allow") is None for i in range(100))


def test_failures_are_rate_limited_per_invariant(tmp_path: Path) -> None:
    now = [1000.0]
    s = ReviewSampler(config(tmp_path, failure_rate_limit_per_minute=3.0), clock=lambda: now[0])
    before = metric("guardrail_review_samples_total", reason="failure")
    ent = [s.offer(make_case(i), [verdict("entailment", 0.1)], "flag") for i in range(10)]
    assert sum(x is not None for x in ent) == 3  # burst of one minute's worth
    ref = [s.offer(make_case(i), [verdict("reference_integrity", 0.1)], "flag") for i in range(10)]
    assert sum(x is not None for x in ref) == 3  # its own bucket
    now[0] += 20.0  # 3/min -> one token per 20 s
    assert s.offer(make_case(0), [verdict("entailment", 0.1)], "flag") is not None
    assert s.offer(make_case(0), [verdict("entailment", 0.1)], "flag") is None
    assert metric("guardrail_review_samples_total", reason="failure") - before == 7


def test_zero_failure_rate_limit_disables_failure_sampling(tmp_path: Path) -> None:
    s = ReviewSampler(config(tmp_path, failure_rate_limit_per_minute=0.0))
    assert s.offer(make_case(), [verdict("entailment", 0.1)], "flag") is None


def test_every_disagreement_is_sampled_even_past_the_failure_limit(tmp_path: Path) -> None:
    s = ReviewSampler(config(tmp_path, failure_rate_limit_per_minute=1.0))
    before = metric("guardrail_review_samples_total", reason="disagreement")
    ids = [
        s.offer(make_case(i), [verdict("entailment", 0.1)], "flag", disagreements=["entailment"]) for i in range(50)
    ]
    assert all(ids)
    assert len(set(ids)) == 50
    assert metric("guardrail_review_samples_total", reason="disagreement") - before == 50


def test_random_slice_is_uniform_over_all_traffic(tmp_path: Path) -> None:
    rng = random.Random(7)
    s = ReviewSampler(config(tmp_path, random_rate=0.1, failure_rate_limit_per_minute=0.0), rng=rng.random)
    n = 20_000
    hits = sum(
        s.offer(make_case(i), [verdict("entailment", 0.9 if i % 2 else 0.1)], "allow") is not None for i in range(n)
    )
    sd = (n * 0.1 * 0.9) ** 0.5
    assert abs(hits - n * 0.1) < 4 * sd


def test_disabled_sampler_samples_nothing(tmp_path: Path) -> None:
    s = ReviewSampler(config(tmp_path, enabled=False, random_rate=1.0))
    assert s.offer(make_case(), [verdict("entailment", 0.1)], "flag", disagreements=["entailment"]) is None


def test_offer_never_raises_and_drops_when_the_queue_is_full(tmp_path: Path) -> None:
    s = ReviewSampler(config(tmp_path, random_rate=1.0, queue_size=2))
    assert s.offer(make_case(), [None], "allow") is None  # type: ignore[list-item] - garbage in, None out
    before = metric("guardrail_review_drops_total", cause="queue_full")
    ids = [s.offer(make_case(i), [verdict("entailment", 0.9)], "allow") for i in range(3)]
    assert ids[0] and ids[1] and ids[2] is None
    assert metric("guardrail_review_drops_total", cause="queue_full") - before == 1


# -- storage paths -----------------------------------------------------------------------------------------


async def test_samples_reach_the_store_with_their_reasons(tmp_path: Path, store_url: str) -> None:  # noqa: F811
    now = [0.0]
    cfg = config(tmp_path, store_url, random_rate=0.5, failure_rate_limit_per_minute=1000.0)
    s = ReviewSampler(cfg, rng=random.Random(3).random, clock=lambda: now[0])
    await s.start()
    offered = {}
    for i in range(200):
        v = [verdict("entailment", 0.1 if i % 3 == 0 else 0.9)]
        sid = s.offer(make_case(i), v, "flag", disagreements=["entailment"] if i % 50 == 0 else ())
        if sid:
            offered[sid] = i
    await s.stop()
    with ReviewStore(store_url) as st:
        assert sorted(st.sample_ids()) == sorted(offered)
        for sample in st.queue(limit=500):
            i = offered[sample["id"]]
            if i % 50 == 0:
                assert sample["reason"] == "disagreement"
            elif i % 3 == 0:
                assert "failure" in sample["reasons"]
            else:
                assert sample["reasons"] == ["random"]
            assert sample["in_random_slice"] == ("random" in sample["reasons"])
            assert sample["case"]["question"] == make_case(i).question


async def _spool_then_replay(
    tmp_path: Path, url: str, take_down: Callable[[], None], bring_back: Callable[[], None]
) -> None:
    s = ReviewSampler(config(tmp_path, url, random_rate=1.0, write_timeout_s=1.0))
    await s.start()
    ids: list[str] = []

    def offer(n: int) -> None:
        for i in range(n):
            ids.append(s.offer(make_case(len(ids)), [verdict("entailment", 0.9)], "allow"))

    offer(200)
    await wait_for(lambda: s.counts["stored"] == 200)
    take_down()
    offer(300)
    await wait_for(lambda: s.counts["spooled"] >= 300)
    assert s.spool.depth >= 300
    assert metric("guardrail_review_spool_depth") >= 300
    bring_back()
    await wait_for(lambda: s.spool.depth == 0, timeout=60)
    offer(100)
    await s.stop()
    assert all(ids) and len(set(ids)) == 600
    with ReviewStore(url) as st:
        stored = st.sample_ids()
    assert len(stored) == 600 and set(stored) == set(ids)
    assert not list((tmp_path / "spool").glob("spool-*.jsonl"))


@pytest.mark.postgres
async def test_postgres_down_then_back_spools_and_replays_everything_once(tmp_path: Path) -> None:
    schema = new_schema()
    proxy = TcpProxy()
    proxy.up()
    try:
        await _spool_then_replay(tmp_path, pg_url(schema, port=proxy.port), proxy.down, proxy.up)
    finally:
        proxy.down()
        drop_schema(schema)


async def test_sqlite_locked_store_spools_and_replays_everything_once(tmp_path: Path) -> None:
    db = tmp_path / "review.db"
    holder: list[sqlite3.Connection] = []

    def lock() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        holder.append(conn)

    def unlock() -> None:
        holder.pop().rollback()

    await _spool_then_replay(tmp_path, f"sqlite:///{db}", lock, unlock)


@pytest.mark.postgres
async def test_connections_killed_mid_write_lose_and_double_nothing(tmp_path: Path) -> None:
    schema = new_schema()
    app = "review_kill_" + schema[-8:]
    url = pg_url(schema, app=app)
    s = ReviewSampler(config(tmp_path, url, random_rate=1.0, write_timeout_s=1.0))
    await s.start()
    stop = threading.Event()
    kills = [0]

    def killer() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,)
                ).fetchall()
                kills[0] += sum(1 for (ok,) in rows if ok)
                time.sleep(0.03)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    ids = []
    try:
        for i in range(1500):
            ids.append(s.offer(make_case(i), [verdict("entailment", 0.9)], "allow"))
            if i % 25 == 0:
                await asyncio.sleep(0.005)
    finally:
        stop.set()
        t.join()
    await wait_for(lambda: s.spool.depth == 0 and s._queue.empty(), timeout=60)
    await s.stop()
    try:
        assert kills[0] > 0
        assert s.counts["spooled"] > 0, "no write was interrupted; the test did not exercise the spool"
        with ReviewStore(url) as st:
            stored = st.sample_ids()
        assert len(stored) == 1500 and set(stored) == set(ids)
    finally:
        drop_schema(schema)


@pytest.mark.postgres
async def test_spool_left_by_one_process_is_replayed_at_the_next_start(tmp_path: Path) -> None:
    schema = new_schema()
    proxy = TcpProxy()  # not up: the store is unreachable for the first sampler
    url = pg_url(schema, port=proxy.port)
    try:
        a = ReviewSampler(config(tmp_path, url, random_rate=1.0, write_timeout_s=1.0))
        await a.start()
        ids = [a.offer(make_case(i), [verdict("entailment", 0.9)], "allow") for i in range(250)]
        await a.stop()
        assert Spool(tmp_path / "spool").open().depth == 250
        proxy.up()
        b = ReviewSampler(config(tmp_path, url, random_rate=1.0, write_timeout_s=1.0))
        await b.start()  # replays before returning
        with ReviewStore(url) as st:
            assert sorted(st.sample_ids()) == sorted(ids)
        await b.stop()
    finally:
        proxy.down()
        drop_schema(schema)


def test_spool_skips_a_torn_last_line_and_keeps_order(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "sp").open()
    sp.append([{"id": str(i)} for i in range(5)])
    sp.close()
    seg = sorted((tmp_path / "sp").glob("spool-*.jsonl"))[-1]
    with seg.open("ab") as fh:
        fh.write(b'{"id": "tor')
    sp = Spool(tmp_path / "sp").open()
    got: list[str] = []
    assert sp.replay(lambda recs: got.extend(r["id"] for r in recs), batch_size=2) == 5
    assert got == ["0", "1", "2", "3", "4"] and sp.depth == 0
    with pytest.raises(SpoolLockedError):
        Spool(tmp_path / "sp").open()
    sp.close()


def test_failed_replay_keeps_the_segment(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "sp").open()
    sp.append([{"id": "a"}, {"id": "b"}])

    def boom(_: list) -> None:
        raise ConnectionError("store down")

    with pytest.raises(ConnectionError):
        sp.replay(boom)
    assert sp.depth == 2
    assert [json.loads(line)["id"] for seg in sp.segments() for line in seg.read_text().splitlines()] == ["a", "b"]
    sp.close()


# -- redaction ---------------------------------------------------------------------------------------------

PII_CASE = Case(
    question="What is Jane Doe's email?",
    context=(Passage("crm-1", "Customer Jane Doe, email jane.doe@example.com, phone 212-555-0187."),),
    response="Jane Doe can be reached at jane.doe@example.com [crm-1].",
)


async def test_stored_text_is_redacted_by_default(tmp_path: Path) -> None:
    cfg = config(tmp_path, random_rate=1.0, store_raw_text=False)
    assert ReviewConfig().store_raw_text is False
    start = PII_CASE.response.index("jane.doe@")
    finding = Finding("pii_leak", "leaked jane.doe@example.com", start, start + len("jane.doe@example.com"),
                      evidence={"value": "jane.doe@example.com"})
    s = ReviewSampler(cfg, redactor=None)
    await s.start()
    sid = s.offer(PII_CASE, [verdict("pii_boundary", 0.0, findings=(finding,))], "block")
    await s.stop()
    with ReviewStore(cfg.url) as st:
        sample = st.get_sample(sid)
    blob = json.dumps(sample)
    assert sample["redacted"] is True
    assert "jane.doe@example.com" not in blob and "212-555-0187" not in blob
    assert "<EMAIL_ADDRESS>" in sample["case"]["response"]
    assert sample["verdicts"][0]["findings"][0]["quote"] == "<EMAIL_ADDRESS>"
    spooled = "".join(p.read_text() for p in (tmp_path / "spool").glob("*.jsonl"))
    assert "jane.doe@example.com" not in spooled


async def test_raw_text_only_when_configured(tmp_path: Path) -> None:
    cfg = config(tmp_path, random_rate=1.0, store_raw_text=True)
    s = ReviewSampler(cfg, redactor=None)
    await s.start()
    sid = s.offer(PII_CASE, [verdict("pii_boundary", 0.0)], "block")
    await s.stop()
    with ReviewStore(cfg.url) as st:
        sample = st.get_sample(sid)
    assert sample["redacted"] is False and "jane.doe@example.com" in sample["case"]["response"]


async def test_unpicklable_redactor_runs_in_the_writer_thread(tmp_path: Path) -> None:
    cfg = config(tmp_path, random_rate=1.0, store_raw_text=False)
    s = ReviewSampler(cfg, redactor=lambda text: text.replace("Jane Doe", "<PERSON>"))
    await s.start()
    assert s._worker is None
    sid = s.offer(PII_CASE, [verdict("pii_boundary", 0.0)], "block")
    await s.stop()
    with ReviewStore(cfg.url) as st:
        sample = st.get_sample(sid)
    assert sample["case"]["question"] == "What is <PERSON>'s email?" and sample["redacted"] is True


def test_long_passages_are_clipped_before_storage() -> None:
    from guardrail_server.review.records import MAX_PASSAGE_CHARS, case_record

    rec = case_record(Case(response="r", context=(Passage("p", "x" * (MAX_PASSAGE_CHARS + 500)),)), None)
    assert rec["context"][0]["text"].startswith("x" * MAX_PASSAGE_CHARS)
    assert rec["context"][0]["text"].endswith("[… 500 more characters not stored]")


async def test_stop_leaves_what_it_cannot_write_in_time_for_the_next_start(tmp_path: Path) -> None:
    cfg = config(tmp_path, random_rate=1.0, store_raw_text=False)
    s = ReviewSampler(cfg, redactor=lambda text: slow_upper(text))
    await s.start()
    before = metric("guardrail_review_drops_total", cause="shutdown")
    ids = [s.offer(make_case(i), [verdict("entailment", 0.9)], "allow") for i in range(200)]
    assert all(ids)
    t0 = time.monotonic()
    await s.stop(timeout_s=1.0)
    assert time.monotonic() - t0 < 3.0
    assert metric("guardrail_review_drops_total", cause="shutdown") == before  # acknowledged: never dropped
    with ReviewStore(cfg.url) as st:
        stored = st.sample_ids()
    assert s.counts["deferred"] > 0 and len(stored) + s.counts["deferred"] == 200
    b = ReviewSampler(cfg, redactor=str.upper)  # the next start redacts and stores the rest, once
    await b.start()
    await wait_for(lambda: b.counts["stored"] + b.counts["spooled"] >= s.counts["deferred"])
    await b.stop()
    with ReviewStore(cfg.url) as st:
        assert sorted(st.sample_ids()) == sorted(ids)
        assert st.get_sample(ids[-1])["case"]["question"] == make_case(199).question.upper()
    assert not list((tmp_path / "spool" / "intake").glob("intake-*.jsonl"))


def slow_upper(text: str) -> str:
    time.sleep(0.05)
    return text.upper()


async def test_a_second_process_on_the_same_spool_dir_does_not_fail(tmp_path: Path) -> None:
    held = Spool(tmp_path / "spool").open()  # another process holds the spool directory
    try:
        s = ReviewSampler(config(tmp_path, random_rate=1.0))
        await s.start()
        assert s.spool.dir != held.dir and s.spool.dir.parent == held.dir
        assert s.offer(make_case(), [verdict("entailment", 0.9)], "allow")
        await s.stop()
    finally:
        held.close()


async def test_a_backlog_at_shutdown_goes_to_the_spool_and_comes_back(tmp_path: Path) -> None:
    cfg = config(tmp_path, random_rate=1.0)
    a = ReviewSampler(cfg)
    await a.start()
    ids = [a.offer(make_case(i), [verdict("entailment", 0.9)], "allow") for i in range(5000)]
    await a.stop()
    assert a.counts["dropped"] == 0 and a.counts["stored"] + a.counts["spooled"] + a.counts["replayed"] >= 5000
    b = ReviewSampler(cfg)
    await b.start()
    await b.stop()
    with ReviewStore(cfg.url) as st:
        assert sorted(st.sample_ids()) == sorted(ids)
