"""Event-loop lag, measured and attributed in production.

A 50 ms ticker on the loop measures how late it runs (`guardrail_event_loop_lag_seconds`): the promise that no request
blocks the loop is checked where it matters, not only in tests. A histogram says *that* the loop stalled, not *why*,
so a watchdog thread also snapshots the loop thread's stack while a tick is overdue by more than `stall_s` and logs it
as an `event_loop_stall` event — code locations only (file, line, function; never locals), so no caller data.
A garbage collection holds the GIL, watchdog included, so collections are timed on their own
(`guardrail_gc_pause_seconds`, and a `gc_pause` event past `stall_s`).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from types import FrameType

from guardrail_server import metrics
from guardrail_server.logs import get_logger

log = get_logger(__name__)
STACK_DEPTH = 16


def _import_relative(path: str, roots: list[str]) -> str:
    """`asyncio/events.py`, `guardrail_server/servicer.py`: the path below the longest root holding it."""
    for root in roots:
        if path.startswith(root):
            return path[len(root):]
    return path


def code_locations(frame: FrameType | None, depth: int = STACK_DEPTH) -> list[str]:
    """The innermost `depth` frames as `path:line function`, innermost first; paths relative to sys.path."""
    roots = sorted((p.rstrip("/") + "/" for p in sys.path if p), key=len, reverse=True)
    out: list[str] = []
    while frame is not None and len(out) < depth:
        out.append(f"{_import_relative(frame.f_code.co_filename, roots)}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return out


class GcPauses:
    """Times every collection (`guardrail_gc_pause_seconds{generation}`); one longer than `stall_s` is logged as
    `gc_pause`. A collection holds the GIL, so the watchdog below cannot see it: this is how such a stall is named."""

    def __init__(self, stall_s: float = 0.1) -> None:
        self.stall_s = stall_s
        self._started = 0.0
        for generation in ("0", "1", "2"):
            metrics.GC_PAUSE.labels(generation)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        metrics.GC_PAUSE.labels(str(info.get("generation", 2))).observe(took)
        if took > self.stall_s:
            log.warning("gc_pause", generation=info.get("generation"), ms=round(took * 1000),
                        collected=info.get("collected"))

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class LoopWatch:
    def __init__(self, interval_s: float = 0.05, stall_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.stall_s = stall_s
        self._beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Future[None] | None = None
        self.gc_pauses = GcPauses(stall_s)

    def start(self) -> None:
        """On the running loop: starts the ticker task and the watchdog thread."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.ensure_future(self._tick())
        self._thread = threading.Thread(target=self._watchdog, name="loop-watchdog", daemon=True)
        self._thread.start()
        self.gc_pauses.install()

    def stop(self) -> None:
        self._stop.set()
        self.gc_pauses.uninstall()
        if self._task is not None:
            self._task.cancel()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval_s
            self._beat = time.monotonic() + self.interval_s
            await asyncio.sleep(self.interval_s)
            metrics.LOOP_LAG.observe(max(0.0, loop.time() - expected))

    def _watchdog(self) -> None:
        reported_beat = 0.0
        while not self._stop.wait(self.interval_s / 2):
            beat = self._beat
            late = time.monotonic() - beat
            if late <= self.stall_s or beat == reported_beat:
                continue
            reported_beat = beat  # one event per stall: the stack while it was overdue
            stack = code_locations(sys._current_frames().get(self._loop_thread))
            log.warning("event_loop_stall", late_ms=round(late * 1000), stack=stack)
