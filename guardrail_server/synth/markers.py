"""Citation markers written into synthetic responses, one format per grid column; each is a format that
`guardrail_invariants.citations` parses (a test round-trips every one through `analyze`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guardrail_server.synth.documents import SynthPassage

FORMATS: tuple[str, ...] = ("none", "numeric", "ids", "oai", "markdown")
EXAMPLES = {"none": "no marker", "numeric": "[1] / [1, 3]", "ids": "[doc-7]", "oai": "\u30103\u2020source\u3011",
            "markdown": "([title](https://...))"}


@dataclass(frozen=True, slots=True)
class Cite:
    """A citation of `passage`, which sits at 1-based `index` of the case's context (past its end: dangling)."""

    index: int
    passage: SynthPassage


def _marker(fmt: str, cites: Sequence[Cite]) -> str:
    if fmt == "numeric":
        return "[" + ", ".join(str(c.index) for c in cites) + "]"
    if fmt == "ids":
        return "[" + ", ".join(c.passage.id for c in cites) + "]"
    if fmt == "oai":
        return "".join(f"\u3010{c.index}\u2020source\u3011" for c in cites)
    if fmt == "markdown":
        return "(" + ", ".join(f"[{c.passage.title or c.passage.id}]({c.passage.url})" for c in cites) + ")"
    raise ValueError(f"unknown citation format {fmt!r}; known: {FORMATS}")


def cite(sentence: str, fmt: str, cites: Sequence[Cite]) -> str:
    """The sentence with its marker: before the final full stop (`... tall [1].`), except the OpenAI style, which
    follows the sentence (`... tall.【1†source】`) as that assistant writes it."""
    if fmt == "none" or not cites:
        return sentence
    marker = _marker(fmt, cites)
    if fmt == "oai":
        return sentence + marker
    body = sentence.rstrip()
    if body[-1:] in ".!?":
        return f"{body[:-1]} {marker}{body[-1]}"
    return f"{body} {marker}"
