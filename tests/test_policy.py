from __future__ import annotations

from types import SimpleNamespace

import pytest

from guardrail_server.policy import Decision, decide
from guardrail_invariants.types import Outcome, Verdict


def v(name: str, outcome: Outcome) -> Verdict:
    return Verdict(invariant=name, outcome=outcome, score=0.5, threshold=0.5)


POLICIES = {
    "a": SimpleNamespace(on_fail="flag", on_error="fail_open"),
    "b": SimpleNamespace(on_fail="block", on_error="fail_closed"),
}


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], Decision.ALLOW),
        ([v("a", Outcome.PASS), v("b", Outcome.SKIPPED)], Decision.ALLOW),
        ([v("a", Outcome.FAIL), v("b", Outcome.PASS)], Decision.FLAG),
        ([v("a", Outcome.FAIL), v("b", Outcome.FAIL)], Decision.BLOCK),
        ([v("a", Outcome.ERROR), v("b", Outcome.PASS)], Decision.ALLOW),
        ([v("a", Outcome.FAIL), v("b", Outcome.ERROR)], Decision.BLOCK),
        ([v("b", Outcome.ERROR), v("a", Outcome.FAIL)], Decision.BLOCK),
    ],
)
def test_decision_is_the_most_severe_action(verdicts: list[Verdict], expected: Decision) -> None:
    assert decide(verdicts, POLICIES) is expected
