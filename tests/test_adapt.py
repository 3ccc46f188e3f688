"""`guardrail adapt` (issue 21 item 2): pairs from documents, the label-noise filter, the groups file, the anchors'
ship rule — and the whole loop end to end on a tiny budget: it writes a zoo model that loads and predicts, and it
refuses the overlay when the anchors say the adapted judge is worse (a judge trained on flipped labels)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from guardrail_server.adapt import groups as grouping
from guardrail_server.adapt import judging
from guardrail_server.adapt.pairs import DocPair, label_noise, make_pairs, noise_reason, split_documents, verbatim
from guardrail_server.cli import main
from guardrail_server.synth.documents import SourceDoc, load_documents
from tests.adapt_support import anchor_lines, eval_rows, pick_confident, read_jsonl, write_anchor_file
from tests.synth_support import write_docs

ONLY_ENTAILMENT = ["--set", "review.enabled=false", "--set", "invariants.pii_boundary.enabled=false",
                   "--set", "invariants.reference_integrity.enabled=false",
                   "--set", "invariants.self_consistency.enabled=false"]


# -- pairs and the label-noise filter --------------------------------------------------------------------------


def test_pairs_are_labelled_by_construction_and_reproducible(tmp_path: Path) -> None:
    docs = load_documents([write_docs(tmp_path / "docs")])
    pairs = make_pairs(docs, 120, seed=3)
    assert len(pairs) == 120 and len({(p.premise, p.claim) for p in pairs}) == 120
    assert {p.label for p in pairs} == {"entailment", "neutral", "contradiction"}
    text = " ".join(" ".join(d.text for d in docs).split())
    for p in pairs:
        assert p.premise in text  # a window of the documents' own sentences
        if p.kind == "verbatim":
            assert p.label == "entailment" and p.claim in p.premise
        if p.kind in ("number_swap", "entity_swap", "negation"):
            assert p.label == "contradiction" and p.claim not in p.premise
    assert make_pairs(docs, 120, seed=3) == pairs
    with pytest.raises(ValueError, match="at least two documents"):
        make_pairs(docs[:1], 10, seed=0)


PREMISE = "The bridge is 1,149 metres long and opened in 1932. It was designed by John Bradfield."


@pytest.mark.parametrize(("claim", "label", "p", "dropped"), [
    # supported by construction, but the judge is sure it is not and most words are missing: a mangled rewording
    ("The tunnel carries freight trains under the river.", "entailment", 0.01, True),
    ("The tunnel carries freight trains under the river.", "entailment", 0.40, False),  # the judge is not sure
    ("The bridge opened in 1932.", "entailment", 0.01, False),  # the words are there: the judge may be what is wrong
    # unsupported by construction, but a verbatim copy the judge is sure of: a swap that swapped nothing
    ("It was designed by John Bradfield.", "contradiction", 0.99, True),
    ("It was designed by John Bradfield.", "neutral", 0.80, False),
    # every word there, not verbatim: a flipped negation keeps its label whatever the judge says
    ("The bridge is not 1,149 metres long.", "contradiction", 0.99, False),
    ("It was designed by Bradfield John.", "contradiction", 0.99, False),  # swapped order
])
def test_label_noise_needs_both_signals(claim: str, label: str, p: float, dropped: bool) -> None:
    pair = DocPair(PREMISE, claim, label, "test")
    assert (noise_reason(pair, p) is not None) is dropped
    result = label_noise([pair], [p])
    assert len(result.dropped) == int(dropped) and len(result.kept) == int(not dropped)


def test_rescoring_stops_at_its_time_and_unscored_pairs_are_not_wrong() -> None:
    import numpy as np

    from guardrail_server.adapt import loop
    from guardrail_server.adapt.pairs import wrong

    pairs = [DocPair(PREMISE, f"claim {i}", "entailment" if i % 2 else "neutral", "t") for i in range(40)]
    score = lambda chunk: np.full(len(chunk), 0.9)  # noqa: E731 - everything looks supported
    full = loop._batched(score, pairs)
    assert not np.isnan(full).any() and wrong(pairs, full) == [i for i in range(40) if i % 2 == 0]
    none = loop._batched(score, pairs, until=0.0)  # out of time before the first block
    assert np.isnan(none).all() and wrong(pairs, none) == []


def test_verbatim_ignores_case_and_punctuation_but_not_order() -> None:
    assert verbatim(PREMISE, "it was designed by john bradfield")
    assert not verbatim(PREMISE, "designed by Bradfield John")
    assert not verbatim(PREMISE, "")


def test_documents_held_out_for_the_synth_eval() -> None:
    docs = [SourceDoc(f"d{i}", f"t{i}", "x", f"d{i}") for i in range(8)]
    adapt_on, held = split_documents(docs, 0.25, seed=0)
    assert len(held) == 2 and len(adapt_on) == 6 and not {d.id for d in held} & {d.id for d in adapt_on}
    assert split_documents(docs, 0.25, seed=0) == (adapt_on, held)
    assert split_documents(docs[:3], 0.25, seed=0) == (docs[:3], [])  # too few to hold any out
    assert split_documents(docs, 0.0, seed=0) == (docs, [])


def test_groups_file_is_what_the_trainer_reads(tmp_path: Path) -> None:
    from guardrail_models.training.train import load_groups

    long_premise = " ".join(["The observatory stands on the mountain above the lake."] * 40)
    pairs = [DocPair(PREMISE, "The bridge opened in 1932.", "entailment", "verbatim"),
             DocPair(long_premise, "The observatory stands on the mountain.", "entailment", "rewrite")]
    rows = grouping.replay_rows(40, seed=1, exclude=("summedits", "vitaminc"))
    assert len(rows) == 40 and not any(r["dataset"].startswith(("summedits", "vitaminc")) for r in rows)
    from guardrail_invariants.judges.training_mix import is_calib

    assert not any(is_calib(r["premise"], grouping.CALIB_SHARE) for r in rows)  # the mix's held-out side stays out
    from guardrail_models.zoo import ModelZoo

    count = grouping.token_counter(ModelZoo().model_dir())
    assert count("The bridge opened in 1932.") < 12  # unpadded
    path = tmp_path / "g.jsonl.gz"
    made = [grouping.doc_group(p, count) for p in pairs] + grouping.replay_groups(rows, count)
    counts = grouping.write_groups(path, made, 0)
    assert counts["groups"] == 42 and counts["documents"] == 2 and counts["replay"] == 40
    groups = load_groups(path)
    assert len(groups) == 42
    by_source = {g["source"]: g for g in groups if g["source"].startswith("adapt/")}
    assert by_source["adapt/verbatim"]["mode"] == "single" and by_source["adapt/verbatim"]["label"] == "entailment"
    assert by_source["adapt/rewrite"]["mode"] == "mil" and len(by_source["adapt/rewrite"]["pairs"]) >= 2  # windowed
    again = tmp_path / "again.jsonl.gz"
    grouping.write_groups(again, made, 0)
    assert again.read_bytes() == path.read_bytes()  # same inputs, same bytes (no gzip timestamp)
    with gzip.open(path, "rt") as fh:
        assert all(json.loads(line)["split"] == "train" for line in fh)


def test_pairs_are_written_in_the_form_the_runtime_feeds_the_model() -> None:
    """A base whose manifest declares an input normalization (the shipped v2: canonical_v1) gets its training pairs
    normalized as its runtime normalizes premise and claim; a model without one gets them as they are."""
    from guardrail_models.canonical import canonicalize

    count = lambda text: len(text.split())  # noqa: E731 - one window either way
    pair = DocPair("The tower is 330 metres tall.", "The tower is 330 m tall.", "entailment", "reword_unit")
    assert grouping.doc_group(pair, count, canonicalize)["pairs"] == [["The tower is 330 metres tall."] * 2]
    assert grouping.doc_group(pair, count, None)["pairs"] == [[pair.premise, pair.claim]]


# -- the ship rule -------------------------------------------------------------------------------------------


def _rows(scores_labels: list[tuple[float, str]], threshold: float = 0.85) -> list[dict]:
    return [{"case_id": f"c{i}", "score": s, "expected": lab, "threshold": threshold,
             "outcome": "pass" if s >= threshold else "fail"} for i, (s, lab) in enumerate(scores_labels)]


def test_agreement_and_the_ship_rule() -> None:
    base = judging.agreement(_rows([(0.9, "pass"), (0.95, "pass"), (0.1, "fail"), (0.86, "fail")]), 0.85)
    assert (base.agree, base.n, base.auroc) == (3, 4, 1.0) and base.low < 0.75 < base.high
    better = judging.agreement(_rows([(0.9, "pass"), (0.95, "pass"), (0.1, "fail"), (0.3, "fail")]), 0.85)
    same = judging.agreement(_rows([(0.91, "pass"), (0.96, "pass"), (0.1, "fail"), (0.87, "fail")]), 0.85)
    fewer = judging.agreement(_rows([(0.84, "pass"), (0.83, "pass"), (0.1, "fail"), (0.2, "fail")]), 0.85)
    ranks_worse = judging.agreement(_rows([(0.9, "pass"), (0.95, "pass"), (0.1, "fail"), (0.99, "fail")]), 0.85)
    one_swap = judging.agreement(_rows([(0.9, "pass"), (0.95, "pass"), (0.1, "fail"), (0.92, "fail")]), 0.85)
    assert judging.worse(base, better) is None
    assert judging.worse(base, same) is None  # equal is not worse
    assert fewer.auroc == base.auroc
    assert judging.worse(base, fewer) == "it agrees with 2 of 4 anchors, the base with 3 of 4"
    assert judging.worse(base, ranks_worse) == ("its AUROC on the anchors is 0.500, the base's 1.000 (more than one "
                                                "pair of anchors ranked the wrong way round)")
    assert one_swap.auroc == 0.75 and judging.worse(base, one_swap) is None  # one near-tied pair trading places
    skipped = _rows([(0.9, "pass"), (0.1, "fail")]) + [{"case_id": "x", "score": 1.0, "expected": "pass",
                                                       "threshold": 0.85, "outcome": "skipped"}]
    assert judging.agreement(skipped, 0.85).undecided == 1


def test_a_threshold_the_anchors_cannot_back_is_not_used() -> None:
    rows = _rows([(0.6, "pass"), (0.7, "pass"), (0.2, "fail"), (0.3, "fail")] * 2)
    threshold, result, check = judging.calibrate(rows, 0.85, min_labels=20, test_fraction=0.3, seed=0)
    assert threshold == 0.85 and not check.validated and "fewer than the minimum 20" in check.describe()
    many = _rows([(0.6 + i / 1000, "pass") for i in range(30)] + [(0.2 + i / 1000, "fail") for i in range(30)])
    threshold, result, check = judging.calibrate(many, 0.85, min_labels=20, test_fraction=0.3, seed=0)
    assert check.validated and 0.23 < threshold < 0.6


def test_anchor_rows_need_both_entailment_labels() -> None:
    samples = [{"id": "a", "labels": {"entailment": "pass"}, "case": {"response": "x", "context": []}},
               {"id": "b", "labels": {"reference_integrity": "fail"}, "case": {"response": "y", "context": []}}]
    rows = judging.anchor_rows(samples)
    assert [r["id"] for r in rows] == ["a"] and rows[0]["expected"] == {"entailment": "pass"}
    with pytest.raises(judging.AnchorError, match="all one class"):
        judging.check_anchor_labels(rows)
    with pytest.raises(judging.AnchorError, match="no case labelled"):
        judging.check_anchor_labels([])


# -- the command -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anchored(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Documents, and an anchor set of 12 synth cases the shipped judge gets right with a margin, frozen in a review
    store through `guardrail anchors import` (labels: the construction's, standing in for a reviewer's)."""
    root = tmp_path_factory.mktemp("adapt")
    docs = write_docs(root / "docs")
    assert main(["synth", str(docs), "--out", str(root / "set.jsonl"), "--cases", "60", "--kind", "supported",
                 "--kind", "hallucinated", "--citation", "none", "--no-progress", "--seed", "5"]) == 0
    assert main(["eval", str(root / "set.jsonl"), "--out", str(root / "base"), "--invariant", "entailment",
                 "--no-progress", *ONLY_ENTAILMENT]) in (0, 1)
    results = eval_rows(root / "base")
    picked = pick_confident(read_jsonl(root / "set.jsonl"), results, 6)
    assert len(picked) == 12
    anchors = write_anchor_file(root / "golden.jsonl", anchor_lines(picked, results, "golden"))
    url = f"sqlite:///{root / 'review.db'}"
    assert main(["anchors", "import", str(anchors), "--url", url, "--name", "golden"]) == 0
    return {"root": root, "docs": docs, "url": url, "anchors_file": anchors}


