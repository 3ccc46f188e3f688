"""The synth grid: counts per cell, feasibility, anchors steering the kind weights, determinism and dedup."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from guardrail_server.synth import anchors, build, grid
from guardrail_server.synth.documents import build_corpus, load_documents
from guardrail_server.synth.kinds import KINDS, names
from guardrail_server.synth.markers import FORMATS
from tests.synth_support import write_docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return build_corpus(load_documents([write_docs(tmp_path_factory.mktemp("docs"), pdf=False)]))


def test_shares_split_the_total_exactly_and_in_proportion() -> None:
    assert grid.shares(10, {"a": 1, "b": 1, "c": 2}) == {"a": 2, "b": 3, "c": 5} or \
        grid.shares(10, {"a": 1, "b": 1, "c": 2}) == {"a": 3, "b": 2, "c": 5}
    out = grid.shares(1000, {k: 1.0 for k in KINDS})
    assert sum(out.values()) == 1000 and max(out.values()) - min(out.values()) <= 1
    assert grid.shares(5, {"a": 0.0, "b": 1.0}) == {"a": 0, "b": 5}


def test_plan_spreads_each_kind_evenly_over_the_cells_it_allows() -> None:
    slots = grid.plan(45 * 16 * 2, {k: 1.0 for k in KINDS}, seed=3)
    per_kind = Counter(s.kind for s in slots)
    assert sum(per_kind.values()) == 45 * 16 * 2
    for kind in KINDS:
        cells = Counter(s.cell for s in slots if s.kind == kind)
        allowed = grid.cells_for(kind)
        assert set(cells) == set(allowed), kind
        assert max(cells.values()) - min(cells.values()) <= 1, kind
    # what a kind's construction cannot give is never planned
    assert not any(s.cell.citation == "none" for s in slots if KINDS[s.kind].needs_citation)
    assert not any(s.cell.passages == "1" for s in slots if s.kind in ("merged", "wrong_citation"))
    assert not any(s.cell.passages == "1" and s.cell.length != "1" for s in slots if KINDS[s.kind].group == "pii")
    assert len(grid.cells_for("extracted")) == 3 * 3 * len(FORMATS)


def test_counts_per_cell_are_the_cases_made_and_the_table_prints_them(corpus) -> None:  # noqa: ANN001
    slots = grid.plan(200, {k: 1.0 for k in KINDS}, seed=1)
    built = build.synthesize(corpus, slots, seed=1)
    counts = grid.counts((c.kind, c.cell) for c in built.cases)
    assert sum(counts.values()) == len(built.cases) == len(slots) - sum(built.shortfall.values())
    for c in built.cases:  # every case sits in the cell it was planned for
        assert c.meta["sentences"] >= 1 and (c.kind, c.cell) in counts
    table = grid.format_grid(counts, list(KINDS))
    row = next(line for line in table.splitlines() if line.startswith("extracted") and "   1 |" in line[:27])
    numbers = [int(x) for x in row.split("|", 1)[1].replace("|", " ").replace(".", "0").split()]
    expected = [counts.get(("extracted", grid.Cell("1", p, f)), 0) for p in grid.PASSAGES for f in FORMATS]
    assert numbers[:-1] == expected and numbers[-1] == sum(expected)


def test_same_seed_same_cases_other_seed_other_cases(corpus) -> None:  # noqa: ANN001
    slots = grid.plan(120, {k: 1.0 for k in KINDS}, seed=5)
    a = build.rows(build.synthesize(corpus, slots, seed=5).cases)
    b = build.rows(build.synthesize(corpus, slots, seed=5).cases)
    c = build.rows(build.synthesize(corpus, grid.plan(120, {k: 1.0 for k in KINDS}, seed=6), seed=6).cases)
    assert a == b
    assert [r["response"] for r in a] != [r["response"] for r in c]


def test_no_two_cases_share_question_and_response(corpus) -> None:  # noqa: ANN001
    built = build.synthesize(corpus, grid.plan(400, {"extracted": 1.0, "short_answer": 1.0}, seed=2), seed=2)
    keys = [build.dedup_key(c.question, c.response) for c in built.cases]
    assert len(keys) == len(set(keys))
    assert built.duplicates > 0  # a small corpus runs out of fresh cases: duplicates were drawn and redrawn


# ---------------------------------------------------------------- anchors


def _sample(labels: dict[str, str], critique: str = "", judge: dict[str, str] | None = None) -> dict:
    return {"id": uuid.uuid4().hex, "labels": labels, "annotations": [{"critique": critique, "labels": labels}],
            "verdicts": [{"invariant": k, "outcome": v} for k, v in (judge or {}).items()]}


def test_critique_words_and_failed_labels_point_at_kinds() -> None:
    assert anchors.critique_kinds("Wrong year: the tower opened in 1889, not 1887.") == ["date_swap"]
    assert "wrong_citation" in anchors.critique_kinds("It cites the wrong source")
    assert anchors.critique_kinds("The whole answer is fine") == []  # 'whole' is not 'who'
    hits = anchors.hits([
        _sample({"entailment": "fail"}, "the year is wrong"),
        _sample({"entailment": "fail"}, "wrong date"),
        _sample({"reference_integrity": "fail"}),
        _sample({"entailment": "pass"}, "a correct paraphrase, the units were converted", {"entailment": "fail"}),
    ])
    # a critique naming a kind: 2 points; a failed label: 1 point for every kind of its invariant
    assert hits["date_swap"] == 4 and hits["negation"] == 2
    assert hits["wrong_citation"] == 1 and hits["dangling_citation"] == 1
    assert hits["reworded"] == 2 and hits["extracted"] == 0  # a false flag points at the supported kind it names
    w = anchors.weights(list(KINDS), hits, boost=2.0)
    assert w["date_swap"] == 3.0 and w["pii_leak"] == 1.0 and w["negation"] == 2.0


def test_anchor_weights_steer_the_plan() -> None:
    even = Counter(s.kind for s in grid.plan(320, {k: 1.0 for k in KINDS}, seed=0))
    hits = anchors.hits([_sample({"entailment": "fail"}, "the year is wrong")] * 3)
    steered = Counter(s.kind for s in grid.plan(320, anchors.weights(list(KINDS), hits), seed=0))
    assert steered["date_swap"] > even["date_swap"] * 1.5
    assert steered["date_swap"] > steered["negation"] > steered["extracted"]
    assert sum(steered.values()) == sum(even.values()) == 320
    assert set(names("hallucinated")) == set(anchors.FAILED_INVARIANT_KINDS["entailment"])
