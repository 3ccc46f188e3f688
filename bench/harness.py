"""A real `guardrail serve` subprocess for the benches and their test slices, and what they measure about it.

Why one module: `bench.fuzz`, `bench.load` and their slices in `make test` must start the server, scrape its
/metrics, probe health, read RSS and stop it the same way, so a figure in a report and an assertion in a test mean
the same thing. The server runs as in production — its own process, the CLI, its own check workers — with the test
invariants registered (`tests.helpers_invariants`; unused unless a config enables them).

    python -m bench.harness probe --target 127.0.0.1:PORT [--interval 0.5]   # the health prober (its own process)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

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
REAL_INVARIANTS = ("reference_integrity", "entailment", "pii_boundary", "self_consistency")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank); NaN for no values, so an empty column never looks like a fast one."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def only_invariants(names: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """An `invariants` config value that runs exactly `names` (the defaults it does not name are switched off)."""
    return {**{n: {"enabled": False} for n in REAL_INVARIANTS}, **{k: dict(v) for k, v in names.items()}}


# ------------------------------------------------------------------------------------------------ /metrics


def scrape(port: int, timeout: float = 10.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's /metrics: {(sample name, sorted labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name` over every series whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, val) in ls for k, val in labels.items()))


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def loop_stalls_over(samples: Samples, seconds: float = 0.1) -> float:
    """Ticks of the server's 50 ms loop ticker that ran more than `seconds` late (`guardrail_event_loop_lag_seconds`:
    count minus the `le` bucket at `seconds`; `seconds` must be a bucket bound)."""
    count = total(samples, "guardrail_event_loop_lag_seconds_count")
    within = total(samples, "guardrail_event_loop_lag_seconds_bucket", le=_le(seconds))
    return count - within


def loop_lag_max_bucket(before: Samples, after: Samples) -> str:
    """The smallest bucket bound that holds every tick observed between the two scrapes ("<=0.05", ">10")."""
    bounds = sorted({float(dict(ls)["le"]) for (n, ls) in after if n == "guardrail_event_loop_lag_seconds_bucket"})
    count = delta(before, after, "guardrail_event_loop_lag_seconds_count")
    for b in bounds:
        if math.isinf(b):
            break
        if delta(before, after, "guardrail_event_loop_lag_seconds_bucket", le=_le(b)) >= count:
            return f"<={b:g}s"
    finite = [b for b in bounds if not math.isinf(b)]
    return f">{finite[-1]:g}s" if finite else "?"


def _le(seconds: float) -> str:
    return repr(float(seconds))


# ------------------------------------------------------------------------------------------------ processes


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Live children of `pid` (zombies — killed, not yet reaped — hold no memory and are left out)."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and not fields.get("State", "").strip().startswith("Z"):
            out.append(int(status.parent.name))
    return out


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie is dead, waiting only to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int, *, reaped_children: bool = True) -> float:
    """User + system CPU seconds of `pid` from /proc/<pid>/stat (utime, stime; with `reaped_children` also cutime,
    cstime: children it has waited for, e.g. check workers replaced after a timeout). 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after the ")" of comm: state is fields[0], so utime (field 14 of stat) is fields[11]
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped_children else 0)
    return ticks / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and of its live children (the server, its check workers and redaction worker)."""
    return sum(cpu_by_role(pid).values())


def cpu_by_role(pid: int) -> dict[str, float]:
    """CPU seconds of a `guardrail serve` process tree by role: `server` (its own process: gRPC, the event loop,
    admission, review sampling; plus children it reaped), `workers` (live check workers), `redaction` (the review
    redaction worker), `other` children."""
    out = {"server": cpu_seconds(pid), "workers": 0.0, "redaction": 0.0, "other": 0.0}
    for child in children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        role = ("workers" if b"guardrail_server.workers" in cmd else
                "redaction" if b"redaction" in cmd else "other")
        out[role] += cpu_seconds(child)
    return out


def own_cpu_seconds() -> float:
    """This process's CPU seconds, every thread (the load generator: its event loop and gRPC's threads)."""
    t = os.times()
    return t.user + t.system


@dataclass
class Rss:
    server_mb: float
    workers_mb: list[float]

    @property
    def total_mb(self) -> float:
        return self.server_mb + sum(self.workers_mb)

    def __str__(self) -> str:
        kids = "+".join(f"{w:.0f}" for w in self.workers_mb)
        return f"{self.total_mb:.0f} MB (server {self.server_mb:.0f}, children {kids or '-'})"


@dataclass
class StopReport:
    exit_code: int | None
    seconds: float
    grace_s: float

    @property
    def within_grace(self) -> bool:
        return self.exit_code is not None and self.seconds <= self.grace_s


@dataclass
class ServerProcess:
    """`guardrail serve` in a subprocess, on free ports, its JSON log in a file; a context manager.

    `config` is a mapping merged over the defaults like a config file; `sets` are `--set key=value` flags (applied
    last, as an operator would). Review store and spool go to a temporary directory."""

    config: Mapping[str, Any] = field(default_factory=dict)
    sets: Sequence[str] = ()
    start_timeout_s: float = 300.0
    nice: int = 0
    port: int = 0
    metrics_port: int = 0
    workdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.log"

    def start(self) -> ServerProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="guardrail-bench-")
        self.workdir = Path(self._tmp.name)
        self.port, self.metrics_port = free_port(), free_port()
        cfg = _merge({"review": {"url": f"sqlite:///{self.workdir / 'review.db'}",
                                 "spool_dir": str(self.workdir / "spool")}}, self.config)
        cfg = _merge(cfg, {"server": {"port": self.port, "metrics_port": self.metrics_port, "host": "127.0.0.1"}})
        path = self.workdir / "config.json"
        path.write_text(json.dumps(cfg))
        argv = [sys.executable, "-c", LAUNCHER, "serve", "--config", str(path)]
        for s in self.sets:
            argv += ["--set", s]
        if self.nice:
            argv = ["nice", "-n", str(self.nice), *argv]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "", "HF_HUB_OFFLINE": "1"}
        log = self.log_path.open("wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            asyncio.run(self._wait_serving())
        except BaseException:
            self.kill()
            raise
        self.started_s = time.monotonic() - started
        return self

    async def _wait_serving(self) -> None:
        from guardrail_server.client import AsyncGuardrailClient

        deadline = time.monotonic() + self.start_timeout_s
        async with AsyncGuardrailClient(self.target) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise RuntimeError(f"server exited with {self.proc.returncode if self.proc else '?'} while "
                                       f"starting:\n{self.log_tail()}")
                with contextlib.suppress(Exception):
                    if await client.health(timeout=1.0):
                        return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"server not SERVING within {self.start_timeout_s:.0f}s:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> Rss:
        return Rss(rss_bytes(self.pid) / 2**20, [rss_bytes(c) / 2**20 for c in sorted(children(self.pid))])

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds the server has used so far, by role (`cpu_by_role`): its own, its live children's and those of
        children it reaped."""
        return cpu_by_role(self.pid)

    def metrics(self) -> Samples:
        return scrape(self.metrics_port)

    def events(self) -> list[dict[str, Any]]:
        """The server's JSON log lines (other lines, e.g. a library's warning, skipped)."""
        out = []
        with self.log_path.open("rb") as f:
            for raw in f:
                if raw.startswith(b"{"):
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(raw))
        return out

    def count_events(self, *names: str) -> dict[str, int]:
        counts = dict.fromkeys(names, 0)
        with self.log_path.open("rb") as f:
            for raw in f:
                for name in names:
                    if f'"event": "{name}"'.encode() in raw or f'"event":"{name}"'.encode() in raw:
                        counts[name] += 1
        return counts

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def sigterm(self, timeout_s: float = 60.0) -> StopReport:
        """SIGTERM, then the seconds until the process exited (the grace period is the promise)."""
        assert self.proc is not None
        grace = float(_get(self.config, "server.grace_period_s", 10.0))
        for s in self.sets:
            if s.startswith("server.grace_period_s="):
                grace = float(s.split("=", 1)[1])
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        return StopReport(code, time.monotonic() - t0, grace)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def close(self) -> None:
        """Stops the server and removes its directory; GUARDRAIL_BENCH_KEEP_LOG=FILE keeps its log for a post-mortem
        (e.g. with PYTHONASYNCIODEBUG=1, asyncio names every callback that held the loop over 100 ms)."""
        self.kill()
        keep = os.environ.get("GUARDRAIL_BENCH_KEEP_LOG")
        if keep and self.workdir is not None and self.log_path.exists():
            shutil.copyfile(self.log_path, keep)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _get(tree: Mapping[str, Any], dotted: str, default: Any) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


