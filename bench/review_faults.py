"""Samples lost or doubled under review-store faults, counted against what Check replies acknowledged.

    python -m bench.review_faults [--rounds 3] [--n 60] [--redact]

Each round starts a real `guardrail serve` (a test invariant, `review.random_rate: 1`), sends N Checks and
collects every `review_sample_id` the replies carry, injects one fault, then lets a fresh sampler start on the
same store and spool (which replays/recovers what the server left) and compares the store with the replies:

* sigkill       SIGKILL of the server right after the last reply
* shm           the SQLite `-shm` file truncated and made read-only while the server runs (WAL: SIGBUS)
* store-dir     the store's directory deleted while the server runs, then N more Checks
* store-file    the store's database file deleted while the server runs, then N more Checks

lost = acknowledged ids missing from the store at the end; doubled = rows sharing an id (the primary key makes
this 0 by construction) plus ids stored that no reply acknowledged *and* no fault explains (reported, not an
error: a sample whose journal write failed is stored but unacknowledged). For store-dir/store-file the samples
acknowledged *before* the deletion are gone with the deleted file (the operator deleted them); only those
acknowledged after it count. Uses only APIs that predate the intake journal, so it also runs on older trees
(PYTHONPATH=<tree>) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from guardrail_server.client import AsyncGuardrailClient, wait_until_serving
from guardrail_server.config import ReviewConfig
from guardrail_server.review.sampler import ReviewSampler

LAUNCHER = textwrap.dedent(
    """
    import sys
    from guardrail_invariants import registry
    from tests.helpers_invariants import TEST_INVARIANTS
    registry.REGISTRY.update(TEST_INVARIANTS)
    from guardrail_server.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)
import guardrail_server  # noqa: E402 - the tree under test (PYTHONPATH), whose server is launched

ROOT = Path(guardrail_server.__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stored(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("SELECT id FROM review_samples")]
    except sqlite3.Error:
        return []


async def checks(target: str, n: int, tag: str) -> list[str]:
    async with AsyncGuardrailClient(target, timeout=60) as client:
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> str:
            async with sem:
                r = await client.check(f"{tag} {i}: Jane Roe's phone is 212-555-0100, forbidden.", question="q",
                                       request_id=f"{tag}-{i}")
                return r.review_sample_id

        return [x for x in await asyncio.gather(*(one(i) for i in range(n))) if x]


async def round_(fault: str, n: int, redact: bool, tmp: Path) -> dict[str, object]:
    db = tmp / "store" / "review.db"
    review = {"enabled": True, "url": f"sqlite:///{db}", "spool_dir": str(tmp / "spool"), "random_rate": 1.0,
              "queue_size": 10_000, "store_raw_text": not redact}
    port = free_port()
    cfg = tmp / "cfg.yaml"
    cfg.write_text(json.dumps({"server": {"port": port, "metrics_port": None, "grace_period_s": 2},
                               "review": review, "invariants": {"test_keyword": {}}}))
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "serve", "--config", str(cfg)], cwd=ROOT,
                            env={**os.environ}, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))
    target = f"127.0.0.1:{port}"
    counted: list[str] = []
    died = None
    try:
        await wait_until_serving(target, 120)
        first = await checks(target, n, "a")
        if fault == "sigkill":
            proc.send_signal(signal.SIGKILL)
            counted = first
        else:
            deadline = time.monotonic() + 30
            while len(stored(db)) < len(first) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if fault == "shm":
                shm = db.with_name(db.name + "-shm")
                if shm.exists():
                    os.truncate(shm, 0)
                else:
                    shm.touch()
                os.chmod(shm, 0o444)
                subprocess.run(["chattr", "+i", str(shm)], capture_output=True)
                counted = first
            elif fault == "store-dir":
                shutil.rmtree(db.parent)
            elif fault == "store-file":
                db.unlink()
            try:
                second = await checks(target, n, "b")
            except Exception as exc:  # noqa: BLE001 - the server died under the fault
                second = []
                died = type(exc).__name__
            counted = counted + second
            await asyncio.sleep(2)
            proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if fault == "shm":
            subprocess.run(["chattr", "-i", str(db.with_name(db.name + "-shm"))], capture_output=True)
    exit_code = proc.returncode
    # next start on the same store and spool: replay / recovery
    s = ReviewSampler(ReviewConfig(**review))
    await s.start()
    await asyncio.sleep(1.0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (s.spool.depth or not s._queue.empty()
                                           or getattr(s, "_recovered", None) or getattr(getattr(s, "intake", None),
                                                                                       "depth", 0)):
        await asyncio.sleep(0.2)
    await s.stop()
    rows = stored(db)
    return {"fault": fault, "acknowledged": len(counted), "lost": len(set(counted) - set(rows)),
            "doubled": len(rows) - len(set(rows)), "server_exit": exit_code, "died": died}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--redact", action="store_true", help="real Presidio redaction (slower; a bigger backlog)")
    ap.add_argument("--faults", default="sigkill,shm,store-dir,store-file")
    args = ap.parse_args()
    for fault in args.faults.split(","):
        totals = {"acknowledged": 0, "lost": 0, "doubled": 0}
        exits = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="review-faults-") as d:
                r = await round_(fault, args.n, args.redact, Path(d))
            for k in totals:
                totals[k] += int(r[k])  # type: ignore[call-overload]
            exits.append(r["server_exit"])
        print(f"{fault:<11} rounds {args.rounds}  acknowledged {totals['acknowledged']:>4}  lost {totals['lost']:>4}  "
              f"doubled {totals['doubled']}  server exit codes {exits}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
