"""The intake journal: a sample is written here *before* `offer()` returns its id, so a Check reply never claims
a sample that a crash can lose.

Why this shape:

* The reply carries `review_sample_id`; a client may log it and come back for the labels. Before this journal
  the sample lived only in memory until the writer thread had redacted and stored it (tens of milliseconds per
  sample, seconds under a burst), and SIGKILL lost 19 of 19 acknowledged samples.
* `offer()` runs on the event loop, so it cannot fsync (milliseconds, unbounded on a busy disk). It does one
  `write()` of one line to an `O_APPEND` file: once `write()` returns, the bytes are in the kernel's page cache
  and survive the death of the process (SIGKILL, OOM kill, a crash). The writer thread fsyncs the journal in the
  background every ~100 ms (group commit), which covers power loss and kernel panics after that window.
* Redaction (Presidio, 10–100 ms a text) cannot run on the hot path either, so the journal holds samples
  *before* redaction. How that raw text is protected:
    - the journal lives in the spool directory (mode 0700, files 0600): readable only by the server's own user,
      who holds the same text in memory anyway;
    - a line leaves the disk as soon as its sample is redacted and committed to the store or to the (redacted)
      spool — a segment file is deleted when every sample in it is done, normally well under a second;
    - when a review key is configured (`review.key_file` / `GUARDRAIL_REVIEW_KEY`) every line is a Fernet token
      (AES-128-CBC + HMAC-SHA256): keep the key on another volume (a mounted secret) and a copy of the spool
      volume, a backup or a snapshot discloses nothing. Without a key there is nowhere safer than the same disk
      to keep one, so the journal relies on file modes and its short life, and the README says so.
* Restart: segments left by a dead process are read back (torn or undecryptable lines skipped and counted) and
  go through redaction into the store again. Inserts are idempotent on the sample id, so a sample that had
  already been stored before the crash is not doubled.

Segments are numbered `intake-<seq>.jsonl`; a new one starts past `max_segment_bytes` or when the writer has
finished every sample of the current one (so nothing raw lingers at low traffic).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardrail_server.review.spool import make_private_dir, same_file

log = logging.getLogger(__name__)

PREFIX = "intake-"
SUFFIX = ".jsonl"


class IntakeLockedError(OSError):
    """Another live process journals into this directory."""


class IntakeJournal:
    """Append-only raw sample journal; thread-safe `append` (hot path) and `done` (writer)."""

    def __init__(self, directory: str | os.PathLike[str], *, key: bytes | None = None,
                 max_segment_bytes: int = 4 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        self.max_segment_bytes = max_segment_bytes
        self._fernet = None
        if key is not None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(key)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._seq = 0  # sequence number of the open segment
        self._size = 0
        self._outstanding: dict[int, int] = {}  # seq -> samples written but not yet done
        self._dirty = False  # written since the last fsync
        self._dir_dirty = False  # a segment was created since the last directory fsync
        self.unreadable = 0  # lines of leftover segments that could not be read back
        self._lock_fd: int | None = None
        self._leftover: list[int] = []  # seqs of segments written by an earlier process, not yet taken

    # -- start-up ------------------------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        """Called with `_lock` held: creates the directory, takes its flock (one live writer per directory) and
        notes the segments earlier processes left. Raises IntakeLockedError if another process holds it."""
        if self._lock_fd is not None:
            return
        make_private_dir(self.dir)
        fd = os.open(self.dir / ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IntakeLockedError(f"intake journal {self.dir} is in use by another process") from None
        self._lock_fd = fd
        self._leftover = [_seq(p) for p in self.segments()]
        self._seq = max(self._leftover, default=0)

    def open(self) -> "IntakeJournal":
        with self._lock:
            self._ensure_open()
        return self

    def take_leftovers(self) -> list[tuple[int, list[dict[str, Any]]]]:
        """What earlier processes left: [(seq, raw records)], oldest first. The caller hands each record back
        through `done(seq)` once it is stored or spooled (redacted); then the segment is deleted."""
        with self._lock:
            self._ensure_open()
            seqs, self._leftover = self._leftover, []
        out = []
        for seq in seqs:
            path = self._path(seq)
            records = list(self._read(path)) if path.exists() else []
            if records:
                with self._lock:
                    self._outstanding[seq] = self._outstanding.get(seq, 0) + len(records)
                out.append((seq, records))
            else:
                _unlink(path)
        return out

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob(f"{PREFIX}*{SUFFIX}"))

    def _path(self, seq: int) -> Path:
        return self.dir / f"{PREFIX}{seq:012d}{SUFFIX}"

    def _read(self, path: Path) -> Any:
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    if line.startswith(b"{"):
                        yield json.loads(line)
                    elif self._fernet is not None:
                        yield json.loads(self._fernet.decrypt(line))
                    else:
                        raise ValueError("encrypted line and no review key configured")
                except Exception as exc:  # noqa: BLE001 - torn write, wrong key: skip the line, say so
                    self.unreadable += 1
                    log.error("review intake: line %d of %s unreadable (%s); skipped", n, path.name,
                              type(exc).__name__)

    # -- hot path ------------------------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    @property
    def depth(self) -> int:
        with self._lock:
            return sum(self._outstanding.values())

    def append(self, record: Mapping[str, Any]) -> int:
        """Writes one raw record; returns the segment's seq for `done`. Raises OSError when it cannot be written
        (then the sample must not be acknowledged). One `write()`; no fsync."""
        data = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        if self._fernet is not None:
            data = self._fernet.encrypt(data)
        line = data + b"\n"
        with self._lock:
            fd = self._segment_for_append()
            try:
                _write_all(fd, line)
            except OSError:
                self._close_current()  # a torn line must not glue itself to the next one
                raise
            self._size += len(line)
            self._outstanding[self._seq] = self._outstanding.get(self._seq, 0) + 1
            self._dirty = True
            return self._seq

    def _segment_for_append(self) -> int:
        self._ensure_open()
        if self._fd is not None and (self._size >= self.max_segment_bytes
                                     or not same_file(self._path(self._seq), self._fd)):
            if self._size < self.max_segment_bytes:
                log.error("review intake: segment %s vanished (spool directory deleted?); starting a new one",
                          self._path(self._seq).name)
            self._close_current()
        if self._fd is None:
            make_private_dir(self.dir)
            self._seq += 1
            self._fd = os.open(self._path(self._seq), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._size = 0
            self._dir_dirty = True
        return self._fd

    def _close_current(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- writer --------------------------------------------------------------------------------------------

    def done(self, seq: int | None, n: int = 1) -> None:
        """`n` samples of segment `seq` are stored or spooled (redacted); a finished segment is deleted."""
        if seq is None:
            return
        with self._lock:
            left = self._outstanding.get(seq, 0) - n
            if left > 0:
                self._outstanding[seq] = left
                return
            self._outstanding.pop(seq, None)
            if seq == self._seq:
                self._close_current()
            _unlink(self._path(seq))

    def sync(self) -> None:
        """fsyncs what was appended since the last call (and the directory, if a segment was created)."""
        with self._lock:
            if not (self._dirty or self._dir_dirty) or self._fd is None:
                self._dirty = self._dir_dirty = False
                return
            fd = os.dup(self._fd)
            sync_dir, self._dirty, self._dir_dirty = self._dir_dirty, False, False
        try:
            os.fdatasync(fd)
            if sync_dir:
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Closes the open segment; what is still outstanding stays on disk for the next start."""
        try:
            self.sync()
        except OSError as exc:
            log.error("review intake: final fsync failed (%s)", type(exc).__name__)
        with self._lock:
            self._close_current()
            self._outstanding.clear()  # still on disk: the next open reads them back as leftovers
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def remove_if_empty(self) -> bool:
        """Deletes the directory of an adopted journal once nothing is left in it."""
        if self.segments() or self.depth:
            return False
        self.close()
        for name in (".lock",):
            _unlink(self.dir / name)
        try:
            self.dir.rmdir()
        except OSError:
            return False
        return True


def _seq(path: Path) -> int:
    return int(path.name[len(PREFIX):-len(SUFFIX)])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