def test_adapt_refuses_what_it_cannot_do(anchored: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs, url = str(anchored["docs"]), anchored["url"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        (["--anchors", "golden", "--url", url, "--out", str(tmp_path / "full")], "not an empty folder"),
        (["--anchors", "missing", "--url", url, "--out", str(tmp_path / "o1")], "no anchor set 'missing'"),
        (["--anchors", "golden", "--url", url, "--out", str(tmp_path / "o2"), "--minutes", "0"], "--minutes"),
        (["--anchors", "golden", "--url", url, "--out", str(tmp_path / "o3"),
          "--set", "invariants.entailment.options.model=nope"], "unknown model 'nope'"),
    ]
    for extra, message in cases:
        assert main(["adapt", docs, *extra]) == 2, extra
        assert message in capsys.readouterr().err
    one_class = [line for line in read_jsonl(anchored["anchors_file"])
                 if line["annotations"][0]["labels"]["entailment"] == "pass"]
    only_pass = write_anchor_file(tmp_path / "pass.jsonl", one_class)
    assert main(["adapt", docs, "--anchors", str(only_pass), "--out", str(tmp_path / "o4")]) == 2
    assert "all one class" in capsys.readouterr().err
    assert not (tmp_path / "o4").exists()
    nowhere = tmp_path / "none.db"
    argv = ["adapt", docs, "--anchors", "golden", "--url", f"sqlite:///{nowhere}", "--out", str(tmp_path / "o5")]
    assert main(argv) == 2
    assert "no review store at" in capsys.readouterr().err and not nowhere.exists()  # a read creates no store


FLIP = {"entailment": "contradiction", "neutral": "entailment", "contradiction": "entailment"}


@pytest.mark.timeout(1200)
def test_adapt_writes_a_loadable_model_and_refuses_the_overlay_when_the_anchors_say_worse(
        anchored: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A judge trained a few steps on flipped labels: the anchors (which the base gets right) say it is worse, so the
    model is written and loads, the reports say why, and no overlay is written (exit 1)."""
    from guardrail_models.zoo import ModelZoo, ZooSettings
    from guardrail_server.cli import adapt as adapt_cli

    monkeypatch.setattr(adapt_cli, "LABEL_HOOK", lambda pair: FLIP[pair.label])
    out = tmp_path / "out"
    code = main(["adapt", str(anchored["docs"]), "--anchors", "golden", "--url", anchored["url"], "--out", str(out),
                 "--steps", "6", "--lr", "3e-4", "--pairs", "60", "--synth-cases", "16", "--minutes", "15",
                 "--name", "flipped"])
    printed = capsys.readouterr()
    assert code == 1, printed.err[-2000:]
    assert "not shipping flipped: the anchors say it is worse" in printed.err
    assert not (out / "overlay.yaml").exists()

    # the model loads from its zoo folder and predicts
    zoo = ModelZoo(ZooSettings(models_dir=out / "zoo"))
    probs = zoo.nli("flipped").predict_sync([(
        "The Kestrel Harbour Bridge is 1,149 metres long.", "The bridge is 1,149 metres long.")])
    assert probs.shape == (1, 3) and abs(float(probs.sum()) - 1) < 1e-4

    manifest = json.loads((out / "zoo" / "flipped" / "manifest.json").read_text())
    adaptation = manifest["training"]["adaptation"]
    assert len(adaptation["documents_sha256"]) == 64 and adaptation["documents"] == 4
    assert adaptation["documents_held_out"] == 1 and adaptation["pairs"]["made"] == 60
    assert [r["steps"] for r in adaptation["rounds"]] == [6, 3] and adaptation["steps"] == 9
    assert adaptation["label_hook"] is True  # a test-made judge says so in its manifest
    anchors = manifest["metrics"]["anchors"]
    assert anchors["base"]["agree"] == anchors["base"]["n"] == 12
    assert anchors["adapted"]["agree"] < 12 and anchors["worse"]
    assert 0 <= anchors["adapted"]["low"] <= anchors["adapted"]["accuracy"] <= anchors["adapted"]["high"] <= 1
    assert manifest["judge"]["carried_over_from"] == "minilm-groundedness-v2"  # the hybrid rule went with it

    report = json.loads((out / "adapt.json").read_text())
    assert report["shipped"] is False and report["timing_s"]["total"] <= 15 * 60
    assert not list((out / "work").rglob("ckpt-*.pt"))  # the bulky intermediates are gone, the logs stay
    assert (out / "work" / "train.log").stat().st_size > 0
    # base vs adapted side by side, with the ordinary compare
    assert main(["eval", "compare", str(out / "eval" / "anchors-base"), str(out / "eval" / "anchors-adapted")]) == 0
    table = capsys.readouterr().out
    assert "| entailment |" in table and "Flipped cases:" in table