# ------------------------------------------------------------------------------------------------ health prober


@dataclass
class ProbeReport:
    latencies_s: list[float]
    failures: int

    @property
    def max_s(self) -> float:
        return max(self.latencies_s, default=math.nan)

    @property
    def p99_s(self) -> float:
        return pct(self.latencies_s, 0.99)

    def over(self, seconds: float) -> int:
        return sum(1 for x in self.latencies_s if x > seconds) + self.failures

    def __str__(self) -> str:
        return (f"{len(self.latencies_s)} probes, p99 {self.p99_s * 1e3:.1f} ms, max {self.max_s * 1e3:.1f} ms, "
                f"{self.failures} failed")


class HealthProber:
    """gRPC health every `interval` s from a process of its own (so the load generator's own CPU use and GIL do not
    show up as server stalls); a probe that takes over `timeout` s is a failure. A context manager."""

    def __init__(self, target: str, interval: float = 0.5, timeout: float = 5.0) -> None:
        self.argv = [sys.executable, "-m", "bench.harness", "probe", "--target", target, "--interval", str(interval),
                     "--timeout", str(timeout)]
        self.proc: subprocess.Popen[str] | None = None
        self.report: ProbeReport | None = None

    def __enter__(self) -> HealthProber:
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "ready": the first probe has been sent
        return self

    def stop(self) -> ProbeReport:
        if self.report is None:
            assert self.proc is not None
            out, _ = self.proc.communicate(timeout=30)  # closes its stdin: the prober's signal to finish and report
            data = json.loads(out.strip().splitlines()[-1])
            self.report = ProbeReport(data["latencies"], data["failures"])
        return self.report

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()


def _probe_main(target: str, interval: float, timeout: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    latencies: list[float] = []
    failures = 0
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        first = True
        next_at = time.monotonic()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
                latencies.append(time.monotonic() - t0)
            except grpc.RpcError:
                failures += 1
            if first:
                print("ready", flush=True)
                first = False
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


# ------------------------------------------------------------------------------------------------ tables


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def machine_line() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench.harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe", help="gRPC health every --interval s until stdin closes; prints JSON results")
    p.add_argument("--target", required=True)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args(argv)
    if args.cmd == "probe":
        _probe_main(args.target, args.interval, args.timeout)


if __name__ == "__main__":
    main()
