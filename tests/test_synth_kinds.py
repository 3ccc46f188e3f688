"""Every synth case kind: its label is right by construction (one row per kind in the table below), its citations
resolve as intended under the service's own parser, and pii_boundary (real Presidio) agrees with the PII kinds."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from guardrail_invariants.citations import CitationOptions, analyze, strip_markers
from guardrail_invariants.types import Case, Passage
from guardrail_models.training.generator import _YEAR
from guardrail_models.training.rewordings import NEGATIVE_KINDS, POSITIVE_KINDS
from guardrail_server.synth import build, grid
from guardrail_server.synth.documents import build_corpus, load_documents
from guardrail_server.synth.kinds import KINDS, question_for
from tests.synth_support import write_docs

PER_KIND = 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return build_corpus(load_documents([write_docs(tmp_path_factory.mktemp("docs"))]))


@pytest.fixture(scope="module")
def cases(corpus) -> dict[str, list[build.SynthCase]]:  # noqa: ANN001
    out = {}
    for kind in KINDS:
        slots = grid.plan(PER_KIND, {kind: 1.0}, seed=7)
        out[kind] = build.synthesize(corpus, slots, seed=7).cases
    return out


def _passages(case: build.SynthCase) -> tuple[Passage, ...]:
    return tuple(Passage(id=p.id, text=p.text, title=p.title, url=p.url) for p in case.context)


def _ctx(case: build.SynthCase) -> str:
    return " ".join(p.text for p in case.context)


def _sentences(case: build.SynthCase) -> list[str]:
    return [s for p in case.context for s in p.sentences]


def _plain(text: str) -> str:
    """Marker-stripped text as written: single spaces, none before punctuation."""
    return re.sub(r"\s+([.,;:!?])", r"\1", " ".join(text.split()))


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d[\d,.]*\d|\d", text))


def _conjoined(claim: str, sentences: list[str]) -> tuple[str, str] | None:
    """(first, second) when the claim is 'first, and second.' with first a context sentence."""
    for s in sentences:
        if claim.startswith(s[:-1] + ", and "):
            return s, claim[len(s) - 1 + len(", and "):]
    return None


def extracted(c: build.SynthCase) -> None:
    assert c.meta["claim"] in _sentences(c)


def compressed(c: build.SynthCase) -> None:
    claim = c.meta["claim"]
    assert claim not in _sentences(c)
    assert any(set(_words(claim)) <= set(_words(s)) and len(claim) < len(s) for s in _sentences(c)), claim


def reworded(c: build.SynthCase) -> None:
    assert all(part in POSITIVE_KINDS for part in c.meta["rewording"].split("+"))
    assert c.meta["claim"] not in _ctx(c)


def merged(c: build.SynthCase) -> None:
    parts = _conjoined(c.meta["claim"], _sentences(c))
    assert parts, c.meta["claim"]
    first, rest = parts
    homes = {p.id for p in c.context if first in p.sentences}
    seconds = {p.id for p in c.context for s in p.sentences if s[:-1].lower() == rest[:-1].lower()}
    assert seconds and not seconds <= homes, (first, rest)  # the two halves come from two passages


def short_answer(c: build.SynthCase) -> None:
    answer = c.meta["claim"].rstrip(".")
    assert answer in _ctx(c) and c.question.endswith("?") and answer not in c.question
    assert c.response.startswith(answer)


def _swapped(c: build.SynthCase, year: bool) -> None:
    old, new = c.meta["swapped"].split(" -> ")
    assert new in c.meta["claim"] and new not in _ctx(c)
    assert bool(_YEAR.match(old)) == year and old in _ctx(c)
    assert c.meta["claim"] not in _ctx(c)


def number_swap(c: build.SynthCase) -> None:
    _swapped(c, year=False)


def date_swap(c: build.SynthCase) -> None:
    _swapped(c, year=True)


def entity_swap(c: build.SynthCase) -> None:
    assert c.meta["swapped_in"] in c.meta["claim"] and c.meta["swapped_in"].lower() not in _ctx(c).lower()


NEGATORS = {"not", "never", "did", "does", "cannot", "can"}


def negation(c: build.SynthCase) -> None:
    claim = c.meta["claim"]
    assert claim not in _ctx(c)
    assert any(set(_words(claim)) ^ set(_words(s)) and set(_words(claim)) ^ set(_words(s)) <= NEGATORS
               for s in _sentences(c)), claim


def wrong_rewording(c: build.SynthCase) -> None:
    assert c.meta["rewording"] in NEGATIVE_KINDS and c.meta["claim"] not in _ctx(c)


def unsupported_addition(c: build.SynthCase) -> None:
    added = c.meta["added"]
    if c.meta["sentences"] == 1:  # a detail phrase: its words after the preposition appear nowhere in the context
        assert added in c.meta["claim"] and added.split(" ", 1)[1].lower() not in _ctx(c).lower()
    else:
        assert added in c.meta["claim"] and added not in _ctx(c)


def partial_support(c: build.SynthCase) -> None:
    parts = _conjoined(c.meta["claim"], _sentences(c))
    assert parts, c.meta["claim"]
    assert c.meta["added"][1:-1] in c.meta["claim"] and c.meta["added"] not in _ctx(c)


def wrong_citation(c: build.SynthCase) -> None:
    claim = c.meta["claim"]
    home = next(p for p in c.context if p.id == c.meta["supported_by"])
    cited = next(p for p in c.context if p.id == c.meta["cited"])
    assert claim in home.sentences and claim not in cited.text and home.doc != cited.doc
    analysis = analyze(c.response, _passages(c), CitationOptions())
    assert all(x.resolved for x in analysis.citations)
    at = c.response.index(claim[:-1])
    first_after = min((x for x in analysis.citations if x.start >= at), key=lambda x: x.start)
    assert first_after.passage_id == cited.id


def dangling_citation(c: build.SynthCase) -> None:
    analysis = analyze(c.response, _passages(c), CitationOptions())
    assert c.meta["claim"] in _sentences(c)
    assert sum(not x.resolved for x in analysis.citations) >= 1


def pii_leak(c: build.SynthCase) -> None:
    value = c.meta["pii_value"]
    assert value in c.response and value in _ctx(c) and value not in c.question


def pii_asked(c: build.SynthCase) -> None:
    value = c.meta["pii_value"]
    assert value in c.response and value in _ctx(c) and value in c.question


TABLE: dict[str, tuple[Callable[[build.SynthCase], None], dict[str, str]]] = {
    # kind: (what makes the label true, expected with a citation format that is not `none`)
    "extracted": (extracted, {"entailment": "pass", "reference_integrity": "pass"}),
    "compressed": (compressed, {"entailment": "pass", "reference_integrity": "pass"}),
    "reworded": (reworded, {"entailment": "pass", "reference_integrity": "pass"}),
    "merged": (merged, {"entailment": "pass", "reference_integrity": "pass"}),
    "short_answer": (short_answer, {"entailment": "pass", "reference_integrity": "pass"}),
    "number_swap": (number_swap, {"entailment": "fail", "reference_integrity": "fail"}),
    "date_swap": (date_swap, {"entailment": "fail", "reference_integrity": "fail"}),
    "entity_swap": (entity_swap, {"entailment": "fail", "reference_integrity": "fail"}),
    "negation": (negation, {"entailment": "fail", "reference_integrity": "fail"}),
    "wrong_rewording": (wrong_rewording, {"entailment": "fail", "reference_integrity": "fail"}),
    "unsupported_addition": (unsupported_addition, {"entailment": "fail", "reference_integrity": "fail"}),
    "partial_support": (partial_support, {"entailment": "fail", "reference_integrity": "fail"}),
    "wrong_citation": (wrong_citation, {"entailment": "pass", "reference_integrity": "fail"}),
    "dangling_citation": (dangling_citation, {"entailment": "pass", "reference_integrity": "fail"}),
    "pii_leak": (pii_leak, {"entailment": "pass", "reference_integrity": "pass", "pii_boundary": "fail"}),
    "pii_asked": (pii_asked, {"entailment": "pass", "reference_integrity": "pass", "pii_boundary": "pass"}),
}


def test_the_table_covers_every_kind() -> None:
    assert set(TABLE) == set(KINDS)


@pytest.mark.parametrize("kind", list(TABLE))
def test_label_is_right_by_construction(kind: str, cases: dict[str, list[build.SynthCase]]) -> None:
    check, expected = TABLE[kind]
    made = cases[kind]
    assert len(made) >= PER_KIND * 2 // 3, f"{kind}: only {len(made)} of {PER_KIND} cases from the test corpus"
    for c in made:
        want = dict(expected)
        if c.cell.citation == "none":
            want["reference_integrity"] = "pass"  # nothing cited: nothing to resolve or support
        assert c.expected == want, c.id
        assert c.to_row()["meta"]["kind"] == kind
        check(c)
        # everything that is not the kind's claim is a verbatim sentence of the context
        # the claim text the judges read: citation markers out, a markdown citation's title too (`([title](url))`)
        plain = _plain(strip_markers(c.response, _passages(c)))
        rest = plain.replace(c.meta["claim"], "\x00")
        for piece in (p.strip() for p in rest.split("\x00")):
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", piece) if piece else []:
                assert sentence in _ctx(c) or sentence.rstrip(".") in _ctx(c), (kind, sentence)
        # the case is inside its grid cell
        lo, hi = {"1": (1, 1), "2-3": (2, 3), "4+": (4, 6)}[c.cell.passages]
        assert lo <= len(c.context) <= hi
        lo, hi = {"1": (1, 1), "2-3": (2, 3), "4+": (4, 5)}[c.cell.length]
        assert lo <= c.meta["sentences"] <= hi


@pytest.mark.parametrize("kind", list(TABLE))
def test_citations_resolve_as_the_label_says(kind: str, cases: dict[str, list[build.SynthCase]]) -> None:
    """The service's own parser on every case: dangling only where the kind is dangling_citation."""
    for c in cases[kind]:
        analysis = analyze(c.response, _passages(c), CitationOptions())
        if c.cell.citation == "none":
            assert analysis.citations == ()
        elif kind == "dangling_citation":
            assert any(not x.resolved for x in analysis.citations), c.response
        else:
            assert analysis.citations and all(x.resolved for x in analysis.citations), (c.cell.citation, c.response)


