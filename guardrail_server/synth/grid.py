"""The dimensional grid: kind x response length x passages per case x citation format, and the plan over it.

Kinds get shares of `--cases` in proportion to their weights (all 1.0, or steered by `--anchors`); inside a kind the
cases are spread evenly over the cells its construction allows (a kind that needs two passages has no
one-passage cells; a citation kind has no `none` column), in a seeded order, so any two cells of a kind differ by at
most one planned case.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from guardrail_server.synth.kinds import KINDS
from guardrail_server.synth.markers import FORMATS

LENGTHS: tuple[str, ...] = ("1", "2-3", "4+")  # sentences in the response
PASSAGES: tuple[str, ...] = ("1", "2-3", "4+")  # passages in the context
_LINE_RANGE = {"1": (1, 1), "2-3": (2, 3), "4+": (4, 5)}
_PASSAGE_RANGE = {"1": (1, 1), "2-3": (2, 3), "4+": (4, 6)}


@dataclass(frozen=True, slots=True, order=True)
class Cell:
    length: str
    passages: str
    citation: str


@dataclass(frozen=True, slots=True)
class Slot:
    kind: str
    cell: Cell


def line_count(length: str, rng: random.Random) -> int:
    lo, hi = _LINE_RANGE[length]
    return rng.randint(lo, hi)


def passage_count(passages: str, rng: random.Random) -> int:
    lo, hi = _PASSAGE_RANGE[passages]
    return rng.randint(lo, hi)


def feasible(kind: str, cell: Cell) -> bool:
    spec = KINDS[kind]
    if spec.needs_citation and cell.citation == "none":
        return False
    if _PASSAGE_RANGE[cell.passages][1] < spec.min_passages:
        return False
    if spec.group == "pii" and cell.passages == "1" and cell.length != "1":
        return False  # the only passage is the contact record: nothing to fill a longer response with
    return True


def cells_for(kind: str, lengths: Sequence[str] = LENGTHS, passages: Sequence[str] = PASSAGES,
              citations: Sequence[str] = FORMATS) -> list[Cell]:
    return [c for c in (Cell(length, p, f) for length in lengths for p in passages for f in citations)
            if feasible(kind, c)]


def shares(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of `total` in proportion to `weights` (ties broken by name: deterministic)."""
    positive = {k: w for k, w in weights.items() if w > 0}
    if not positive or total <= 0:
        return {k: 0 for k in weights}
    s = sum(positive.values())
    raw = {k: total * w / s for k, w in positive.items()}
    out = {k: int(v) for k, v in raw.items()}
    left = total - sum(out.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - out[k]), k))[:left]:
        out[k] += 1
    return {k: out.get(k, 0) for k in weights}


def plan(total: int, weights: Mapping[str, float], seed: int, *, lengths: Sequence[str] = LENGTHS,
         passages: Sequence[str] = PASSAGES, citations: Sequence[str] = FORMATS) -> list[Slot]:
    """The slots to fill, kinds interleaved (so a progress bar and an early stop see every kind)."""
    per_kind: dict[str, list[Slot]] = {}
    for kind, quota in shares(total, weights).items():
        cells = cells_for(kind, lengths, passages, citations)
        if not cells or not quota:
            continue
        random.Random(f"{seed}:cells:{kind}").shuffle(cells)
        per_kind[kind] = [Slot(kind, cells[i % len(cells)]) for i in range(quota)]
    slots: list[Slot] = []
    depth = max((len(v) for v in per_kind.values()), default=0)
    for i in range(depth):
        slots += [v[i] for v in per_kind.values() if i < len(v)]
    return slots


def counts(items: Iterable[tuple[str, Cell]]) -> Counter[tuple[str, Cell]]:
    return Counter(items)


def format_grid(cell_counts: Mapping[tuple[str, Cell], int], kinds: Sequence[str], *,
                citations: Sequence[str] = FORMATS) -> str:
    """The count per cell: a row per (kind, response length), a column per (passages, citation format)."""
    cols = [(p, f) for p in PASSAGES for f in citations]
    short = {"none": "no", "numeric": "nu", "ids": "id", "oai": "oa", "markdown": "md"}
    head1 = f"{'kind':<21}{'len':>4} |" + "|".join(f"{('passages ' + p):^{3 * len(citations)}}" for p in PASSAGES) + "|"
    head2 = f"{'':<21}{'':>4} |" + "|".join("".join(f"{short.get(f, f[:2]):>3}" for f in citations)
                                           for _ in PASSAGES) + "|  sum"
    lines = [head1, head2]
    for kind in kinds:
        for length in LENGTHS:
            row = [cell_counts.get((kind, Cell(length, p, f)), 0) for p, f in cols]
            if not any(row) and not any(cell_counts.get((kind, Cell(ln, p, f)), 0)
                                        for ln in LENGTHS for p, f in cols):
                continue
            chunks = ["".join(f"{v:>3}" if v else "  ." for v in row[i:i + len(citations)])
                      for i in range(0, len(row), len(citations))]
            lines.append(f"{kind:<21}{length:>4} |" + "|".join(chunks) + f"|{sum(row):>5}")
    return "\n".join(lines)
