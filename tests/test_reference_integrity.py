"""The `reference_integrity` invariant: verdicts, findings and scores, table-driven.

Parsing details are covered row by row in tests/test_citations.py; here each row is a whole response as real
assistants write them, checked end to end through the invariant built from the registry.
"""

from __future__ import annotations

import random

import pytest

from guardrail_invariants.registry import build_invariant, default_threshold, options_model
from guardrail_invariants.types import Case, Outcome
from tests.test_citations import _PIECES, BERLIN, KB, NONE, NOID, P3, PY, WIKI

# (id, response, passages, options, outcome, score, findings as (kind, marked text, message))
ROWS = [
    ("no-citations", "Paris is the capital of France.", P3, {}, "pass", 1.0, []),
    ("empty-response", "", P3, {}, "pass", 1.0, []),
    ("all-resolve", "Paris is the capital [1]. Berlin is big [2][3].", P3, {}, "pass", 1.0, []),
    (
        "one-dangling",
        "Paris is the capital [1]. Berlin is big [2]. Rome is old [4].",
        P3,
        {},
        "fail",
        2 / 3,
        [("dangling_citation", "[4]", "[4] does not resolve: index 4 is out of range (3 passages)")],
    ),
    (
        "no-context-all-dangle",
        "Paris [1] and Berlin [doc-2].",
        NONE,
        {},
        "fail",
        0.0,
        [
            ("dangling_citation", "[1]", "[1] does not resolve: no context passages"),
            ("dangling_citation", "[doc-2]", "[doc-2] does not resolve: no context passages"),
        ],
    ),
    (
        "range-partly-dangling-is-one-finding",
        "All of them agree [2-5].",
        P3,
        {},
        "fail",
        0.5,
        [
            (
                "dangling_citation",
                "[2-5]",
                "[2-5] does not resolve: index 4 is out of range (3 passages); index 5 is out of range (3 passages)",
            )
        ],
    ),
    (
        "absurd-range",
        "Everything is documented [1-5000].",
        P3,
        {},
        "fail",
        0.0,
        [("dangling_citation", "[1-5000]", "[1-5000] does not resolve: range 1-5000 is wider than 20")],
    ),
    (
        "perplexity",
        "The Eiffel Tower is in Paris[1][2]. It opened in 1889[3][7].",
        NOID,
        {},
        "fail",
        0.75,
        [("dangling_citation", "[7]", "[7] does not resolve: index 7 is out of range (3 passages)")],
    ),
    (
        "bing-copilot",
        "Paris is the capital of France[^1^]. Berlin is the capital of Germany[^2^].",
        P3,
        {},
        "pass",
        1.0,
        [],
    ),
    (
        "chatgpt-oai",
        "Paris is the capital \u30101\u2020source\u3011 and Python is a language \u30104:0\u2020source\u3011.",
        P3,
        {},
        "fail",
        0.5,
        [
            (
                "dangling_citation",
                "\u30104:0\u2020source\u3011",
                "\u30104:0\u2020source\u3011 does not resolve: index 4 is out of range (3 passages)",
            )
        ],
    ),
    (
        "chatgpt-web-links",
        f"Berlin is big ([example.com]({BERLIN}?utm_source=chatgpt.com)). See also {PY}.",
        P3,
        {},
        "pass",
        1.0,
        [],
    ),
    (
        "hallucinated-link",
        "Paris is the capital ([source](https://www.paris-facts.example/capital)).",
        P3,
        {},
        "fail",
        0.0,
        [
            (
                "dangling_citation",
                "[source](https://www.paris-facts.example/capital)",
                "[source](https://www.paris-facts.example/capital) does not resolve: no passage has this URL",
            )
        ],
    ),
    ("claude-cite", '<cite index="1-1">Paris is the capital.</cite> <cite index="3-2">Python.</cite>', P3, {},
     "pass", 1.0, []),
    (
        "kb-ids",
        "Reset your password [kb-101]. Then call support [kb-999].",
        KB,
        {},
        "fail",
        0.5,
        [("dangling_citation", "[kb-999]", "[kb-999] does not resolve: no passage has id 'kb-999'")],
    ),
    (
        "sources-list-matches-context",
        f"Paris is the capital [1]. Berlin is big [2].\n\nSources:\n[1] {WIKI}\n[2] {BERLIN}",
        P3,
        {},
        "pass",
        1.0,
        [],
    ),
    (
        "sources-list-made-up",
        f"Paris is the capital [1]. Rome is old [2].\n\nSources:\n[1] {WIKI}\n[2] https://rome.example/history",
        P3,
        {},
        "fail",
        0.5,
        [
            (
                "dangling_citation",
                "[2]",
                "[2] does not resolve: its reference-list entry https://rome.example/history matches no passage URL",
            ),
            (
                "dangling_citation",
                "[2] https://rome.example/history",
                "[2] https://rome.example/history does not resolve: no passage has this URL",
            ),
        ],
    ),
    (
        "perplexity-markdown-answer",
        "The **Eiffel Tower** is in Paris.[1] It is tall[1][2].\n\n## History\n- Completed in 1889[2].\n"
        "- Built by Eiffel et Cie (i.e. Gustave Eiffel's firm)[2][3].\n\n## Visiting\nLines are short early[4].",
        P3,
        {"require_citations": True},
        "fail",
        6 / 7,
        [("dangling_citation", "[4]", "[4] does not resolve: index 4 is out of range (3 passages)")],
    ),
    ("code-is-not-cited", "Use `xs[4]` or\n```\nys[9]\n```\nas in [1].", P3, {}, "pass", 1.0, []),
    ("checklist", "- [x] Paris\n- [ ] Rome", P3, {}, "pass", 1.0, []),
    # --- claims must cite
    ("require-all-cited", "Paris is the capital of France [1]. Berlin is in Germany [2].", P3,
     {"require_citations": True}, "pass", 1.0, []),
    (
        "require-one-uncited",
        "Paris is the capital of France [1]. Berlin is the capital of Germany.",
        P3,
        {"require_citations": True},
        "fail",
        0.5,
        [("uncited_claim", "Berlin is the capital of Germany.", "claim sentence has no citation")],
    ),
    (
        "require-no-citations-at-all",
        "Paris is the capital of France. Berlin is the capital of Germany.",
        P3,
        {"require_citations": True},
        "fail",
        0.0,
        [
            ("uncited_claim", "Paris is the capital of France.", "claim sentence has no citation"),
            ("uncited_claim", "Berlin is the capital of Germany.", "claim sentence has no citation"),
        ],
    ),
    ("require-chitchat-has-no-claims", "Hello! How can I help you today?", P3, {"require_citations": True},
     "pass", 1.0, []),
    (
        "require-both-kinds",
        "Paris is the capital of France [9]. Berlin is the capital of Germany.",
        P3,
        {"require_citations": True},
        "fail",
        0.0,
        [
            ("dangling_citation", "[9]", "[9] does not resolve: index 9 is out of range (3 passages)"),
            ("uncited_claim", "Berlin is the capital of Germany.", "claim sentence has no citation"),
        ],
    ),
    ("require-paragraph-scope", "Paris is the capital of France. It has many museums [1].", P3,
     {"require_citations": True, "citation_scope": "paragraph"}, "pass", 1.0, []),
]


