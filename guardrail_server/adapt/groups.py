"""The trainer's groups file for an adaptation round: the document pairs plus a replayed sample of the general mix.

Format: `guardrail_invariants.judges.training_mix` (one JSON object per line, gzip): `mode` single|mil, `pairs`
[[premise window, claim], ...], `claim`, `label`, `source`, `weight`, `split`. Every pair goes through
`training_mix.group` with the base model's own token count (`token_counter`), so a premise longer than 128 tokens is
cut into sentence-aligned windows (the invariant's `premise: windows` shape), and a premise that fits one window — a
document pair's premise of 1-4 sentences and at most 95 words, about the size of the invariant's default sentence
premises of at most 96 tokens — stays one 3-way labelled pair (training_mix's default count pads every sentence to 128 tokens: each sentence
would be a window of its own, and a claim resting on two sentences would be trained as supported by neither).
Document pairs are `source: adapt/<kind>`; the replay is drawn from the **train side** of the human-labelled
mix (`training_mix.mix_rows`, `snli_dev_rows`; the rows `training_mix.is_calib` holds out are never replayed) — the
same rows the judge's general training reads, so a round on the user's documents does not make it forget them.
`exclude` keeps sources out of the replay (a measurement that evaluates on them, e.g. a SummEdits domain). Where the
model's manifest declares an input normalization, every pair is written normalized (`normalizer`).
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guardrail_server.adapt.pairs import DocPair

CALIB_SHARE = 0.03  # training_mix's default hold-out share: never replayed
HALUEVAL_KEEP = 3000  # training_mix's default: HaluEval summary articles kept


Counter_ = Callable[[str], int]


def token_counter(model_dir: Path) -> Counter_:
    """Tokens of a text under the model's own tokenizer, unpadded and untruncated (what the invariant's windows are
    measured in)."""
    from tokenizers import Tokenizer

    from guardrail_models.manifest import load_manifest

    tok = Tokenizer.from_file(str(Path(model_dir) / load_manifest(model_dir, verify=False).tokenizer_file))
    tok.no_padding()
    tok.no_truncation()
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def normalizer(model_dir: Path) -> Callable[[str], str] | None:
    """The input normalization the model's manifest declares (`guardrail_models.canonical`): the runtime rewrites
    premise and claim with it before tokenizing, so the training pairs are written in the same form."""
    from guardrail_models.canonical import NORMALIZERS
    from guardrail_models.manifest import load_manifest

    name = load_manifest(model_dir, verify=False).input_normalization
    return NORMALIZERS[name] if name else None


def doc_group(pair: DocPair, count: Counter_, normalize: Callable[[str], str] | None = None) -> dict[str, Any]:
    from guardrail_invariants.judges.training_mix import group

    g = group(pair.premise, pair.claim, pair.label, count_tokens=count, normalize=normalize)
    g.update(source=f"adapt/{pair.kind}", weight=1.0, split="train")
    return g


def replay_rows(n: int, seed: int, exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    """`n` rows of the general mix's train side (seeded), none whose `source` or `dataset` starts with an `exclude`."""
    from guardrail_invariants.judges.training_mix import is_calib, mix_rows, snli_dev_rows

    if n <= 0:
        return []

    def excluded(row: dict[str, Any]) -> bool:
        return any(str(row.get(key, "")).startswith(prefix) for prefix in exclude for key in ("source", "dataset"))

    rows = [r for r in [*mix_rows(HALUEVAL_KEEP, 17), *snli_dev_rows()]
            if not excluded(r) and not is_calib(r["premise"], CALIB_SHARE)]
    return random.Random(seed).sample(rows, min(n, len(rows)))


def replay_groups(rows: Sequence[dict[str, Any]], count: Counter_,
                  normalize: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """Mix rows as training_mix makes them (summaries split into claims, HaluEval weighted down), windowed by
    `count`."""
    from guardrail_invariants.judges.training_mix import LOW_WEIGHT, SUMMARY_SOURCES, group

    out = []
    for r in rows:
        g = group(r["premise"], r["hypothesis"], r["label"], split_claims=r["dataset"] in SUMMARY_SOURCES,
                  count_tokens=count, normalize=normalize)
        g.update(source=r["dataset"], weight=LOW_WEIGHT.get(r["dataset"], 1.0), id=r["id"], split="train")
        out.append(g)
    return out


def write_groups(path: Path, groups: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Writes the groups shuffled (seeded); returns counts per source family and pairs."""
    order = list(groups)
    random.Random(seed).shuffle(order)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f, gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8") as fh:  # no name or time in the header: same groups, same bytes
        for g in order:
            fh.write(json.dumps(g, ensure_ascii=False) + "\n")
    by = Counter("documents" if g["source"].startswith("adapt/") else "replay" for g in order)
    return {"groups": len(order), "pairs": sum(len(g["pairs"]) for g in order), "documents": by["documents"],
            "replay": by["replay"]}
