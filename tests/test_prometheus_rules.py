"""The alert rules with Debian's promtool (`check rules`, and the unit tests in deploy/prometheus/tests), the rules of
every chart values file, and the committed Grafana dashboard against its generator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"
VALUES = sorted((REPO / "helm" / "guardrail-sidecar" / "ci").glob("*.yaml"))

sys.path.insert(0, str(REPO / "deploy" / "prometheus"))
sys.path.insert(0, str(REPO / "deploy" / "grafana"))
import dashboard  # noqa: E402
from render import dump, render_rules  # noqa: E402

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (`make deploy-deps` installs Debian's prometheus)")

ALERTS = {"GuardrailViolationRateAboveBaseline", "GuardrailCheckErrors", "GuardrailPartialChecks", "GuardrailFailOpen",
          "GuardrailShedding", "GuardrailLatencyHigh", "GuardrailReviewSpoolGrowing", "GuardrailReviewSamplesDropped",
          "GuardrailJudgeAgreementLow", "GuardrailTargetDown", "GuardrailNotScraped"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd)


def test_plain_rules_file_is_rendered_from_the_chart() -> None:
    """deploy/prometheus/alerts.yaml is the chart's default render (`make monitoring` regenerates it)."""
    assert RULES.read_text() == dump(render_rules())


def test_every_alert_the_issue_asks_for_exists() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == ALERTS
    per_invariant = {r["labels"]["baseline_for"] for r in rules if r["alert"] == "GuardrailViolationRateAboveBaseline"}
    assert per_invariant == {"default", "reference_integrity", "entailment", "pii_boundary", "self_consistency"}


@needs_promtool
def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 15 rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests() -> None:
    out = promtool("test", "rules", "tests/alerts_test.yaml", cwd=RULES.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation fails: the unit tests compare values, not just that rules load."""
    broken = (RULES.parent / "tests" / "alerts_test.yaml").read_text().replace("fails 40% of checks", "fails 41% of checks")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.yaml").write_text(broken)
    shutil.copy(RULES, tmp_path / "alerts.yaml")
    out = promtool("test", "rules", "tests/t.yaml", cwd=tmp_path)
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


@needs_promtool
@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_rules_of_each_values_file_pass_promtool(values: Path, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(dump(render_rules([values])))
    out = promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_committed_dashboard_is_what_the_generator_builds() -> None:
    """helm/guardrail-sidecar/dashboards/guardrail-sidecar.json comes from deploy/grafana/dashboard.py (`make
    monitoring`); a hand edit or a stale file fails here."""
    assert dashboard.OUT.read_text() == dashboard.render()
    model = json.loads(dashboard.OUT.read_text())
    assert model["uid"] == "guardrail-sidecar"
    titles = {p["title"] for p in model["panels"] if p["type"] != "row"}
    for needed in ("Violation ratio by invariant", "Decisions per second", "Check call latency", "Model batches",
                   "Shed calls per second", "Fail-open per second", "Judge agreement with human labels",
                   "Judge disagreements per second", "Review queue and spool"):
        assert needed in titles
    assert all(expr for _, expr in dashboard.panel_queries(model))


# The down/absent alerts in each way the guardrail is scraped: the job label each one gives its targets.
SCRAPE_MODES = {
    # ServiceMonitor (standalone): job = the Service's name (release `rules` in render.py)
    "standalone": (["alerts.scrapeJob="], [], "rules-guardrail-sidecar"),
    # PodMonitor (sidecar, in the app's pods): job = <namespace>/<PodMonitor name>
    "sidecar": (["alerts.scrapeJob=", "mode=sidecar"], [], "default/rules-guardrail-sidecar"),
    # a plain Prometheus with the README's scrape config (deploy/prometheus/alerts.yaml)
    "plain": ([], [], "guardrail"),
    # a scrape config of your own, named in the values, narrowed to a namespace
    "custom": (["alerts.scrapeJob=k8s-pods-guardrail"], [{"alerts": {"selector": 'namespace="llm-prod"'}}],
               "k8s-pods-guardrail"),
}


@needs_promtool
@pytest.mark.parametrize("mode", sorted(SCRAPE_MODES))
def test_down_and_absent_alerts_in_every_deployment_mode(mode: str, tmp_path: Path) -> None:
    """Rendered for each deployment mode, evaluated by promtool: a target of the guardrail's job that stops answering
    fires GuardrailTargetDown (another job's does not); no target of that job at all fires GuardrailNotScraped."""
    sets, extra_values, job = SCRAPE_MODES[mode]
    values = []
    for i, v in enumerate(extra_values):
        (tmp_path / f"v{i}.yaml").write_text(yaml.safe_dump(v))
        values.append(tmp_path / f"v{i}.yaml")
    rules = render_rules(values, sets)
    (tmp_path / "rules.yaml").write_text(dump(rules))
    notes = {r["alert"]: r["annotations"] for r in rules["groups"][0]["rules"]}
    down = {**notes["GuardrailTargetDown"],
            "summary": notes["GuardrailTargetDown"]["summary"].replace("{{ $labels.instance }}", "10.0.0.2:9464")}
    absent = notes["GuardrailNotScraped"]
    assert absent["summary"] == f'No guardrail target is scraped (job=~"{job}")'
    ns = {"namespace": "llm-prod"}
    labels = {"job": job, "instance": "10.0.0.2:9464", "pod": "b", **ns}

    def series(metric: str, lab: dict[str, str], values: str) -> dict[str, str]:
        inner = ",".join(f'{k}="{v}"' for k, v in lab.items())
        return {"series": f"{metric}{{{inner}}}", "values": values}

    scoped = {"namespace": "llm-prod"} if extra_values else {}
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": [
            series("up", {**labels, "pod": "a", "instance": "10.0.0.1:9464"}, "1x30"),
            series("up", labels, "1 1 1 0x27"),
            series("up", {"job": "node", "instance": "10.0.0.9:9100", **ns}, "0x30")],
         "alert_rule_test": [
             {"eval_time": "10m", "alertname": "GuardrailTargetDown",
              "exp_alerts": [{"exp_labels": {"severity": "critical", **labels}, "exp_annotations": down}]},
             {"eval_time": "20m", "alertname": "GuardrailNotScraped", "exp_alerts": []}]},
        {"interval": "1m", "input_series": [series("up", {"job": "node", "instance": "10.0.0.9:9100", **ns}, "1x30")],
         "alert_rule_test": [
             {"eval_time": "15m", "alertname": "GuardrailNotScraped",
              "exp_alerts": [{"exp_labels": {"severity": "critical", **scoped}, "exp_annotations": absent}]},
             {"eval_time": "15m", "alertname": "GuardrailTargetDown", "exp_alerts": []}]},
    ]}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(tests))
    out = promtool("test", "rules", "t.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
