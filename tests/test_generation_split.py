"""The streamed sentence splitter (guardrail_invariants.streaming): fed a response in pieces cut anywhere, it gives out
exactly the sentences the unary checks split it into (`claim_sentences` on the full text), each only once the text
after it proves its end."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from guardrail_invariants.citations import claim_sentences
from guardrail_invariants.streaming import SentenceStream
from guardrail_invariants.text import Span
from guardrail_invariants.types import Passage

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
PASSAGES = (Passage("doc-1", "The tower is 330 m tall."), Passage("doc-2", "It opened in 1889."),
            Passage("3", "Contact jane.doe@example.com."))

# Each one holds cuts that a naive splitter gets wrong: markers, decimals, abbreviations, initials, e-mails and URLs,
# quotes, glued sentences, list lines, a code fence with an index in it, a reference list under a Sources heading.
TRICKY = [
    "The Eiffel Tower is 330 m tall [1]. It opened in 1889 [2]. Dr. Smith said it cost 3.5 million francs. "
    "Write to jane.doe@example.com for details. Done.",
    "It is 3.5 m long. The U.S. Government agreed. Mr. Jones left at 5 p.m. yesterday. He said \"Stop. Now go.\" "
    "Then he left.",
    "France.[1] It is big.[doc-2] See https://example.com/a.b for more. Prices rose 2.5% in Q3. E.g. this one.",
    "Hello!How are you? I am fine...Really. Yes!\n- First item.\n- Second item [3].\n\nA new paragraph. It ends here",
    "Code:\n```\nx = a[1]. y = 2.\n```\nAfter code [1]. More text here.\nSources:\n1. [Tower](https://example.com/t)\n"
    "[2]: https://example.com/o",
    "The value is $x[1]$. Next sentence here. Call 555-123-4567 or email bob@mail.co.uk. OK. The end.",
    "The meeting is at 10 a.m. on Jan. 5. Please arrive early. St. Louis is nice. No. 5 is best. I.e. the 5th one.",
    "(meta data) TITLE: A page (2017) By J. R. R. Tolkien on March 2, 2017 (Featured photo, left to right: A. B. C)",
    # markdown-link citations: a title in parentheses, links after the sentence, content links kept, anchors
    "The tower is 330 m tall ([Eiffel Tower](https://example.com/t), [Opening](https://example.com/o)). "
    "[The tower](https://example.com/t) opened in 1889 (see [2]). It is tall [source](#doc-1). It opened. "
    "[Eiffel Tower](https://example.com/t)\nVisit [the tower](https://example.com/t)\nIt is tall [1](doc://doc-1).",
]


def _same(got: list[Span], want: list[Span]) -> bool:
    """Same spans; same claim text up to whitespace (a marker later in the response makes the unary splitter collapse
    every sentence's whitespace, which no piece before it can know; the NLI tokenizer reads both the same)."""
    return [(s.start, s.end, " ".join(s.text.split())) for s in got] == \
        [(s.start, s.end, " ".join(s.text.split())) for s in want]


def _stream(pieces: list[str]) -> tuple[list[Span], int]:
    stream = SentenceStream(PASSAGES)
    out: list[Span] = []
    for piece in pieces:
        out += stream.feed(piece)
    early = len(out)
    return out + stream.close(), early


def _tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) + ([text[len(text.rstrip()):]] if text != text.rstrip() else [])


@pytest.mark.parametrize("text", TRICKY, ids=lambda t: t[:24])
def test_cut_at_every_position_gives_the_unary_sentences(text: str) -> None:
    want = claim_sentences(text, PASSAGES)
    cuts = [[text[:i], text[i:]] for i in range(1, len(text))] + [list(text), _tokens(text)]
    rng = random.Random(7)
    for _ in range(30):
        pieces, i = [], 0
        while i < len(text):
            n = rng.randint(1, 9)
            pieces.append(text[i : i + n])
            i += n
        cuts.append(pieces)
    for pieces in cuts:
        got, _ = _stream(pieces)
        assert _same(got, want), (pieces[:3], [(s.start, s.end) for s in got], [(s.start, s.end) for s in want])


def test_a_sentence_is_given_out_only_once_the_text_after_it_proves_its_end() -> None:
    stream = SentenceStream()
    assert stream.feed("It is 3.") == []  # "3." may be "3.5"
    assert stream.feed("5 m tall. T") == []  # "T" could be "T. S. Eliot ...": one capital proves nothing
    assert stream.feed("he U.S. ") == [Span("It is 3.5 m tall.", 0, 17)]  # ". Th" after a plain word: certain
    assert stream.feed("Government agreed") == []
    assert stream.feed(" with it. ") == []  # nothing after it yet
    assert [s.text for s in stream.feed("Dr. Smith")] == ["The U.S. Government agreed with it."]
    assert stream.feed(" met Mr. Li at noon. [1") == []  # "[1" may be a marker: it proves nothing
    assert [s.text for s in stream.feed("]\nNext")] == ["Dr. Smith met Mr. Li at noon."]  # a line break proves all
    assert [s.text for s in stream.close()] == ["Next"]

    stream = SentenceStream()
    assert stream.feed("He met A. B. Li. I ") == []  # "I" alone is no proof ("I." is an initial)
    assert [s.text for s in stream.feed("am ")] == ["He met A. B. Li."]  # two complete words after it: final
    assert stream.feed('She said "Go. Now. ') == []  # an open quote: only a line break or the close proves it
    assert [s.text for s in stream.feed('Right now." Then ')] == ['I am She said "Go. Now. Right now."']
    assert [s.text for s in stream.feed("she left.\n")] == ["Then she left."]
    assert stream.close() == []


def test_dev_responses_and_contexts_split_the_same_streamed_word_by_word() -> None:
    """~30 dev responses (HaluEval answers, WiCE claims) and 60 multi-sentence dev contexts, fed as LLM-like tokens
    (" word") and cut at every 7th character; most sentences of the contexts come out before the close."""
    rng = random.Random(11)
    halueval = [json.loads(line) for line in (DEV / "halueval_qa.jsonl").open()]
    wice = [json.loads(line) for line in (DEV / "wice_claims.jsonl").open()]
    texts = [r["response"] for r in rng.sample(halueval, 15) + rng.sample(wice, 15)]
    contexts = [r["context"] for r in rng.sample(halueval, 40)]
    contexts += [" ".join(r["context"][:6]) for r in rng.sample(wice, 20)]
    early = total = 0
    for text in texts + contexts:
        want = claim_sentences(text, PASSAGES)
        got, n = _stream(_tokens(text))
        assert _same(got, want), text[:80]
        for i in range(1, len(text), 7):
            assert _same(_stream([text[:i], text[i:]])[0], want), (text[:80], i)
        if text in contexts:
            early += n
            total += len(want)
    assert early >= 0.4 * total, (early, total)


def test_a_long_line_without_a_provable_end_is_not_split_again_on_every_piece() -> None:
    stream = SentenceStream(max_region_chars=200)
    calls = 0
    original = stream._split

    def counting(start: int, end: int) -> list[Span]:
        nonlocal calls
        calls += 1
        return original(start, end)

    stream._split = counting  # type: ignore[method-assign]
    stream.feed('He said "')  # a quote that never closes: nothing after it is proven until the close
    for _ in range(400):
        assert stream.feed("Go home. ") == []  # every piece ends a candidate sentence
    assert calls < 40  # split again only while the open region is under max_region_chars
    assert _same(stream.close(), claim_sentences('He said "' + "Go home. " * 400))