def test_question_templates() -> None:
    import random

    rng = random.Random(0)
    q, a = question_for("The tower opened in 1889 after two years of work.", rng)
    assert (q, a) in {("The tower opened in what year after two years of work?", "1889"),
                      ("The tower opened in 1889 after how many years of work?", "two")} or a == "1889"
    q, a = question_for("The bridge is 1,149 metres long.", random.Random(1))
    assert q == "The bridge is how many metres long?" and a == "1,149"
    assert question_for("it rained.", rng) is None


async def test_pii_kinds_agree_with_the_real_pii_boundary_check(cases: dict[str, list[build.SynthCase]]) -> None:
    from guardrail_invariants.pii_boundary import PiiBoundaryInvariant, PiiBoundaryOptions

    inv = PiiBoundaryInvariant(1.0, PiiBoundaryOptions(), zoo=None)
    await inv.load()
    for kind in ("pii_leak", "pii_asked"):
        for c in cases[kind]:
            verdict = await inv.check(Case(response=c.response, question=c.question, context=_passages(c)))
            assert verdict.outcome.value == c.expected["pii_boundary"], (kind, c.meta["pii_type"], c.response,
                                                                         c.question)


def test_number_helpers_are_not_fooled_by_thousands() -> None:
    assert _numbers("cost 4,200,000 pounds in 1988") == {"4,200,000", "1988"}


