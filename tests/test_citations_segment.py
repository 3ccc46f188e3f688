"""Sentence spans: the fast path (cut at unambiguous boundaries, pysbd for the rest) must match plain pysbd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_invariants import citations as C

TEXTS = [
    "The Eiffel Tower was completed in 1889. It is 330 metres tall. Dr. Gustave Eiffel's company built it.",
    "Paris has 2.1 million inhabitants, i.e. fewer than London. The U.S. Embassy is nearby. Mr. Smith agrees.",
    "Love, Inc. is an American sitcom. It aired on UPN from 2005 to 2006. The show was created by A. Secunda.",
    "Is it tall? Yes! It is the tallest structure in Paris... or was, until 1930. Then the Chrysler Building won.",
    'He said "Stop. Now." and left. She replied (quietly) that it was fine. The end.',
    "Prices start at $26.10 per adult. Children under 4 enter free. See No. 5 on the map for the entrance.",
    "The main causes are: 1. poverty, 2. conflict, and 3. climate. Each is discussed below.",
    "Apple Inc. reported revenue of $89.5 billion. Its CEO, Tim Cook, said demand was strong. Analysts e.g. at "
    "Morgan Stanley agreed. Shares rose 3.2 percent.",
    "The study (Smith et al. 2020) found no effect. A follow-up in Jan. 2021 confirmed it. More work is needed.",
]


def _fast(text: str) -> list[str]:
    return [text[a:b] for a0, e, _ in C._lines(text) for a, b in C._segment(text, (a0, e))]


def _pysbd(text: str) -> list[str]:
    return [text[a:b] for a0, e, _ in C._lines(text) for a, b in C._pysbd_spans(text, a0, e, 0)]


@pytest.mark.parametrize("text", TEXTS)
def test_fast_segmentation_equals_pysbd(text: str) -> None:
    assert _fast(text) == _pysbd(text)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Dr. Smith came. He left.", ["Dr. Smith came.", "He left."]),
        ("It is big, e.g. the tower. Yes.", ["It is big, e.g. the tower.", "Yes."]),
        ("Paris.\nBerlin is big", ["Paris.", "Berlin is big"]),
        ("- First item. Still first.\n- Second item", ["First item.", "Still first.", "Second item"]),
        ("## Heading\nBody text here.", ["Heading", "Body text here."]),
        ("Use python3.11 -m venv .venv first. Then run it.", ["Use python3.11 -m venv .venv first.", "Then run it."]),
    ],
)
def test_segmentation_cases(text: str, sentences: list[str]) -> None:
    assert _fast(text) == sentences


def test_pysbd_only_sees_ambiguous_stretches(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = C._pysbd_spans

    def spy(chunk: str, start: int, end: int, offset: int) -> list[tuple[int, int]]:
        seen.append(chunk[start:end])
        return real(chunk, start, end, offset)

    monkeypatch.setattr(C, "_pysbd_spans", spy)
    text = "The tower opened in 1889. It is tall. Acme Inc. The firm built it. Visitors love it."
    assert _fast(text) == _pysbd(text)
    assert seen[0] == " Acme Inc. The firm built it."


@pytest.mark.slow
def test_agreement_with_pysbd_on_dev_texts() -> None:
    """Measurement on real model output and Wikipedia text (dev data: measuring only)."""
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
    texts: list[str] = []
    for line in (root / "chatprotect_selfcontradiction.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += [t for t in row["response"] if isinstance(t, str)] + ([row["context"]] if row["context"] else [])
    texts = list(dict.fromkeys(t for t in texts if len(t) > 50))
    same = sum(_fast(t) == _pysbd(t) for t in texts)
    assert same / len(texts) >= 0.95, f"{same}/{len(texts)}"
