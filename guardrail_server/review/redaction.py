"""Redaction off the server's interpreter, in a child process that dies with the server.

Presidio + spaCy cost tens of milliseconds per text and hold the GIL while they run, so redacting in a thread
of the server process would delay the event loop (and so every Check's p99). One child process turns raw
records into redacted ones; the writer thread waits on a pipe, without the GIL. Identical texts (retrieved
passages repeat a lot) are redacted once: an LRU cache in the child.

Why a plain `subprocess` with a pipe and not `multiprocessing`: a spawn-context pool also starts
multiprocessing's resource_tracker, and its worker holds both ends of its call queue, so after SIGKILL of the
server neither ever saw EOF — both were found alive (~210 MB) 19 minutes later (issue 13). Here:

* the child reads requests from its stdin, which only the server holds open: the server's death closes it;
* a watchdog thread in the child polls `getppid()` every 0.2 s and exits the moment the child is re-parented,
  so the child dies within a fraction of a second of its parent even while it is busy redacting. (Not
  `prctl(PR_SET_PDEATHSIG)`: that fires when the *thread* that forked the child exits, and the worker is
  started and restarted from short-lived threads — the child would be killed under a live server.)
* no other helper process exists.

Protocol on the child's stdin/stdout: 8-byte big-endian length + pickle. The child's fd 1 is pointed at
stderr right away, so a library printing to stdout cannot corrupt the protocol.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from guardrail_server.review.records import RecordOptions, Redactor, default_redactor, redact_record

log = logging.getLogger(__name__)

CACHE_SIZE = 2048
CACHE_MAX_CHARS = 8000
TIMEOUT_S = 120.0
WATCHDOG_INTERVAL_S = 0.2
_HEADER = struct.Struct(">Q")


def cached(redact: Redactor) -> Redactor:
    """Memoises short texts; long ones are rare and would make the cache a memory hog."""
    memo = functools.lru_cache(maxsize=CACHE_SIZE)(redact)

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
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "guardrail_server.review.redaction", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )
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
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            proc.stdin.write(_HEADER.pack(len(payload)) + payload)
            proc.stdin.flush()
            deadline = time.monotonic() + TIMEOUT_S
            (size,) = _HEADER.unpack(_read(proc.stdout, _HEADER.size, deadline))
            reply = pickle.loads(_read(proc.stdout, size, deadline))
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


def _read(stream: BinaryIO, n: int, deadline: float) -> bytes:
    fd = stream.fileno()
    chunks, got = [], 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise OSError("timed out waiting for the redaction worker")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("redaction worker closed its pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# -- the child ---------------------------------------------------------------------------------------------


def _watchdog(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(WATCHDOG_INTERVAL_S)


def _child(parent: int) -> int:
    if os.getppid() != parent:  # the parent died before we got here
        return 0
    threading.Thread(target=_watchdog, args=(parent,), name="parent-watchdog", daemon=True).start()
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    proto_in = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    try:
        os.nice(19)  # background work: yield the cores to the server's checks
    except OSError:
        pass
    redact: Redactor | None = None
    options = RecordOptions()

    def reply(obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.write(_HEADER.pack(len(data)) + data)
        proto_out.flush()

    while True:
        header = proto_in.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return 0  # EOF: the server closed the pipe (stopped or died)
        (size,) = _HEADER.unpack(header)
        request = pickle.loads(proto_in.read(size))
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