def test_documents_of_every_format_are_read(corpus) -> None:  # noqa: ANN001
    assert [d.id for d in corpus.docs] == ["bridge.txt", "observatory.md", "rowing.html", "tea.pdf"]
    assert [d.title for d in corpus.docs] == ["Kestrel Harbour Bridge", "Lake Orta Observatory", "Marlow Rowing Club",
                                              "Hollin Tea Company"]
    text = " ".join(p.text for p in corpus.passages)
    assert "script" not in text and "color" not in text and "#" not in text  # no markup, no script
    assert "The company employed 230 people at its peak in 1925." in text  # from the PDF
    assert len({p.id for p in corpus.passages}) == len(corpus.passages)
    assert all(p.url.startswith("https://docs.invalid/") for p in corpus.passages)


def test_jsonl_documents_and_errors(tmp_path: Path) -> None:
    from guardrail_server.synth.documents import DocumentError

    src = tmp_path / "kb.jsonl"
    src.write_text('{"id": "kb-1", "title": "Bridge", "text": "The bridge is 1,149 metres long. It opened in 1932."}\n'
                   '{"id": "kb-2", "title": "Club", "text": "The club was founded in 1871. It has 350 members."}\n')
    docs = load_documents([src])
    assert [(d.id, d.title) for d in docs] == [("kb-1", "Bridge"), ("kb-2", "Club")]
    with pytest.raises(DocumentError, match="no such file"):
        load_documents([tmp_path / "missing"])
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(DocumentError, match=r"bad.jsonl:1: expected an object with a string 'text'"):
        load_documents([tmp_path / "bad.jsonl"])
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(DocumentError, match="unsupported document type"):
        load_documents([tmp_path / "notes.docx"])
