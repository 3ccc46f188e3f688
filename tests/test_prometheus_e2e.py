"""End to end on real parts: Debian's Prometheus scrapes a real `guardrail serve` every second and evaluates the
chart's alert rules (rendered from the same template with short windows and `for:` durations); traffic through the
public client makes an invariant fail, errors, partial checks, fail-opens, shed and slow calls happen, a second server's
review store cannot be written (spool and drops), every alert goes pending then firing (read over Prometheus's HTTP
API), and every panel query of the committed Grafana dashboard returns data.

The one stand-in is self_consistency's LLM judge (tests/fake_openai.py, the suite's only fake): its endpoint fails
(HTTP 503) on the short answer, so that check errors, and answers slowly on a long one, so that check runs out of time
and says `partial` at its soft deadline with the rest of the response unchecked."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from guardrail_server.client import AsyncGuardrailClient, GuardrailClient
from guardrail_server.config import Config
from tests.conftest import free_port
from tests.fake_openai import FakeOpenAI, items_in, judgement
from tests.test_deploy_metrics import wait_serving

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "deploy" / "prometheus"))
sys.path.insert(0, str(REPO / "deploy" / "grafana"))
import dashboard  # noqa: E402
from render import dump, render_rules  # noqa: E402

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing (`make deploy-deps` installs Debian's)")

# Production windows and `for:` durations are minutes; the same rules with seconds, through the chart's values.
SHORT = {"alerts": {"window": "20s", "minRate": 0.01, **{k: {"for": "4s"} for k in (
    "violation", "errors", "partial", "failOpen", "shed", "judgeAgreement")},
    "latency": {"for": "4s", "p99Seconds": 0.02},  # below what a check with entailment takes: fires on any traffic
    "reviewSpool": {"for": "4s", "depth": 3}}}
DASHBOARD_VARS = {"$__rate_interval": "20s", "$namespace": ".*", "$app": ".*"}
PASSAGE = ("The Eiffel Tower is 330 metres tall. It opened in 1889 for the World's Fair in Paris. "
           "Gustave Eiffel's company designed and built it.")
BAD = "The Eiffel Tower is 330 metres tall [4]."  # entailed, but [4] cites no passage: reference_integrity fails
GOOD = "The Eiffel Tower is 330 metres tall [1]."  # passes both
SAMPLES = ["The tower is 330 metres tall.", "It is 300 m tall and opened in 1889."]
# self_consistency's judge answers this one, slowly: 64 sentences at 8 per step and 0.5 s per step do not fit in its
# 4 s budget, so the check stops at its soft deadline (partial, reason deadline); GOOD's judge call fails (an error)
LONG = " ".join(f"Visitors climbed flight {i} of the tower's stairs on its first morning." for i in range(1, 65))
SELF_CONSISTENCY_TIMEOUT_S = 4.0
JUDGE_DELAY_S = 0.5


def context(n: int) -> list[dict[str, str]]:
    """The retrieved passage of call `n`: the same facts on a page that differs per call, as retrieval gives. Each call
    brings new model inputs, so the NLI model really runs (the workers' model-output cache answers a repeated input
    without a model batch)."""
    return [{"id": "1", "text": f"{PASSAGE} This page was retrieved for request {n}."}]


def judge_reply(body: dict[str, Any]) -> Any:
    """The LLM judge endpoint: slow but well-formed on LONG's sentences, HTTP 503 (overloaded) on anything else."""
    if "Visitors climbed flight" in body["messages"][-1]["content"]:
        time.sleep(JUDGE_DELAY_S)
        return judgement(items_in(body), 0.9, 0.05, 0.05)
    return 503, None


