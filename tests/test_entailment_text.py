"""Sentence spans, context windows, BM25 selection and the non-claim rule (no model needed)."""

from __future__ import annotations

import pytest

from guardrail_invariants.text import Bm25, coverage, is_non_claim, make_windows, split_sentences


def words(text: str) -> int:
    return len(text.split())


def test_sentences_have_exact_offsets_and_respect_abbreviations() -> None:
    text = "Dr. Smith earned $3.5 million in 2005. He moved to the U.S. in March.\n- First item\n- Second item"
    spans = split_sentences(text)
    assert [s.text for s in spans] == ["Dr. Smith earned $3.5 million in 2005.", "He moved to the U.S. in March.",
                                       "- First item", "- Second item"]
    assert all(text[s.start:s.end] == s.text for s in spans)


def test_glued_sentences_are_split() -> None:
    text = "It was part of the coalition of Salvador Allende.Augusto Pinochet was a Chilean general."
    assert [s.text for s in split_sentences(text)] == ["It was part of the coalition of Salvador Allende.",
                                                        "Augusto Pinochet was a Chilean general."]


def test_windows_overlap_fit_and_cover_every_sentence() -> None:
    sents = [f"Sentence number {i} talks about topic {i} in some detail here." for i in range(30)]
    text = " ".join(sents)
    wins = make_windows([("p1", text)], words, window_tokens=40, stride_tokens=20)
    assert len(wins) > 3
    assert all(w.tokens <= 40 and text[w.start:w.end] == w.text and w.passage_id == "p1" for w in wins)
    for s in sents:
        assert any(s in w.text for w in wins)
    assert all(b.start < a.end for a, b in zip(wins, wins[1:]))  # consecutive windows overlap


def test_a_sentence_longer_than_a_window_is_chunked() -> None:
    long = " ".join(f"w{i}" for i in range(100)) + "."
    wins = make_windows([("x", long)], words, window_tokens=30, stride_tokens=15)
    assert len(wins) >= 4 and all(w.tokens <= 30 for w in wins)
    assert wins[-1].text.endswith("w99.")


def test_bm25_prefers_the_window_with_the_claim_words() -> None:
    docs = ["The river flows through Vienna and Budapest.", "The tower was completed in 1889 in Paris.",
            "Bread is made from flour and water."]
    assert Bm25(docs).top_k("When was the Paris tower completed?", 1) == [1]


def test_coverage_counts_content_words() -> None:
    assert coverage("The tower was completed in 1889.", "tower completed 1889") == 1.0
    assert coverage("The tower was completed in 1925.", "tower completed 1889") == pytest.approx(2 / 3)


@pytest.mark.parametrize("sentence", ["Hello!", "Thanks for asking.", "I don't know.", "Is it true?",
                                      "Here is what I found:", "I hope this helps.", "Sure!",
                                      "The context does not mention the date.", "I'm not sure about that."])
def test_non_claims_are_skipped(sentence: str) -> None:
    assert is_non_claim(sentence)


@pytest.mark.parametrize("sentence", ["The tower is 330 metres tall.", "Chile", "Hello Kitty was created in 1974.",
                                      "Thanks to the treaty, trade grew by 40%."])
def test_claims_are_kept(sentence: str) -> None:
    assert not is_non_claim(sentence)


def test_a_recurring_passage_is_segmented_once_and_callers_cannot_corrupt_the_cache() -> None:
    from guardrail_invariants.text import _split_cached

    text = "Dr. Smith arrived in Paris at 5 p.m. on Monday. He left on Tuesday. The museum was closed."
    first = split_sentences(text)
    hits = _split_cached.cache_info().hits
    first.append(first[0])  # a caller's list is its own
    again = split_sentences(text)
    assert _split_cached.cache_info().hits == hits + 1
    assert [s.text for s in again] == ["Dr. Smith arrived in Paris at 5 p.m. on Monday.", "He left on Tuesday.",
                                       "The museum was closed."]
