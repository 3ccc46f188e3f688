"""`guardrail review` (the terminal UI) through the CLI: skipped invariants need no label, sampled responses and
earlier labels are shown, blind review hides the judges until the label is saved."""

from __future__ import annotations

import io
import sys
import uuid

import pytest

from guardrail_server.review.records import Pending, to_record
from guardrail_server.review.store import ReviewStore
from guardrail_invariants.types import Case, Outcome, Passage, Verdict
from tests.review_support import verdict
from tests.test_review_calibration import _run

CASE = Case(
    question="When does the shop open?",
    context=(Passage("doc-1", "The shop opens at 9 am on weekdays."),),
    response="It opens at 9 am on weekdays [doc-1].",
    samples=("It opens at 9.", "The shop opens at 10 am."),
)


def _sample(store: ReviewStore) -> str:
    skipped = Verdict("self_consistency", Outcome.SKIPPED, 1.0, 0.5, judge="")
    rec = to_record(Pending(str(uuid.uuid4()), 1.7e9, CASE, [verdict("entailment", 0.2), skipped], "flag",
                            ("failure",)), None)
    store.insert_samples([rec])
    return rec["id"]


def _review(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, keys: str,
            *flags: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(keys))
    assert _run("review", "--url", url, "--reviewer", "dana", *flags) == 0
    return capsys.readouterr().out


def test_a_skipped_invariant_needs_no_label_and_samples_are_shown(
    store: ReviewStore, store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _sample(store)
    # entailment: 'p'; self_consistency was skipped by the server: Enter = no label (it used to insist on p/f)
    out = _review(monkeypatch, capsys, store_url, "p\n\nthe judge missed that 9 am is in the passage\n")
    assert "SAMPLED RESPONSE 1" in out and "The shop opens at 10 am." in out
    [a] = store.get_sample(sid)["annotations"]
    assert a["labels"] == {"entailment": "pass"} and a["reviewer"] == "dana"


def test_dash_leaves_any_invariant_unlabeled(
    store: ReviewStore, store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _sample(store)
    _review(monkeypatch, capsys, store_url, "-f\n\n")  # all at once: entailment none, self_consistency fail
    assert store.get_sample(sid)["annotations"][0]["labels"] == {"self_consistency": "fail"}


def test_blind_review_hides_the_judge_until_the_label_is_saved(
    store: ReviewStore, store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _sample(store)
    store.save_annotation(sid, "erin", {"entailment": "fail"}, "erin thinks it fails")
    with store.engine.begin() as conn:  # erin's label must not take the case out of dana's queue for this test
        from guardrail_server.review import schema as t

        conn.execute(t.samples.update().where(t.samples.c.id == sid).values(status="pending"))
    out = _review(monkeypatch, capsys, store_url, "p\n-\n\n", "--blind")
    before, _, after = out.partition("saved.")
    assert "judge" not in before.replace("judges' verdicts are shown after", "") and "FAIL" not in before
    assert "erin" not in before and "failure" not in before
    assert "entailment: fail" in after  # revealed once saved
    mine = [a for a in store.get_sample(sid)["annotations"] if a["reviewer"] == "dana"]
    assert mine[0]["labels"] == {"entailment": "pass"}
