"""Helper processes of the server: started with `subprocess`, spoken to over their stdin/stdout, dead with the server.

Why not `multiprocessing`: its spawn context starts a resource_tracker process and re-imports the parent's
`__main__` in every child (a user's unguarded script would start again), and its pipes can keep a child alive after
the server is SIGKILLed (issue 13 found such orphans holding ~210 MB 19 minutes later). Here:

* the child reads frames from its stdin, which only the server holds open: the server's death closes it;
* `watch_parent()` in the child polls `getppid()` and exits the moment the child is re-parented, so a child busy in
  C code still dies within a fraction of a second of its parent (not `PR_SET_PDEATHSIG`: it fires when the *thread*
  that started the child exits, and children are started from short-lived threads);
* `protocol_streams()` moves the protocol off fd 1 and points fd 1 at stderr, so a library printing to stdout cannot
  corrupt a frame.

Frames: 8-byte big-endian length + pickle (a private pipe between the server and its own child).
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from typing import Any, BinaryIO

HEADER = struct.Struct(">Q")
WATCHDOG_INTERVAL_S = 0.2


def start_child(module: str, *args: str) -> subprocess.Popen[bytes]:
    """`python -m module <server pid> args...` with pipes on stdin/stdout and this process's import path."""
    from guardrail_server.logs import child_environment

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **child_environment()}
    return subprocess.Popen([sys.executable, "-m", module, str(os.getpid()), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, close_fds=True, env=env)


def write_frame(stream: BinaryIO, obj: Any) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: BinaryIO, deadline: float | None = None) -> Any:
    """One frame; EOFError when the other side is gone, TimeoutError past `deadline` (time.monotonic)."""
    (size,) = HEADER.unpack(_read_exactly(stream, HEADER.size, deadline))
    return pickle.loads(_read_exactly(stream, size, deadline))


def _read_exactly(stream: BinaryIO, n: int, deadline: float | None) -> bytes:
    fd = stream.fileno()
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError("timed out waiting for the child process")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """In the child: (requests in, replies out). fd 1 now goes to stderr and fd 0 to /dev/null, so no library can
    write into or read from the protocol."""
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    from guardrail_server.logs import configure_child_logging

    configure_child_logging()  # the server's logging: every line sanitized and scrubbed, JSON like the server's
    return proto_in, proto_out  # type: ignore[return-value]


def watch_parent(parent_pid: int) -> None:
    """In the child: exit as soon as the server is gone, whatever the child is doing."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_INTERVAL_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
