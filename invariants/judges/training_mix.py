"""Builds the NLI judge's training groups from train-side data, cut into windows exactly as the invariant cuts them.

Why here and not in `models/training`: the pairs must look like what the model sees at inference — premises cut by
`guardrail_invariants.text.make_windows` into 128-token sentence-aligned windows, multi-sentence hypotheses split into claims by
`split_sentences`, each claim paired with its BM25-best windows — and `models` may not import `invariants`. The
trainer (`guardrail_models.training.train --groups FILE`) reads the groups this writes and knows nothing of windows.

A group is what one training example means:
  - `single`: one (premise, hypothesis) pair with a 3-way label (or binary `not_entailment`, trained as
    P(neutral) + P(contradiction));
  - `mil`: a claim (or the claims of a summary) against its windows of a long premise, with one binary label for the
    whole group. The group's P(entailment) is min over claims of max over each claim's windows — the invariant's own
    aggregation — so a long document needs only one window to support a claim, and one unsupported sentence is enough
    to make a summary unsupported, without anyone labelling sentences.

Sources: `../shared/data/train/groundedness_mix_v1.jsonl.gz` (human-labelled; HaluEval summaries, whose negatives are
LLM-written, subsampled and weighted lower), `train/snli_dev.jsonl`, synthetic WikiText pairs
(`guardrail_models.training.generator`, with its mechanical rewordings) and templated everyday facts
(`guardrail_models.training.everyday`). A fixed share of every source is held out as `calib` (never trained on): the
calibration and the hybrid rule are fitted on it (`guardrail_invariants.judges.fit_hybrid`). Never reads `dev/`.

Run: `python -m guardrail_invariants.judges.training_mix --out /tmp/gr_v3/groups.jsonl.gz`
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from guardrail_invariants.text import Bm25, is_non_claim, make_windows, split_sentences

DATA = Path(os.environ.get("GUARDRAIL_DATA", "/work/shared/data"))
MIX = DATA / "train/groundedness_mix_v1.jsonl.gz"
SNLI_DEV = DATA / "train/snli_dev.jsonl"
REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "models/zoo/minilm-l6-embed/tokenizer.json"  # the backbone's WordPiece vocabulary
LABELS3 = ("entailment", "neutral", "contradiction")
SUMMARY_SOURCES = {"halueval_eval_suite", "summedits"}  # hypotheses are multi-sentence summaries: split into claims
LOW_WEIGHT = {"halueval_eval_suite": 0.5}  # LLM-written negatives (data README)

_tok = None


def token_count(text: str) -> int:
    global _tok
    if _tok is None:
        from tokenizers import Tokenizer

        _tok = Tokenizer.from_file(str(TOKENIZER))
    return len(_tok.encode(text, add_special_tokens=False).ids)


def is_calib(key: str, share: float) -> bool:
    """Stable hold-out by hash of the premise: every pair of one premise lands on the same side (no leakage of
    VitaminC's contrastive twins or SummEdits' edits of one document across the split)."""
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < share


def claims_of(hypothesis: str, split: bool) -> list[str]:
    if not split:
        return [hypothesis]
    claims = [s.text for s in split_sentences(hypothesis) if not is_non_claim(s.text)]
    return claims or [hypothesis]


def group(premise: str, hypothesis: str, label: str, *, split_claims: bool = False, window_tokens: int = 128,
          stride_tokens: int = 64, windows_per_claim: int = 2,
          count_tokens: Callable[[str], int] | None = None) -> dict:
    """One training group, windowed as at inference (see module doc). `count_tokens` defaults to `token_count`, whose
    tokenizer file pads every text to 128 tokens, so each sentence becomes a window of its own; the groups files of
    the runs in models/README.md were built that way and are rebuilt bit for bit with the default. `guardrail adapt`
    passes the model's own unpadded count, which windows premises as the invariant does."""
    claims = claims_of(hypothesis, split_claims)
    windows = make_windows([("1", premise)], count_tokens or token_count, window_tokens, stride_tokens)
    if len(windows) <= 1 and len(claims) == 1:
        return {"mode": "single", "pairs": [[premise, claims[0]]], "claim": [0], "label": label}
    texts = [w.text for w in windows] or [premise]
    bm25 = Bm25(texts)
    pairs, owner = [], []
    for ci, claim in enumerate(claims):
        for wi in bm25.top_k(claim, windows_per_claim):
            pairs.append([texts[wi], claim])
            owner.append(ci)
    binary = "entailment" if label == "entailment" else "not_entailment"
    return {"mode": "mil", "pairs": pairs, "claim": owner, "label": binary}


