"""CI gates: `--fail-if "entailment.violation_rate > 0.05"`. Parsed with one regular expression, never eval();
`*` stands for every invariant in the run (`"*.error_rate > 0"`), and a name with `*` is a pattern over the run's
names (`"*@entailment.violation_rate > 0.1"` = every metamorphic relation on entailment)."""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail_server.evals.summary import GATE_METRICS, LABELED_METRICS, metric

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
_EXPR = re.compile(
    r"^\s*(?P<inv>[A-Za-z_*][A-Za-z0-9_@*-]*)\.(?P<metric>[a-z_]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
METRICS = GATE_METRICS + LABELED_METRICS


class GateSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Gate:
    text: str
    invariant: str
    metric: str
    op: str
    value: float


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    invariant: str
    actual: float | None
    tripped: bool
    message: str


def parse_gate(text: str) -> Gate:
    m = _EXPR.match(text)
    if not m:
        raise GateSyntaxError(
            f"cannot parse gate {text!r}; expected INVARIANT.METRIC OP NUMBER, e.g. 'entailment.violation_rate > 0.05'"
        )
    if m["metric"] not in METRICS:
        raise GateSyntaxError(f"gate {text!r}: unknown metric {m['metric']!r}; known: {', '.join(METRICS)}")
    return Gate(text.strip(), m["inv"], m["metric"], m["op"], float(m["value"]))


def evaluate(gates: Sequence[Gate], summary: dict[str, dict[str, Any]]) -> list[GateResult]:
    """A gate trips when its condition holds. A metric that cannot be computed (invariant not in the run, no labels)
    trips it too: a CI gate that silently checks nothing is worse than a red build."""
    out = []
    for gate in gates:
        pattern = "*" in gate.invariant
        names = sorted(n for n in summary if fnmatch.fnmatchcase(n, gate.invariant)) if pattern else [gate.invariant]
        if not names:
            out.append(GateResult(gate, gate.invariant, None, True,
                                  f"{gate.text}: the run has no results" + (f" matching {gate.invariant!r}"
                                                                            if gate.invariant != "*" else "")))
        for name in names:
            if name not in summary:
                out.append(GateResult(gate, name, None, True, f"{gate.text}: invariant {name!r} is not in this run"))
                continue
            actual = metric(summary[name], gate.metric)
            if actual is None:
                out.append(GateResult(gate, name, None, True,
                                      f"{gate.text}: {name}.{gate.metric} is not available (no labels or no data)"))
                continue
            tripped = _OPS[gate.op](actual, gate.value)
            verdict = "FAILED" if tripped else "ok"
            out.append(GateResult(gate, name, actual, tripped,
                                  f"{verdict}: {name}.{gate.metric} = {actual:.4g} ({gate.text})"))
    return out
