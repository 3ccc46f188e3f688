"""The review store: SQLite file by default, PostgreSQL by URL; schema managed by Alembic.

All methods are synchronous (SQLAlchemy Core); the sampler calls them from its writer thread and the CLI and
web page call them directly. Inserting samples is idempotent on the sample id, which is what lets the spool
replay after a crash without doubling anything.

SQLite runs in rollback-journal mode (`journal_mode=DELETE`) with memory mapping off (`mmap_size=0`), never
WAL: WAL keeps its index in a memory-mapped `-shm` file, and a `-shm` truncated or made unwritable under a
running process turns the next access into SIGBUS, which kills the whole server (issue 13: 3 of 3 runs). With
plain reads and writes every such fault is an ordinary exception the sampler can spool around. The price is
that a reader (the review page) and the writer take turns on the file; both transactions are short.

A SQLite store whose file is deleted or replaced while open would keep "committing" into the unlinked inode:
every write checks the path still names the file that was opened (device and inode, before and after the
commit) and raises `StoreGoneError` otherwise, so the sampler counts an error and spools instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.dialects import postgresql, sqlite

from guardrail_server.review import schema as t

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "review_alembic_version"  # migrations/env.py's (that module runs inside Alembic only)
_PG_LOCK_KEY = 0x6775617264  # advisory lock so concurrent processes migrate one at a time
LABELS = ("pass", "fail")


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` use psycopg 3; everything else is passed to SQLAlchemy as is."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def utc(dt: datetime | str | None) -> datetime | None:
    """SQLite hands back naive datetimes; the store only ever writes UTC, so naive means UTC."""
    if dt is None:
        return None
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


class StoreGoneError(OSError):
    """The SQLite file was deleted or replaced while open: what was "committed" went to a dead inode."""


class ReviewStore:
    """One review database. `open()` creates the engine and migrates to the latest schema."""

    def __init__(self, url: str, *, write_timeout_s: float = 5.0) -> None:
        self.url = normalize_url(url)
        self.write_timeout_s = write_timeout_s
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the SQLite file when opened

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a file-backed SQLite store, else None."""
        url = sa.make_url(self.url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database).expanduser()

    @property
    def dialect(self) -> str:
        return sa.make_url(self.url).get_backend_name()

    def exists(self) -> bool:
        """Whether the store has been created (its schema migrated), without creating anything: the SQLite file is
        there and not empty, or the PostgreSQL database holds the migrations' version table. `open()` creates a missing store,
        which read-only commands must not do (issue 23: a wrong working directory silently made a new, empty one)."""
        url = sa.make_url(self.url)
        if url.get_backend_name() == "sqlite":
            path = self.sqlite_path
            return path is not None and path.is_file() and path.stat().st_size > 0
        engine = self._create_engine()
        try:
            with engine.connect() as conn:
                return sa.inspect(conn).has_table(VERSION_TABLE)
        finally:
            engine.dispose()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            raise RuntimeError("review store is not open")
        return self._engine

    def open(self) -> "ReviewStore":
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
                try:
                    self.migrate()
                    path = self.sqlite_path
                    if path is not None:
                        st = os.stat(path)
                        self._identity = (st.st_dev, st.st_ino)
                except Exception:
                    self._engine.dispose()
                    self._engine = None
                    raise
        return self

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
                self._identity = None

    def check_alive(self) -> None:
        """Raises StoreGoneError (and closes the store, so the next `open()` starts afresh) when the SQLite file
        is no longer the one opened: deleted, its directory removed, or replaced. No-op for other backends."""
        path = self.sqlite_path
        if path is None or self._identity is None:
            return
        try:
            st = os.stat(path)
            same = (st.st_dev, st.st_ino) == self._identity
        except OSError:
            same = False
        if not same:
            self.close()
            raise StoreGoneError(f"review store file {path} was deleted or replaced while open")

    def __enter__(self) -> "ReviewStore":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_engine(self) -> sa.Engine:
        url = sa.make_url(self.url)
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                _create_private(Path(url.database).expanduser())
            engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": self.write_timeout_s}
            )

            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA mmap_size=0")  # no memory-mapped I/O: a file fault is an error, not SIGBUS
                if url.database and url.database != ":memory:":
                    # not WAL: its -shm index is memory-mapped (see the module docstring)
                    mode = cur.execute("PRAGMA journal_mode=DELETE").fetchone()
                    if mode and str(mode[0]).lower() == "wal":
                        cur.close()
                        raise sa.exc.OperationalError(
                            "PRAGMA journal_mode=DELETE", {}, Exception("store is in WAL mode and busy; retry")
                        )
                cur.close()

            return engine
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = max(1, int(round(self.write_timeout_s)))
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4, connect_args=connect_args)
        if url.get_backend_name() == "postgresql":
            timeout_ms = int(self.write_timeout_s * 1000)

            @sa.event.listens_for(engine, "connect")
            def _pg_timeouts(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute(f"SET statement_timeout = {timeout_ms}")
                dbapi_conn.commit()

        return engine

    def migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    # -- samples -------------------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table))

    def insert_samples(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Inserts records from `records.to_record`; ids already present are ignored. Returns rows inserted."""
        if not records:
            return 0
        rows = [
            {
                "id": r["id"],
                "created_at": utc(r["created_at"]),
                "request_id": r.get("request_id", ""),
                "app": r.get("app", ""),
                "decision": r.get("decision", ""),
                "reason": r["reason"],
                "reasons": r["reasons"],
                "priority": r["priority"],
                "in_random_slice": bool(r["in_random_slice"]),
                "status": r.get("status", "pending"),
                "redacted": bool(r["redacted"]),
                "case": r["case"],
                "verdicts": r["verdicts"],
                "disagreements": r.get("disagreements", []),
                "sealed": r.get("sealed"),
            }
            for r in records
        ]
        stmt = self._insert(t.samples).on_conflict_do_nothing(index_elements=["id"]).returning(t.samples.c.id)
        self.check_alive()
        with self.engine.begin() as conn:
            inserted = len(conn.execute(stmt, rows).all())
        self.check_alive()  # deleted mid-commit: the caller spools these again (idempotent on id)
        return inserted

    def count_samples(self, *, reason: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(t.samples)
        if reason:
            q = q.where(t.samples.c.reason == reason)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def sample_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(t.samples.c.id).order_by(t.samples.c.created_at))]

    def get_sample(self, sample_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.samples).where(t.samples.c.id == sample_id)).mappings().first()
            if row is None:
                return None
            sample = _sample(row)
            sample["annotations"] = self._annotations(conn, [sample_id]).get(sample_id, [])
        return sample

    def queue(self, *, limit: int = 50, include_skipped: bool = True) -> list[dict[str, Any]]:
        """Unlabeled samples by priority: disagreements, then violations, then random; skipped ones last."""
        statuses = ["pending", "skipped"] if include_skipped else ["pending"]
        q = (
            sa.select(t.samples)
            .where(t.samples.c.status.in_(statuses))
            .order_by(
                sa.case((t.samples.c.status == "pending", 0), else_=1),
                t.samples.c.priority,
                t.samples.c.created_at,
                t.samples.c.id,
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_sample(r) for r in conn.execute(q).mappings()]

    def progress(self) -> dict[str, int]:
        q = sa.select(t.samples.c.status, sa.func.count()).group_by(t.samples.c.status)
        with self.engine.connect() as conn:
            counts = {status: int(n) for status, n in conn.execute(q)}
        counts["total"] = sum(counts.values())
        for key in ("pending", "labeled", "skipped"):
            counts.setdefault(key, 0)
        return counts

    def skip(self, sample_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.samples.update()
                .where(t.samples.c.id == sample_id, t.samples.c.status == "pending")
                .values(status="skipped")
            )

    # -- reviewers (the web page's sign-in) ----------------------------------------------------------------

    def set_user(self, name: str, password_hash: str) -> None:
        """Adds a reviewer or replaces their password hash (and enables them)."""
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(t.users.c.name).where(t.users.c.name == name)).first()
            if exists:
                conn.execute(t.users.update().where(t.users.c.name == name)
                             .values(password_hash=password_hash, disabled=False))
            else:
                conn.execute(t.users.insert().values(name=name, password_hash=password_hash, created_at=now(),
                                                     disabled=False))

    def user_hash(self, name: str) -> str | None:
        """The password hash of an enabled reviewer, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.users.c.password_hash).where(
                t.users.c.name == name, t.users.c.disabled.is_(False))).first()
        return row[0] if row else None

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [{"name": r["name"], "disabled": bool(r["disabled"]), "created_at": utc(r["created_at"]).isoformat()}
                    for r in conn.execute(sa.select(t.users).order_by(t.users.c.name)).mappings()]

    def disable_user(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(t.users.update().where(t.users.c.name == name).values(disabled=True)).rowcount > 0

    # -- labels and critiques ---------------------------------------------------------------------------

    def save_annotation(
        self, sample_id: str, reviewer: str, labels: Mapping[str, str], critique: str = ""
    ) -> int:
        """One reviewer's labels (invariant -> pass|fail) and critique for a sample; replaces their earlier one."""
        for inv, label in labels.items():
            if label not in LABELS:
                raise ValueError(f"label for {inv!r} must be one of {LABELS}, got {label!r}")
        reviewer = (reviewer or "anonymous")[:128]
        stamp = now()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(t.samples.c.id).where(t.samples.c.id == sample_id)).first() is None:
                raise KeyError(f"no sample {sample_id!r}")
            existing = conn.execute(
                sa.select(t.annotations.c.id).where(
                    t.annotations.c.sample_id == sample_id, t.annotations.c.reviewer == reviewer
                )
            ).scalar()
            if existing is None:
                existing = conn.execute(
                    t.annotations.insert().values(
                        sample_id=sample_id, reviewer=reviewer, critique=critique, created_at=stamp, updated_at=stamp
                    )
                ).inserted_primary_key[0]
            else:
                conn.execute(
                    t.annotations.update()
                    .where(t.annotations.c.id == existing)
                    .values(critique=critique, updated_at=stamp)
                )
                conn.execute(t.labels.delete().where(t.labels.c.annotation_id == existing))
            if labels:
                conn.execute(
                    t.labels.insert(),
                    [{"annotation_id": existing, "invariant": inv, "label": lab} for inv, lab in labels.items()],
                )
            conn.execute(t.samples.update().where(t.samples.c.id == sample_id).values(status="labeled"))
        return int(existing)

    def _annotations(self, conn: sa.Connection, sample_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if not sample_ids:
            return out
        rows = conn.execute(
            sa.select(t.annotations)
            .where(t.annotations.c.sample_id.in_(list(sample_ids)))
            .order_by(t.annotations.c.updated_at, t.annotations.c.id)
        ).mappings().all()
        ids = [r["id"] for r in rows]
        labs: dict[int, dict[str, str]] = {}
        if ids:
            for lr in conn.execute(sa.select(t.labels).where(t.labels.c.annotation_id.in_(ids))).mappings():
                labs.setdefault(lr["annotation_id"], {})[lr["invariant"]] = lr["label"]
        for r in rows:
            out.setdefault(r["sample_id"], []).append(
                {
                    "reviewer": r["reviewer"],
                    "critique": r["critique"],
                    "labels": labs.get(r["id"], {}),
                    "updated_at": utc(r["updated_at"]).isoformat(),
                }
            )
        return out

    def labeled_samples(self, sample_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Labeled samples with `labels` merged (latest annotation wins per invariant) and all critiques."""
        q = sa.select(t.samples).where(t.samples.c.status == "labeled").order_by(t.samples.c.created_at, t.samples.c.id)
        if sample_ids is not None:
            q = q.where(t.samples.c.id.in_(list(sample_ids)))
        with self.engine.connect() as conn:
            samples = [_sample(r) for r in conn.execute(q).mappings()]
            notes = self._annotations(conn, [s["id"] for s in samples])
        for s in samples:
            s["annotations"] = notes.get(s["id"], [])
            merged: dict[str, str] = {}
            for a in s["annotations"]:
                merged.update(a["labels"])
            s["labels"] = merged
        return samples

    # -- anchor sets ------------------------------------------------------------------------------------

    def create_anchor_set(self, name: str, sample_ids: Sequence[str], description: str = "") -> dict[str, Any]:
        """Freezes a new version of the named set; versions are never edited afterwards."""
        if not sample_ids:
            raise ValueError("an anchor set needs at least one case")
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY + 1})
            version = int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(t.anchor_sets.c.version), 0)).where(
                        t.anchor_sets.c.name == name
                    )
                ).scalar_one()
            ) + 1
            set_id = conn.execute(
                t.anchor_sets.insert().values(name=name, version=version, created_at=now(), description=description)
            ).inserted_primary_key[0]
            conn.execute(
                t.anchor_items.insert(),
                [{"set_id": set_id, "sample_id": sid, "position": i} for i, sid in enumerate(sample_ids)],
            )
        return {"id": int(set_id), "name": name, "version": version, "size": len(sample_ids)}

    def anchor_sets(self) -> list[dict[str, Any]]:
        q = (
            sa.select(t.anchor_sets, sa.func.count(t.anchor_items.c.sample_id).label("size"))
            .join(t.anchor_items, t.anchor_items.c.set_id == t.anchor_sets.c.id, isouter=True)
            .group_by(t.anchor_sets.c.id)
            .order_by(t.anchor_sets.c.name, t.anchor_sets.c.version)
        )
        with self.engine.connect() as conn:
            return [
                {**dict(r), "created_at": utc(r["created_at"]).isoformat(), "size": int(r["size"])}
                for r in conn.execute(q).mappings()
            ]

    def anchor_set(self, name: str = "default", version: int | None = None) -> dict[str, Any] | None:
        """The named set at `version` (latest when None), with its ordered sample ids."""
        q = sa.select(t.anchor_sets).where(t.anchor_sets.c.name == name)
        q = q.where(t.anchor_sets.c.version == version) if version else q.order_by(t.anchor_sets.c.version.desc())
        with self.engine.connect() as conn:
            row = conn.execute(q.limit(1)).mappings().first()
            if row is None:
                return None
            ids = [
                r[0]
                for r in conn.execute(
                    sa.select(t.anchor_items.c.sample_id)
                    .where(t.anchor_items.c.set_id == row["id"])
                    .order_by(t.anchor_items.c.position)
                )
            ]
        return {**dict(row), "created_at": utc(row["created_at"]).isoformat(), "sample_ids": ids}

    # -- calibration runs -------------------------------------------------------------------------------

    def save_calibration(
        self, source: str, anchor_set_id: int | None, params: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> int:
        with self.engine.begin() as conn:
            run_id = conn.execute(
                t.calibration_runs.insert().values(
                    created_at=now(), source=source[:128], anchor_set_id=anchor_set_id, params=dict(params)
                )
            ).inserted_primary_key[0]
            if results:
                cols = {c.name for c in t.calibration_results.c} - {"run_id"}
                conn.execute(
                    t.calibration_results.insert(),
                    [{"run_id": run_id, **{k: v for k, v in r.items() if k in cols}} for r in results],
                )
        return int(run_id)

    def calibration_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs newest first, each with its per-invariant results."""
        q = sa.select(t.calibration_runs).order_by(t.calibration_runs.c.created_at.desc(), t.calibration_runs.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            runs = [{**dict(r), "created_at": utc(r["created_at"]).isoformat()} for r in conn.execute(q).mappings()]
            ids = [r["id"] for r in runs]
            results: dict[int, list[dict[str, Any]]] = {}
            if ids:
                rq = (
                    sa.select(t.calibration_results)
                    .where(t.calibration_results.c.run_id.in_(ids))
                    .order_by(t.calibration_results.c.invariant)
                )
                for r in conn.execute(rq).mappings():
                    results.setdefault(r["run_id"], []).append(dict(r))
        for run in runs:
            run["results"] = results.get(run["id"], [])
        return runs

    # -- review rounds (recalibration) ------------------------------------------------------------------

    def recent_sample_ids(
        self, since: datetime, until: datetime, *, random_slice_only: bool = True, exclude_labeled: bool = False
    ) -> list[str]:
        q = sa.select(t.samples.c.id).where(t.samples.c.created_at >= since, t.samples.c.created_at < until)
        if random_slice_only:
            q = q.where(t.samples.c.in_random_slice.is_(True))
        if exclude_labeled:
            q = q.where(t.samples.c.status != "labeled")
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q.order_by(t.samples.c.created_at, t.samples.c.id))]

    def create_round(
        self,
        kind: str,
        anchor_set_id: int | None,
        window_start: datetime,
        window_end: datetime,
        requested: int,
        sample_ids: Sequence[str],
    ) -> int:
        with self.engine.begin() as conn:
            round_id = conn.execute(
                t.rounds.insert().values(
                    created_at=now(), kind=kind, anchor_set_id=anchor_set_id,
                    window_start=window_start, window_end=window_end, requested=requested,
                )
            ).inserted_primary_key[0]
            if sample_ids:
                conn.execute(t.round_items.insert(), [{"round_id": round_id, "sample_id": s} for s in sample_ids])
                # Queued for review again even if skipped before; a labeled one keeps its labels.
                conn.execute(
                    t.samples.update()
                    .where(t.samples.c.id.in_(list(sample_ids)), t.samples.c.status == "skipped")
                    .values(status="pending")
                )
        return int(round_id)

    def rounds(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Rounds oldest first, each with its sample ids."""
        q = sa.select(t.rounds).order_by(t.rounds.c.created_at, t.rounds.c.id)
        if kind:
            q = q.where(t.rounds.c.kind == kind)
        with self.engine.connect() as conn:
            rounds = [dict(r) for r in conn.execute(q).mappings()]
            items: dict[int, list[str]] = {}
            for rid, sid in conn.execute(sa.select(t.round_items.c.round_id, t.round_items.c.sample_id)):
                items.setdefault(rid, []).append(sid)
        for r in rounds:
            for key in ("created_at", "window_start", "window_end"):
                r[key] = utc(r[key])
            r["sample_ids"] = items.get(r["id"], [])
        return rounds


def _sample(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["created_at"] = utc(out["created_at"]).isoformat()
    out["reasons"] = [r for r in str(out["reasons"]).split(",") if r]
    return out


def sample_to_record(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of the store's row mapping: a record `insert_samples` accepts (used by anchor import)."""
    keys = ("id", "created_at", "request_id", "app", "decision", "reason", "priority", "in_random_slice",
            "redacted", "case", "verdicts", "disagreements", "sealed")
    rec = {k: sample[k] for k in keys if k in sample}
    rec["reasons"] = ",".join(sample["reasons"]) if isinstance(sample["reasons"], list) else sample["reasons"]
    return rec


def _create_private(path: Path) -> None:
    """A new SQLite store file is created 0600 before SQLite opens it (SQLite would make it 0644 under the usual
    umask, and its journal files take the database's mode): it holds reviewers' password hashes and the samples."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # e.g. a read-only directory: SQLite reports it when it opens the file
    os.close(fd)