def _invariant(options: dict, threshold: float | None = None):
    name = "reference_integrity"
    return build_invariant(name, default_threshold(name) if threshold is None else threshold, options, zoo=None)


@pytest.mark.parametrize(
    ("response", "passages", "options", "outcome", "score", "findings"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
async def test_verdict_table(response, passages, options, outcome, score, findings) -> None:
    inv = _invariant(options)
    await inv.load()
    verdict = await inv.check(Case(response=response, context=passages))
    assert verdict.invariant == "reference_integrity"
    assert verdict.outcome is Outcome(outcome)
    assert verdict.score == pytest.approx(score)
    assert verdict.threshold == 1.0
    assert [(f.kind, response[f.start : f.end], f.message) for f in verdict.findings] == findings


def test_defaults() -> None:
    assert default_threshold("reference_integrity") == 1.0
    opts = options_model("reference_integrity")()
    assert not opts.require_citations and opts.max_range == 20 and "bare_urls" in opts.formats


async def test_lower_threshold_tolerates_some_dangling() -> None:
    response = "Paris [1]. Berlin [2]. Python [3]. Rome [4]."
    verdict = await _invariant({}, threshold=0.7).check(Case(response=response, context=P3))
    assert verdict.outcome is Outcome.PASS and verdict.score == 0.75
    assert [f.kind for f in verdict.findings] == ["dangling_citation"]


async def test_details_link_citations_to_sentences_and_passages() -> None:
    response = "Paris is the capital.[1] Berlin is big [doc-2]. Rome [5]."
    verdict = await _invariant({}).check(Case(response=response, context=P3))
    assert verdict.details["citations"] == 3 and verdict.details["dangling"] == 1
    links = verdict.details["links"]
    assert [(response[slice(*link["sentence"])], link["passage_id"]) for link in links] == [
        ("Paris is the capital.", "doc-1"),
        ("Berlin is big [doc-2].", "doc-2"),
        ("Rome [5].", None),
    ]
    assert verdict.findings[0].evidence == {"format": "numeric", "refs": ["5"], "passages": 3}


async def test_long_response_same_verdict_off_the_loop() -> None:
    unit = "Paris is the capital of France [1]. Rome is old [4]. "
    long_response = unit * 200
    assert len(long_response) > 4000
    verdict = await _invariant({}).check(Case(response=long_response, context=P3))
    assert verdict.score == pytest.approx(0.5)
    assert len(verdict.findings) == 200
    assert all(long_response[f.start : f.end] == "[4]" for f in verdict.findings)


async def test_dangling_findings_always_slice_to_their_marker() -> None:
    rng = random.Random(99)
    inv = _invariant({"require_citations": True})
    for _ in range(300):
        response = " ".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 25)))
        verdict = await inv.check(Case(response=response, context=rng.choice([P3, NOID, KB, NONE])))
        for f in verdict.findings:
            assert 0 <= f.start < f.end <= len(response)
            if f.kind == "dangling_citation":
                assert f.message.startswith(response[f.start : f.end][:79])
            else:
                assert f.kind == "uncited_claim" and response[f.start : f.end].strip()
        assert 0.0 <= verdict.score <= 1.0
        assert (verdict.outcome is Outcome.PASS) == (verdict.score >= 1.0)