def store_down(server: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The second server: its review store cannot be written (the database's directory is a file), so every sample
    goes to the spool; a review queue of one drops samples under a burst."""
    (tmp / "not-a-directory").write_text("")
    return {
        "server": server,
        "review": {"enabled": True, "url": f"sqlite:///{tmp / 'not-a-directory' / 'review.db'}",
                   "spool_dir": str(tmp / "spool-down"), "random_rate": 1.0, "queue_size": 1},
        "workers": {"mode": "inline", "count": 1},
        "admission": {"max_queue": 32, "max_queue_wait_s": 10},  # the bursts are about the review queue: none shed
        "invariants": {"reference_integrity": {}, "entailment": {"enabled": False},
                       "self_consistency": {"enabled": False}, "pii_boundary": {"enabled": False}},
    }


def capacity(config: dict[str, Any]) -> dict[str, Any]:
    """One check at a time, so a burst of calls is refused. The keys moved from server.max_concurrent_checks to
    workers/admission (admission control); this follows whichever the server has."""
    if "admission" in Config.model_fields:
        config["workers"] = {"mode": "inline", "count": 1}
        config["admission"] = {"max_queue": 0}
    else:
        config["server"]["max_concurrent_checks"] = 1
    return config


@pytest.fixture(scope="module")
def judge_endpoint() -> Iterator[FakeOpenAI]:
    """self_consistency's LLM judge endpoint (`judge_reply`)."""
    with FakeOpenAI(judge_reply) as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, judge_endpoint: FakeOpenAI) -> Iterator[dict[str, Any]]:
    """A real server (review store seeded with a calibration run below the agreement target; self_consistency judged
    by an LLM endpoint that fails or is slow) and a real Prometheus scraping it every second with the chart's rules."""
    tmp = tmp_path_factory.mktemp("e2e")
    port, metrics_port, prom_port = free_port(), free_port(), free_port()
    down_port, down_metrics_port = free_port(), free_port()
    store_url = f"sqlite:///{tmp / 'review.db'}"
    from guardrail_server.review.store import ReviewStore

    with ReviewStore(store_url).open() as store:  # a judge that agrees with people on 80% < the 90% target
        store.save_calibration("anchors:e2e@1", None, {}, [{
            "invariant": "entailment", "n_train": 20, "n_test": 10, "threshold_before": 0.85, "threshold": 0.85,
            "accuracy": 0.8, "accuracy_low": 0.5, "accuracy_high": 0.95, "kappa": 0.6, "kappa_low": 0.3,
            "kappa_high": 0.9, "confusion": {}, "agrees": False}])
    config = capacity({
        "server": {"host": "127.0.0.1", "port": port, "metrics_port": metrics_port, "grace_period_s": 2},
        "review": {"enabled": True, "url": store_url, "spool_dir": str(tmp / "spool"), "random_rate": 1.0},
        "metrics": {"apps": ["checkout"]},
        "invariants": {
            "reference_integrity": {},
            "entailment": {"timeout_s": 30},
            # its judge fails (an error, let through by on_error: fail_open) or is too slow for the whole response
            # (partial, the unchecked rest let through by on_partial: allow)
            "self_consistency": {
                "timeout_s": SELF_CONSISTENCY_TIMEOUT_S, "on_error": "fail_open", "on_partial": "allow",
                "options": {"judges": [{"kind": "llm", "endpoint": judge_endpoint.url, "model": "fake-judge",
                                        "family": "fake-llm", "retries": 0, "timeout_s": 10}]}},
            "pii_boundary": {"enabled": False},
        },
    })
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp / "down.yaml").write_text(yaml.safe_dump(store_down(
        {"host": "127.0.0.1", "port": down_port, "metrics_port": down_metrics_port, "grace_period_s": 2}, tmp)))
    (tmp / "short.yaml").write_text(yaml.safe_dump(SHORT))  # a values file: `--set` would turn 0.01 into a string
    (tmp / "rules.yaml").write_text(dump(render_rules([tmp / "short.yaml"])))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yaml")],
        "scrape_configs": [{"job_name": "guardrail", "static_configs": [
            {"targets": [f"127.0.0.1:{metrics_port}", f"127.0.0.1:{down_metrics_port}"]}]}],
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "guardrail_server.cli", "serve", "--config", str(tmp / "config.yaml")],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "wb"))
        procs.append(server)
        down = subprocess.Popen(
            [sys.executable, "-m", "guardrail_server.cli", "serve", "--config", str(tmp / "down.yaml")],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "down.log", "wb"))
        procs.append(down)
        prom = subprocess.Popen([str(PROMETHEUS), f"--config.file={tmp / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "wb"))
        procs.append(prom)
        wait_serving(f"127.0.0.1:{port}", server, timeout=300)
        wait_serving(f"127.0.0.1:{down_port}", down, timeout=300)
        api = f"http://127.0.0.1:{prom_port}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{api}/-/ready").status_code != 200:
            assert prom.poll() is None and time.monotonic() < deadline, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        yield {"target": f"127.0.0.1:{port}", "down_target": f"127.0.0.1:{down_port}",
               "down_instance": f"127.0.0.1:{down_metrics_port}", "api": api, "tmp": tmp}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def query(api: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{api}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def alerts(api: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{api}/api/v1/alerts", timeout=10).json()["data"]["alerts"])


class Traffic(threading.Thread):
    """Calls the server until stopped: failing citations from `checkout`, passing ones from an unlisted app, calls
    with samples (self_consistency: the short one's judge fails, an error let through; the long one runs out of time,
    partial, its unchecked rest let through), and every other round a burst that is shed. Each call's passage differs
    (`context`)."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.stop = threading.Event()
        self.refused = 0
        self.calls = 0
        self.error: BaseException | None = None  # a failed call ends the thread; the tests report it

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the tests, not lost in a thread
            self.error = exc

    def _run(self) -> None:
        with GuardrailClient(self.target, timeout=30) as guard:
            i = 0
            while not self.stop.is_set():
                guard.check(BAD, context=context(self.calls), app="checkout")
                guard.check(GOOD, context=context(self.calls + 1), app="someone-else")
                guard.check(GOOD, context=context(self.calls + 2), samples=SAMPLES, app="checkout")
                guard.check(LONG, samples=SAMPLES, invariants=["self_consistency"], app="checkout")
                self.calls += 4
                if i % 2 == 0:
                    self.refused += asyncio.run(self.burst())
                i += 1
                time.sleep(0.2)

    async def burst(self) -> int:
        first, self.calls = self.calls, self.calls + 6
        async with AsyncGuardrailClient(self.target, timeout=30) as client:
            results = await asyncio.gather(*(client.check(BAD, context=context(first + k)) for k in range(6)),
                                           return_exceptions=True)
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused), refused
        return len(refused)


_TRAFFIC: list[Traffic] = []


def traffic_error() -> BaseException | None:
    return _TRAFFIC[0].error if _TRAFFIC else None


@pytest.fixture(scope="module")
def traffic(stack: dict[str, Any]) -> Iterator[Traffic]:
    t = Traffic(stack["target"])
    _TRAFFIC.append(t)
    t.start()
    try:
        yield t
    finally:
        t.stop.set()
        t.join(60)


def wait_for_alert(api: str, name: str, timeout: float = 90, **labels: str) -> list[str]:
    """The states the alert went through (polled twice a second) until it fires."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for a in alerts(api):
            if a["labels"]["alertname"] == name and labels.items() <= a["labels"].items():
                if not seen or seen[-1] != a["state"]:
                    seen.append(a["state"])
        if seen and seen[-1] == "firing":
            return seen
        assert traffic_error() is None, f"traffic stopped: {traffic_error()!r}"
        time.sleep(0.5)
    raise AssertionError(f"{name} {labels} never fired; states seen: {seen}; alerts: {alerts(api)}")


def test_violation_alert_goes_pending_then_firing(stack: dict[str, Any], traffic: Traffic) -> None:
    states = wait_for_alert(stack["api"], "GuardrailViolationRateAboveBaseline", invariant="reference_integrity")
    assert states[0] == "pending" and states[-1] == "firing", states
    (firing,) = [a for a in alerts(stack["api"]) if a["labels"]["alertname"] == "GuardrailViolationRateAboveBaseline"
                 and a["labels"]["invariant"] == "reference_integrity"]
    assert firing["labels"]["baseline_for"] == "reference_integrity"
    assert float(firing["value"]) > 0.075  # 1.5 x the 0.05 baseline
    assert "reference_integrity fails" in firing["annotations"]["summary"]
    # the passing invariant stays quiet
    assert not [a for a in alerts(stack["api"]) if a["labels"]["alertname"] == "GuardrailViolationRateAboveBaseline"
                and a["labels"].get("invariant") == "entailment"]


def increases(api: str, metric: str, by: str, **labels: str) -> dict[str, float]:
    """How much `metric` (with these labels) grew over the last minute, by the label `by`."""
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {r["metric"].get(by, ""): float(r["value"][1])
            for r in query(api, f"sum by ({by}) (increase({metric}{{{sel}}}[1m]))")}


def test_error_partial_fail_open_shed_latency_and_judge_agreement_alerts_fire(
        stack: dict[str, Any], traffic: Traffic) -> None:
    api = stack["api"]
    wait_for_alert(api, "GuardrailCheckErrors", invariant="self_consistency")  # its judge endpoint fails
    wait_for_alert(api, "GuardrailPartialChecks", invariant="self_consistency")  # it runs out of time on LONG
    wait_for_alert(api, "GuardrailFailOpen", invariant="self_consistency")  # both let through (fail_open, allow)
    wait_for_alert(api, "GuardrailShedding")
    wait_for_alert(api, "GuardrailLatencyHigh")
    wait_for_alert(api, "GuardrailJudgeAgreementLow", invariant="entailment")
    # what the alerts stand on: self_consistency both errs and stops at its soft deadline (not only timeouts), and
    # both kinds of unchecked response were let through
    outcomes = increases(api, "guardrail_checks_total", "outcome", invariant="self_consistency")
    assert outcomes.get("error", 0) > 0 and outcomes.get("partial", 0) > 0, outcomes
    partial = increases(api, "guardrail_partial_checks_total", "reason", invariant="self_consistency")
    assert partial.get("deadline", 0) > 0, partial
    reasons = increases(api, "guardrail_fail_open_total", "reason", invariant="self_consistency")
    assert reasons.get("exception", 0) > 0 and reasons.get("partial", 0) > 0, reasons
    # the invariants that neither error, leave text unchecked nor fail open stay quiet
    quiet = [a for a in alerts(api) if a["labels"]["alertname"] in (
        "GuardrailFailOpen", "GuardrailCheckErrors", "GuardrailPartialChecks")
        and a["labels"].get("invariant") != "self_consistency"]
    assert quiet == []


def test_review_store_down_spool_and_drop_alerts_fire(stack: dict[str, Any]) -> None:
    """Bursts of sampled calls at the server whose store cannot be written: the spool grows past its depth and the
    one-slot review queue overflows; both alerts fire for that server only."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def bursts() -> None:
        async def burst() -> None:
            async with AsyncGuardrailClient(stack["down_target"], timeout=30) as client:
                await asyncio.gather(*(client.check(BAD if i % 2 else GOOD, context=context(i)) for i in range(20)))
        try:
            while not stop.is_set():
                asyncio.run(burst())
                time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    thread = threading.Thread(target=bursts, daemon=True)
    thread.start()
    try:
        wait_for_alert(stack["api"], "GuardrailReviewSpoolGrowing", instance=stack["down_instance"])
        wait_for_alert(stack["api"], "GuardrailReviewSamplesDropped", cause="queue_full")
    finally:
        stop.set()
        thread.join(60)
    assert failures == []
    spooled = query(stack["api"], "guardrail_review_spool_depth")
    by_instance = {r["metric"]["instance"]: float(r["value"][1]) for r in spooled}
    assert by_instance[stack["down_instance"]] > 3
    assert [v for i, v in by_instance.items() if i != stack["down_instance"]] == [0.0]  # the healthy store spools nothing


def test_every_dashboard_panel_query_returns_data(stack: dict[str, Any], traffic: Traffic) -> None:
    """Each query of the committed dashboard, with Grafana's variables at their defaults, returns at least one
    series; the panels this traffic drives return a positive value."""
    model = json.loads(dashboard.OUT.read_text())
    api = stack["api"]
    deadline = time.monotonic() + 60
    while traffic.refused == 0 and time.monotonic() < deadline:  # at least one burst was shed
        time.sleep(0.5)
    assert traffic.error is None and traffic.refused > 0, traffic.error
    time.sleep(3)  # a few scrapes after the burst
    empty, values = [], {}
    for title, expr in dashboard.panel_queries(model):
        for var, value in DASHBOARD_VARS.items():
            expr = expr.replace(var, value)
        result = query(api, expr)
        if not result:
            empty.append(title)
        for r in result:
            v = float(r["value"][1])
            if not math.isnan(v):
                values[title] = max(values.get(title, 0.0), v)
    print("\npanel maxima:", json.dumps(values, indent=1, sort_keys=True))
    assert not empty, f"panels with no data: {empty}"
    driven = ["Violation ratio by invariant", "Violation ratio by calling app", "Check outcomes per second",
              "Decisions per second", "Error ratio by invariant", "Unchecked ratio by invariant",
              "Fail-open per second", "Pass thresholds", "Check call latency", "Invariant latency p99",
              "Shed calls per second", "Model batches", "Judge agreement with human labels",
              "Review samples per second", "Build and model"]
    assert [t for t in driven if values.get(t, 0.0) <= 0] == []
    by_app = {r["metric"]["app"]: float(r["value"][1]) for r in query(
        api, 'sum by (app) (rate(guardrail_checks_total{invariant="reference_integrity",outcome="fail"}[20s]))')}
    assert by_app["checkout"] > 0 and by_app.get("other", 0.0) == 0.0  # the unlisted app only passed
    assert {r["metric"]["app"] for r in query(api, "guardrail_checks_total")} <= {"checkout", "other", "unset"}
