"""Append-only on-disk spool for samples the store could not take (down or too slow).

JSON Lines in numbered segment files; every append is flushed and fsynced before it counts. Replay reads the
segments in order and deletes one only after the store committed all of it, so a crash mid-replay re-sends
at most one segment, which the store ignores (inserts are idempotent on sample id). A torn last line from a
crash mid-append is skipped. One process owns a spool directory (an flock guards it).

The directory is 0700 and its files 0600: the spool holds redacted records (raw text only where the deployment
chose `store_raw_text`), and the intake journal beside it (`intake.py`) holds samples before redaction.
An append first checks that the open segment is still the file at its path: a spool directory deleted under a
running server would otherwise swallow appends into an unlinked inode. Then the directory is made again and a
new segment opened (what the deleted segments held is gone with them, and counted by the caller's metrics).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "spool-"
SEGMENT_SUFFIX = ".jsonl"


class SpoolLockedError(RuntimeError):
    """Another process owns this spool directory."""


class Spool:
    def __init__(self, directory: str | os.PathLike[str], *, max_segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        self.max_segment_bytes = max_segment_bytes
        self._fh: BinaryIO | None = None
        self._current: Path | None = None
        self._lock_fh: BinaryIO | None = None
        self.depth = 0

    def open(self) -> "Spool":
        make_private_dir(self.dir)
        self._lock_fh = open(self.dir / ".lock", "ab")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise SpoolLockedError(f"spool directory {self.dir} is in use by another process") from None
        self.depth = sum(1 for seg in self.segments() for _ in _lines(seg))
        return self

    def close(self) -> None:
        self._close_segment()
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"))

    def _next_segment(self) -> Path:
        existing = self.segments()
        seq = int(existing[-1].name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]) + 1 if existing else 1
        return self.dir / f"{SEGMENT_PREFIX}{seq:012d}{SEGMENT_SUFFIX}"

    def _close_segment(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._current = None

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Durably appends records (one fsync per call, so callers batch)."""
        if not records:
            return
        if self._fh is not None and not same_file(self._current, self._fh.fileno()):
            log.error("review spool: segment %s vanished (directory deleted?); starting a new one", self._current)
            self._close_segment()
            self._relock()
        if self._fh is None or self._fh.tell() >= self.max_segment_bytes:
            self._close_segment()
            make_private_dir(self.dir)
            self._current = self._next_segment()
            self._fh = os.fdopen(os.open(self._current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
            _fsync_dir(self.dir)
        data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.depth += len(records)

    def _relock(self) -> None:
        """The directory was deleted: make it again and hold its lock anew (the old lock file went with it)."""
        make_private_dir(self.dir)
        if self._lock_fh is not None:
            self._lock_fh.close()
        self._lock_fh = open(self.dir / ".lock", "ab")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.error("review spool: %s was taken over by another process", self.dir)
        self.depth = sum(1 for seg in self.segments() for _ in _lines(seg))

    def replay(
        self, insert: Callable[[list[dict[str, Any]]], object], *, batch_size: int = 200, budget: int | None = None
    ) -> int:
        """Sends spooled records to `insert`, oldest first, whole segments until `budget` records are done.
        Stops at the first failure (re-raised), leaving what was not committed on disk. Returns records replayed."""
        self._close_segment()
        done = 0
        for seg in self.segments():
            if budget is not None and done >= budget:
                break
            records = list(_lines(seg))
            for i in range(0, len(records), batch_size):
                insert(records[i:i + batch_size])
            seg.unlink()
            _fsync_dir(self.dir)
            self.depth = max(0, self.depth - len(records))
            done += len(records)
        return done


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:
                log.warning("review spool: skipping unreadable line %d of %s (torn write?)", n, path.name)


def make_private_dir(path: Path) -> None:
    """mkdir -p with mode 0700 for the last level (umask-proof), and 0700 enforced if it already existed."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        pass


def same_file(path: Path | None, fd: int) -> bool:
    """Whether `path` still names the open file `fd` (not deleted, not replaced)."""
    if path is None:
        return False
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
