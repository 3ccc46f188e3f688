"""Builds the NLI judge's training groups from train-side data, cut into premises exactly as the invariant cuts them.

Why here and not in `models/training`: the pairs must look like what the model sees at inference — with the default
`--premise sentences`, the premises `guardrail_invariants.text.SentencePremises` assembles from the context's sentences
(the most relevant ones within 96 tokens, the best one in its neighbours' company, the next most relevant: what the
entailment check scores), written in the model's input normalization (`--normalize canonical_v1`, as the runtime
rewrites them); multi-sentence hypotheses split into claims by `split_sentences` — and `models` may not import
`invariants`. `--premise windows` is the older shape (128-token windows, each claim with its BM25-best two; the v2-v4
groups files were built that way, with the padded count `token_count`). The trainer
(`guardrail_models.training.train --groups FILE`) reads the groups this writes and knows nothing of premises.

A group is what one training example means:
  - `single`: one (premise, hypothesis) pair with a 3-way label (or binary `not_entailment`, trained as
    P(neutral) + P(contradiction));
  - `mil`: a claim (or the claims of a summary) against its premises cut from a long context, with one binary label for the
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
import io
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from guardrail_invariants.text import Bm25, SentencePremises, is_non_claim, make_windows, sentence_units, split_sentences

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
    """Tokens as the tokenizer file counts them: padded to 128 (the count the windows-shaped groups files used)."""
    global _tok
    if _tok is None:
        from tokenizers import Tokenizer

        _tok = Tokenizer.from_file(str(TOKENIZER))
    return len(_tok.encode(text, add_special_tokens=False).ids)


_raw_tok = None


def unpadded_token_count(text: str) -> int:
    """The model's own count (same WordPiece vocabulary), unpadded and untruncated: what the invariant measures."""
    global _raw_tok
    if _raw_tok is None:
        from tokenizers import Tokenizer

        _raw_tok = Tokenizer.from_file(str(TOKENIZER))
        _raw_tok.no_padding()
        _raw_tok.no_truncation()
    return len(_raw_tok.encode(text, add_special_tokens=False).ids)


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
          count_tokens: Callable[[str], int] | None = None, shape: str = "windows", premise_tokens: int = 96,
          normalize: Callable[[str], str] | None = None) -> dict:
    """One training group, cut as at inference (see module doc). `shape` "sentences": each claim against every
    premise `SentencePremises.all_for` gives it (counted by `count_tokens`, default `unpadded_token_count`);
    "windows": against its BM25-best `windows_per_claim` windows, counted by `count_tokens` (default `token_count`,
    which pads every text to 128 tokens, so each sentence is a window of its own — how the v2-v4 groups files were
    cut; `guardrail adapt` passes the model's unpadded count). `normalize` rewrites every pair as the
    model's runtime does (its manifest's `input_normalization`)."""
    claims = claims_of(hypothesis, split_claims)
    if shape == "sentences":
        sp = SentencePremises(sentence_units([("1", premise)], count_tokens or unpadded_token_count, premise_tokens),
                              premise_tokens)
        cut = [(ci, text) for ci, claim in enumerate(claims) for text in sp.all_for(claim)] or [(0, premise)]
    else:
        windows = make_windows([("1", premise)], count_tokens or token_count, window_tokens, stride_tokens)
        texts = [w.text for w in windows] or [premise]
        bm25 = Bm25(texts)
        cut = [(0, premise)] if len(windows) <= 1 and len(claims) == 1 else \
            [(ci, texts[wi]) for ci, claim in enumerate(claims) for wi in bm25.top_k(claim, windows_per_claim)]
    norm = normalize or (lambda t: t)
    pairs = [[norm(text), norm(claims[ci])] for ci, text in cut]
    if len(pairs) == 1:
        return {"mode": "single", "pairs": pairs, "claim": [0], "label": label}
    binary = "entailment" if label == "entailment" else "not_entailment"
    return {"mode": "mil", "pairs": pairs, "claim": [ci for ci, _ in cut], "label": binary}


def _from_mix_row(row: dict, shape: str = "windows", normalization: str | None = None) -> dict:
    from guardrail_models.canonical import NORMALIZERS

    g = group(row["premise"], row["hypothesis"], row["label"], split_claims=row["dataset"] in SUMMARY_SOURCES,
              shape=shape, normalize=NORMALIZERS[normalization] if normalization else None)
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
    ap.add_argument("--premise", choices=["sentences", "windows"], default="sentences",
                    help="premise shape (module doc); the v2-v4 groups files: windows")
    ap.add_argument("--normalize", choices=["canonical_v1", "none"], default="canonical_v1",
                    help="input normalization the pairs are written in (the v2-v4 groups files: none)")
    args = ap.parse_args()
    rows = list(mix_rows(args.halueval_summaries, args.seed)) + list(snli_dev_rows()) \
        + list(synthetic_rows(args.synthetic, args.seed)) + list(everyday_rows(args.everyday, args.seed))
    with ProcessPoolExecutor(args.workers) as pool:
        build = partial(_from_mix_row, shape=args.premise,
                        normalization=None if args.normalize == "none" else args.normalize)
        groups = list(pool.map(build, rows, chunksize=256))
    counts: Counter[tuple[str, str, str]] = Counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # no file name or time in the gzip header: the same command writes the same bytes (the run records their sha256)
    with args.out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            io.TextIOWrapper(gz, encoding="utf-8") as f:
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
