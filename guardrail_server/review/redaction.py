"""Redaction off the server's interpreter, in a child process that dies with the server.

Presidio + spaCy cost tens of milliseconds per text and hold the GIL while they run, so redacting in a thread
of the server process would delay the event loop (and so every Check's p99). One child process turns raw
records into redacted ones; the writer thread waits on a pipe, without the GIL. Identical texts (retrieved
passages repeat a lot) are redacted once: an LRU cache in the child.

The child is a `guardrail_server.childproc` helper (plain subprocess, framed pickles on stdin/stdout, a parent
watchdog): it dies with the server even on SIGKILL, and no multiprocessing resource_tracker is left behind.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from guardrail_server.childproc import protocol_streams, read_frame, start_child, watch_parent, write_frame
from guardrail_server.review.records import (
    RecordOptions,
    Redactor,
    accepts_keyword,
    default_redactor,
    redact_record,
)

log = logging.getLogger(__name__)

CACHE_SIZE = 2048
CACHE_MAX_CHARS = 8000
TIMEOUT_S = 120.0


def cached(redact: Redactor) -> Redactor:
    """Memoises short texts; long ones are rare and would make the cache a memory hog. Keeps the redactor's
    `keep_public_places` keyword when it has one."""
    memo = functools.lru_cache(maxsize=CACHE_SIZE)(redact)
    if accepts_keyword(redact, "keep_public_places"):
        def run_keeping(text: str, keep_public_places: bool = False) -> str:
            if len(text) > CACHE_MAX_CHARS:
                return redact(text, keep_public_places=keep_public_places)  # type: ignore[call-arg]
            return memo(text, keep_public_places=keep_public_places)  # type: ignore[call-arg]

        return run_keeping

    def run(text: str) -> str:
        return memo(text) if len(text) <= CACHE_MAX_CHARS else redact(text)

    return run


def picklable(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - lambdas, closures, bound methods of odd objects
        return False
    return True


class WorkerError(RuntimeError):
    """The redaction worker died, hung or answered garbage."""


class RedactionWorker:
    """One child process that redacts batches of raw records (see the module docstring)."""

    def __init__(self, redact: Redactor | None, options: RecordOptions | None = None, *,
                 entities: Sequence[str] | None = None) -> None:
        self._redact = redact
        self._options = options or RecordOptions()
        self._entities = tuple(entities) if entities is not None else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Starts the child and waits until it has loaded and warmed the redactor."""
        self._proc = start_child("guardrail_server.review.redaction")
        try:
            self._call({"redact": self._redact, "entities": self._entities, "options": self._options})
        except Exception:
            self.stop()
            raise

    def records(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """Redacted records, one per raw record (None where that record could not be serialised)."""
        if self._proc is None:
            raise WorkerError("redaction worker not started")
        try:
            return self._call(list(batch))
        except WorkerError:
            log.error("review: redaction worker died or hung; restarting it")
            self.stop()
            self.start()
            return self._call(list(batch))

    def _call(self, request: Any) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            write_frame(proc.stdin, request)
            reply = read_frame(proc.stdout, deadline=time.monotonic() + TIMEOUT_S)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, struct.error) as exc:
            raise WorkerError(f"redaction worker failed ({type(exc).__name__})") from None
        if isinstance(reply, dict) and reply.get("error"):
            raise WorkerError(reply["error"])
        return reply

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: the child exits
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


# -- the child ---------------------------------------------------------------------------------------------


def _child(parent: int) -> int:
    watch_parent(parent)
    proto_in, proto_out = protocol_streams()
    try:
        os.nice(19)  # background work: yield the cores to the server's checks
    except OSError:
        pass
    redact: Redactor | None = None
    options = RecordOptions()

    def reply(obj: Any) -> None:
        write_frame(proto_out, obj)

    while True:
        try:
            request = read_frame(proto_in)
        except EOFError:
            return 0  # the server closed the pipe (stopped or died)
        if isinstance(request, dict):  # init
            try:
                options = request["options"]
                redact = cached(request["redact"] or default_redactor(request.get("entities")))
                redact("warm up the redactor: Jane Doe, jane@example.com")
                reply("ready")
            except Exception as exc:  # noqa: BLE001 - reported to the server, which redacts in-thread instead
                reply({"error": f"redactor failed to load ({type(exc).__name__})"})
            continue
        out: list[dict[str, Any] | None] = []
        for raw in request:
            try:
                out.append(redact_record(raw, redact, options))
            except Exception as exc:  # noqa: BLE001 - one bad record must not sink the batch
                logging.getLogger(__name__).error("review: could not redact a sample (%s)", type(exc).__name__)
                out.append(None)
        reply(out)


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1])))
