#!/usr/bin/env python3
"""The Grafana dashboard as code (grafana-foundation-sdk). `make monitoring` writes it to
helm/guardrail-sidecar/dashboards/guardrail-sidecar.json, which the chart ships as a ConfigMap for Grafana's dashboard
sidecar; tests run every panel's PromQL against a real Prometheus scraping a real server and fail on a panel with no
data, and fail when the committed JSON differs from what this script builds.

Ratios divide by clamp_min(denominator, 1e-9) and every counter series exists at 0 from start-up (the server
pre-creates them), so a quiet service shows 0, not "No data"."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
)

OUT = Path(__file__).resolve().parents[2] / "helm" / "guardrail-sidecar" / "dashboards" / "guardrail-sidecar.json"
UID = "guardrail-sidecar"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
NS = 'namespace=~"$namespace"'
SEL = f'{NS},app=~"$app"'  # for the series that carry the calling app
RATE = "$__rate_interval"


def q(expr: str, legend: str, ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    return query.instant().format(PromQueryFormat.TABLE) if instant else query


def ratio(num: str, den: str) -> str:
    return f"({num})\n/\nclamp_min({den}, 1e-9)"


def ts(title: str, description: str, unit: str, *targets: prometheus.Dataquery, span: int = 12,
       stacked: bool = False, max_val: float | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).unit(unit).span(span).height(8)
             .datasource(DS).fill_opacity(10 if not stacked else 40).line_width(1)
             .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"])))
    if stacked:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    if max_val is not None:
        panel = panel.max(max_val)
    for t in targets:
        panel = panel.with_target(t)
    return panel


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=v, color=c) for v, c in steps])


def build() -> dict[str, Any]:
    """The dashboard model as Grafana's JSON."""
    checks = "guardrail_checks_total"
    d = (
        dash.Dashboard("guardrail-sidecar").uid(UID)
        .description("Violation rates, decisions, latency, capacity, judges and the review loop of guardrail-sidecar")
        .tags(["guardrail", "llm"]).refresh("30s").time("now-6h", "now").timezone("browser").editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(dash.QueryVariable("namespace").label("namespace").datasource(DS)
                       .query("label_values(guardrail_build_info, namespace)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                       .multi(True).include_all(True).all_value(".*")
                       .current(VariableOption(selected=True, text="All", value="$__all")))
        .with_variable(dash.QueryVariable("app").label("calling app").datasource(DS)
                       .query(f"label_values({checks}{{{NS}}}, app)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                       .multi(True).include_all(True).all_value(".*")
                       .current(VariableOption(selected=True, text="All", value="$__all")))

        .with_row(dash.Row("Violations and decisions"))
        .with_panel(ts(
            "Violation ratio by invariant", "fail / (pass + fail): the share of checked responses each invariant "
            "rejects. Compare with the baseline the alerts use (alerts.violation.baselines).", "percentunit",
            q(ratio(f'sum by (invariant) (rate({checks}{{outcome="fail",{SEL}}}[{RATE}]))',
                    f'sum by (invariant) (rate({checks}{{outcome=~"pass|fail",{SEL}}}[{RATE}]))'), "{{invariant}}")))
        .with_panel(ts(
            "Violation ratio by calling app", "Which service sends the responses that fail (the `app` label: names in "
            "metrics.apps, everything else `other`, no app `unset`).", "percentunit",
            q(ratio(f'sum by (app) (rate({checks}{{outcome="fail",{SEL}}}[{RATE}]))',
                    f'sum by (app) (rate({checks}{{outcome=~"pass|fail",{SEL}}}[{RATE}]))'), "{{app}}")))
        .with_panel(ts(
            "Check outcomes per second", "Every invariant check by outcome: pass, fail, error (raised or timed out), "
            "partial (stopped at its soft deadline or a cap with part of the response unchecked), skipped (not "
            "applicable, e.g. no samples).", "ops",
            q(f'sum by (invariant, outcome) (rate({checks}{{{SEL}}}[{RATE}]))', "{{invariant}} {{outcome}}"),
            stacked=True))
        .with_panel(ts(
            "Decisions per second", "What callers were told: allow, flag, block.", "ops",
            q(f'sum by (decision) (rate(guardrail_decisions_total{{{SEL}}}[{RATE}]))', "{{decision}}"), stacked=True))
        .with_panel(ts(
            "Error ratio by invariant", "Checks that raised (an exception, a judge endpoint failing) or were cut off "
            "at timeout_s; their decision follows on_error.", "percentunit",
            q(ratio(f'sum by (invariant) (rate({checks}{{outcome="error",{SEL}}}[{RATE}]))',
                    f'sum by (invariant) (rate({checks}{{{SEL}}}[{RATE}]))'), "{{invariant}}"), span=6))
        .with_panel(ts(
            "Unchecked ratio by invariant", "Checks that left part of the response unchecked, by why: deadline (the "
            "soft deadline of timeout_s, or a timeout), limit (a cap such as max_sentences); the unchecked part "
            "follows on_partial.", "percentunit",
            q(f"sum by (invariant, reason) (rate(guardrail_partial_checks_total{{{NS}}}[{RATE}])) / on (invariant) "
              f"group_left sum by (invariant) (rate({checks}{{{NS}}}[{RATE}]))", "{{invariant}} {{reason}}"),
            span=6))
        .with_panel(ts(
            "Fail-open per second", "Checks let through unchecked, by reason: an error under on_error: fail_open "
            "(timeout, exception, worker_lost), an unchecked part under on_partial: allow (partial).", "ops",
            q(f'sum by (invariant, reason) (rate(guardrail_fail_open_total{{{NS}}}[{RATE}]))',
              "{{invariant}} {{reason}}"), span=6))
        .with_panel(ts(
            "Pass thresholds", "score >= threshold passes. A step here is a calibration change (guardrail calibrate).",
            "none", q(f"max by (invariant) (guardrail_invariant_threshold{{{NS}}})", "{{invariant}}"), span=6,
            max_val=1))

        .with_row(dash.Row("Latency"))
        .with_panel(ts(
            "Check call latency", "Whole Check call, all invariants.", "s",
            q(f"histogram_quantile(0.5, sum by (le) (rate(guardrail_request_duration_seconds_bucket{{{NS}}}[{RATE}])))",
              "p50"),
            q(f"histogram_quantile(0.99, sum by (le) (rate(guardrail_request_duration_seconds_bucket{{{NS}}}[{RATE}])))",
              "p99", "B")))
        .with_panel(ts(
            "Invariant latency p99", "One invariant's check; at the soft deadline of its timeout_s it stops (partial), "
            "cut off at the timeout itself it is an error.", "s",
            q("histogram_quantile(0.99, sum by (invariant, le) "
              f"(rate(guardrail_check_duration_seconds_bucket{{{NS}}}[{RATE}])))", "{{invariant}}")))

        .with_row(dash.Row("Capacity"))
        .with_panel(ts(
            "Shed calls per second", "Calls refused before any check ran (RESOURCE_EXHAUSTED) by admission control, "
            "and all refusals by status code.", "ops",
            q(f"sum by (kind, reason) (rate(guardrail_shed_total{{{NS}}}[{RATE}]))", "shed {{kind}} {{reason}}"),
            q(f"sum by (code) (rate(guardrail_requests_rejected_total{{{NS}}}[{RATE}]))", "rejected {{code}}", "B"),
            span=8))
        .with_panel(ts(
            "Admission queue", "Calls waiting for a check worker, and the p99 of that wait.", "short",
            q(f"sum by (kind) (guardrail_admission_queue_depth{{{NS}}})", "waiting {{kind}}"),
            q("histogram_quantile(0.99, sum by (le) "
              f"(rate(guardrail_admission_wait_seconds_bucket{{{NS}}}[{RATE}])))", "p99 wait (s)", "B"),
            q(f"sum(guardrail_checks_in_flight{{{NS}}})", "checks in flight", "C"), span=8))
        .with_panel(ts(
            "Model batches", "Pairs per model call (mean) and pairs waiting for the model. Inputs answered from "
            "the workers' model-output cache (models.cache_size) never reach the model and are not counted here.",
            "short",
            q(ratio(f"sum by (model) (rate(guardrail_model_batch_size_sum{{{NS}}}[{RATE}]))",
                    f"sum by (model) (rate(guardrail_model_batch_size_count{{{NS}}}[{RATE}]))"), "batch {{model}}"),
            q(f"sum by (model) (guardrail_model_queue_depth{{{NS}}})", "queued {{model}}", "B"), span=8))

        .with_row(dash.Row("Judges"))
        .with_panel(
            stat.Panel().title("Judge agreement with human labels").description(
                "Held-out accuracy of each judge against reviewers' labels, from the newest `guardrail calibrate` "
                "run (alert below alerts.judgeAgreement.target).").unit("percentunit").span(12).height(6)
            .datasource(DS).min(0).max(1).decimals(1)
            .thresholds(thresholds((None, "red"), (0.8, "orange"), (0.9, "green")))
            .color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE)
            .with_target(q(f"min by (invariant) (guardrail_judge_agreement_ratio{{{NS}}})", "{{invariant}}")))
        .with_panel(ts(
            "Judge disagreements per second", "Cases where an invariant's two judges disagree (they go to the front "
            "of the review queue).", "ops",
            q(f"sum by (invariant) (rate(guardrail_judge_disagreements_total{{{NS}}}[{RATE}]))", "{{invariant}}")))

        .with_row(dash.Row("Review loop"))
        .with_panel(ts(
            "Review queue and spool", "Samples waiting in memory for the writer, and on disk while the store is slow "
            "or down (replayed in order).", "short",
            q(f"sum(guardrail_review_queue_depth{{{NS}}})", "queue"),
            q(f"sum(guardrail_review_spool_depth{{{NS}}})", "spool", "B"), span=8))
        .with_panel(ts(
            "Review samples per second", "Sampled for review by reason.", "ops",
            q(f"sum by (reason) (rate(guardrail_review_samples_total{{{NS}}}[{RATE}]))", "{{reason}}"), span=8,
            stacked=True))
        .with_panel(ts(
            "Review losses and write errors", "Samples dropped before reaching store or spool, and failed writes.",
            "ops",
            q(f"sum by (cause) (rate(guardrail_review_drops_total{{{NS}}}[{RATE}]))", "dropped {{cause}}"),
            q(f"sum by (target) (rate(guardrail_review_write_errors_total{{{NS}}}[{RATE}]))", "write error {{target}}",
              "B"), span=8))

        .with_row(dash.Row("Build"))
        .with_panel(
            table.Panel().title("Build and model").description(
                "Versions and NLI models serving now; two rows during a rollout.").span(24).height(5).datasource(DS)
            .with_target(q(f"count by (version, model, model_sha256) (guardrail_build_info{{{NS}}})", "", instant=True)))
    )
    return json.loads(json.dumps(d.build(), cls=JSONEncoder))


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel: what the tests run against Prometheus."""
    out = []
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
