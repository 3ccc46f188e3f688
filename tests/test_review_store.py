"""Review store on SQLite and PostgreSQL: migrations, idempotent inserts, queue order, labels and critiques."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from guardrail_server.review import schema
from guardrail_server.review.store import ReviewStore, normalize_url
from tests.review_support import record


def test_url_uses_psycopg3_for_postgres() -> None:
    assert normalize_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrations_create_exactly_the_schema(store: ReviewStore) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "review_alembic_version"})
        assert ctx.get_current_revision() == "0002"
        assert compare_metadata(ctx, schema.metadata) == []


def test_open_twice_is_a_no_op_migration(store_url: str) -> None:
    with ReviewStore(store_url) as a:
        a.insert_samples([record(1)])
    with ReviewStore(store_url) as b:
        assert b.count_samples() == 1


def test_insert_is_idempotent_on_sample_id(store: ReviewStore) -> None:
    recs = [record(i) for i in range(5)]
    assert store.insert_samples(recs[:3]) == 3
    assert store.insert_samples(recs) == 2
    assert store.insert_samples(recs) == 0
    assert store.count_samples() == 5
    assert sorted(store.sample_ids()) == sorted(r["id"] for r in recs)


def test_queue_is_ordered_disagreement_failure_random_skipped_last(store: ReviewStore) -> None:
    rnd, fail, dis, skipped = record(1, reason="random"), record(2, reason="failure"), record(3), record(0)
    dis = record(3, reason="disagreement")
    store.insert_samples([rnd, fail, dis, skipped])
    store.skip(skipped["id"])
    assert [s["id"] for s in store.queue()] == [dis["id"], fail["id"], rnd["id"], skipped["id"]]
    assert [s["id"] for s in store.queue(include_skipped=False)] == [dis["id"], fail["id"], rnd["id"]]
    assert store.progress() == {"pending": 3, "skipped": 1, "labeled": 0, "total": 4}


def test_labels_and_critiques_round_trip(store: ReviewStore) -> None:
    rec = record(7, reason="failure")
    store.insert_samples([rec])
    critique = "Cites doc-1 but the date is wrong — «day 8» is not in the passage.\nSecond line, ünïcode."
    store.save_annotation(rec["id"], "alice", {"entailment": "fail", "reference_integrity": "pass"}, critique)
    store.save_annotation(rec["id"], "bob", {"entailment": "pass"}, "looks fine")
    got = store.get_sample(rec["id"])
    assert got["status"] == "labeled"
    by = {a["reviewer"]: a for a in got["annotations"]}
    assert by["alice"]["critique"] == critique
    assert by["alice"]["labels"] == {"entailment": "fail", "reference_integrity": "pass"}
    assert by["bob"]["labels"] == {"entailment": "pass"}
    # the same reviewer labeling again replaces their annotation; the latest annotation wins when merged
    store.save_annotation(rec["id"], "alice", {"entailment": "fail"}, "changed my mind on citations")
    [merged] = store.labeled_samples()
    assert len(merged["annotations"]) == 2
    assert merged["labels"] == {"entailment": "fail"}
    assert store.queue() == []
    assert store.progress()["labeled"] == 1


def test_bad_label_is_refused(store: ReviewStore) -> None:
    rec = record(1)
    store.insert_samples([rec])
    with pytest.raises(ValueError):
        store.save_annotation(rec["id"], "alice", {"entailment": "maybe"})
    with pytest.raises(KeyError):
        store.save_annotation("00000000-0000-0000-0000-000000000000", "alice", {"entailment": "pass"})


def test_sample_keeps_case_verdicts_and_reasons(store: ReviewStore) -> None:
    rec = record(3, reason="failure")
    store.insert_samples([rec])
    got = store.get_sample(rec["id"])
    assert got["case"] == rec["case"]
    assert got["verdicts"] == rec["verdicts"]
    assert got["reasons"] == ["failure"] and got["priority"] == 1 and got["in_random_slice"] is False
