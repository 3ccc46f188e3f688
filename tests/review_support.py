"""Shared fixtures and builders for the review tests (no tests here).

`store_url` yields a fresh store URL for SQLite (a temp file) and for the real PostgreSQL on 127.0.0.1:5432
(a schema of its own per test, chosen through `search_path`, dropped afterwards).
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from guardrail_server.review.store import ReviewStore
from guardrail_invariants.types import Case, Finding, Outcome, Passage, Verdict

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def pg_url(schema: str, host: str = "127.0.0.1", port: int = 5432, app: str = "") -> str:
    url = f"postgresql://postgres@{host}:{port}/test?options=-csearch_path%3D{schema}"
    return url + (f"&application_name={app}" if app else "")


def new_schema() -> str:
    schema = "review_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # noqa: ANN001
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.db'}"
        return
    schema = new_schema()
    try:
        yield pg_url(schema)
    finally:
        drop_schema(schema)


@pytest.fixture
def store(store_url: str) -> Iterator[ReviewStore]:
    with ReviewStore(store_url) as s:
        yield s


def make_case(i: int = 0, *, response: str | None = None) -> Case:
    return Case(
        question=f"What does clause {i} of the contract say?",
        context=(Passage("doc-1", f"Clause {i}: the tenant pays rent on day {i % 28 + 1}."),),
        response=response if response is not None else f"Clause {i} says rent is due on day {i % 28 + 1} [doc-1].",
        request_id=f"req-{i}",
        app="test",
    )


def verdict(name: str, score: float, threshold: float = 0.5, *, findings: tuple[Finding, ...] = ()) -> Verdict:
    return Verdict(
        invariant=name,
        outcome=Outcome.PASS if score >= threshold else Outcome.FAIL,
        score=score,
        threshold=threshold,
        findings=findings,
        judge="test-judge",
    )


def record(i: int, *, reason: str = "random", labels: bool = False) -> dict:
    """A store record as the sampler would write it."""
    from guardrail_server.review.records import Pending, to_record

    reasons = {"disagreement": ("disagreement",), "failure": ("failure",), "random": ("random",)}[reason]
    v = [verdict("entailment", 0.2 if reason != "random" else 0.9)]
    return to_record(Pending(str(uuid.uuid4()), 1_700_000_000.0 + i, make_case(i), v, "allow", reasons), None)


class TcpProxy:
    """A real TCP forwarder in front of PostgreSQL, so a test can take the database away and bring it back
    (connections refused while down; open ones cut)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