def _from_mix_row(row: dict) -> dict:
    g = group(row["premise"], row["hypothesis"], row["label"], split_claims=row["dataset"] in SUMMARY_SOURCES)
    g.update(source=row["dataset"], weight=LOW_WEIGHT.get(row["dataset"], 1.0), id=row["id"])
    return g


def mix_rows(halueval_keep: int, seed: int) -> Iterator[dict]:
    rng = random.Random(seed)
    rows = [json.loads(line) for line in gzip.open(MIX, "rt", encoding="utf-8")]
    halu = sorted({r["premise"] for r in rows if r["dataset"] == "halueval_eval_suite"})
    keep = set(rng.sample(halu, min(halueval_keep, len(halu))))
    for r in rows:
        if r["dataset"] != "halueval_eval_suite" or r["premise"] in keep:
            yield r


def snli_dev_rows() -> Iterator[dict]:
    for i, line in enumerate(SNLI_DEV.read_text(encoding="utf-8").splitlines()):
        r = json.loads(line)
        if r.get("label") in LABELS3:
            yield {"id": f"snli_dev-{i}", "premise": r["context"], "hypothesis": r["response"], "label": r["label"],
                   "dataset": "snli_dev"}


def synthetic_rows(n: int, seed: int) -> Iterator[dict]:
    from guardrail_models.training.train import split_documents
    from guardrail_models.training.generator import PairGenerator

    train_docs, _ = split_documents()
    for i, p in enumerate(PairGenerator(train_docs, seed=seed, max_window_words=95).generate(n)):
        yield {"id": f"synthetic-{i}", "premise": p.premise, "hypothesis": p.hypothesis, "label": p.label,
               "dataset": f"synthetic_{p.kind}"}


def everyday_rows(n: int, seed: int) -> Iterator[dict]:
    from guardrail_models.training.everyday import everyday_pairs

    for i, (premise, hypothesis, label, kind) in enumerate(everyday_pairs(n, seed)):
        yield {"id": f"everyday-{i}", "premise": premise, "hypothesis": hypothesis, "label": label,
               "dataset": f"synthetic_{kind}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--synthetic", type=int, default=15000)
    ap.add_argument("--everyday", type=int, default=6000, help="templated everyday facts (opening hours, doses, ...)")
    ap.add_argument("--halueval-summaries", type=int, default=3000, help="HaluEval articles kept (x2 summaries)")
    ap.add_argument("--calib-share", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = list(mix_rows(args.halueval_summaries, args.seed)) + list(snli_dev_rows()) \
        + list(synthetic_rows(args.synthetic, args.seed)) + list(everyday_rows(args.everyday, args.seed))
    with ProcessPoolExecutor(args.workers) as pool:
        groups = list(pool.map(_from_mix_row, rows, chunksize=256))
    counts: Counter[tuple[str, str, str]] = Counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        for row, g in zip(rows, groups, strict=True):
            g["split"] = "calib" if is_calib(row["premise"], args.calib_share) else "train"
            g["context"], g["response"], g["orig_label"] = row["premise"], row["hypothesis"], row["label"]
            counts[(g["split"], g["source"].split("_")[0] if g["source"].startswith("synthetic") else g["source"],
                    g["mode"])] += 1
            f.write(json.dumps(g, ensure_ascii=False) + "\n")
    for k, v in sorted(counts.items()):
        print(*k, v, sep="\t")
    print(f"pairs: {sum(len(g['pairs']) for g in groups)} in {len(groups)} groups -> {args.out}")


if __name__ == "__main__":
    main()
