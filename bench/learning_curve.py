"""Learning curve of a training run: every checkpoint measured on fixed dev slices, so whoever resumes the run sees whether
more steps still pay — and stops a run that has plateaued.

`python -m bench.learning_curve --run runs/minilm-groundedness-v4 [--watch] [--plot models/learning_curve_v4.png]`

Per checkpoint not yet in the run's `curve.jsonl`: the trainable weights on the backbone -> int8 ONNX (the shipped recipe)
-> `guardrail eval` (in process, the servicer's engine, `judge: model`) on seeded, label-stratified slices of halueval_qa,
wice_claims, climate_fever_pairs and the project's rewording set (`data/rewording_dev`), plus SNLI test: 3-way accuracy
and entailment-vs-rest AUROC. AUROC, balanced accuracy at P(entailment) 0.5, and the share of correct answers flagged
at 0.5 are appended; `--plot` draws AUROC per set against steps. Slices, not whole sets: a point costs a few minutes.
dev/ is measured, never trained on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.nli_eval import DATA, LABELS, REWORDING_SET, evaluate_set
from guardrail_invariants.stats import auroc

REPO = Path(__file__).resolve().parents[1]
SLICES = {"halueval_qa": 200, "wice_claims": 200, "climate_fever_pairs": 300, "rewording_dev_v1": None}
SNLI_N = 300


def stratified(rows: list[dict], n: int | None, seed: int = 0) -> list[dict]:
    """A seeded slice with the labels in their original proportions (dev files are often sorted by label)."""
    if n is None or n >= len(rows):
        return rows
    rng = random.Random(seed)
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(str(r.get("label")), []).append(r)
    out = []
    for label, group in sorted(by.items()):
        out += rng.sample(group, max(1, round(n * len(group) / len(rows))))
    rng.shuffle(out)
    return out


def slice_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in SLICES.items():
        src = REWORDING_SET if name == "rewording_dev_v1" else DATA / "dev" / f"{name}.jsonl"
        path = folder / f"{name}.jsonl"
        if not path.exists():
            rows = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stratified(rows, n)))
        out[name] = path
    return out


def export_checkpoint(ckpt: Path, run: Path, zoo: Path, name: str, normalization: str | None = None) -> None:
    """Backbone + the checkpoint's trainable weights -> int8 ONNX in `zoo/name` (the shipped quantization), its
    manifest declaring `normalization` (the input normalization the run's groups were written in)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from guardrail_models.importer import import_hf_checkpoint
    from guardrail_models.training.train import BACKBONES, LABELS as TRAIN_LABELS, backbone_dir

    config = json.loads((run / "run.json").read_text())
    backbone = config["backbone"]
    src = Path(config["init"]) if config.get("init") else (
        backbone_dir(backbone) if backbone in BACKBONES else Path(backbone))
    tok = AutoTokenizer.from_pretrained(str(src), use_fast=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(src), num_labels=3, id2label=dict(enumerate(TRAIN_LABELS)),
        label2id={k: i for i, k in enumerate(TRAIN_LABELS)})
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"], strict=False)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        family = BACKBONES[backbone][2] if backbone in BACKBONES else "bert-minilm"
        manifest = import_hf_checkpoint(Path(tmp), zoo / name, name, family=family,
                                        license="work in progress (not shipped)", quantize=True,
                                        source=f"learning-curve export of {ckpt.name}", max_length=256,
                                        training={"step": state["step"], "pairs_seen": state["seen"]})
    manifest.input_normalization = normalization
    manifest.write(zoo / name)


async def snli(model: str, zoo: Path | None, n: int) -> dict[str, float]:
    from guardrail_models.zoo import ModelZoo, ZooSettings

    rows = stratified([json.loads(x) for x in (DATA / "dev/snli_test.jsonl").read_text().splitlines()], n)
    m = await ModelZoo(ZooSettings(models_dir=zoo)).load_nli(model)
    probs = np.concatenate([await asyncio.to_thread(m.predict_sync, [(r["context"], r["response"])]) for r in rows])
    gold = np.array([LABELS.index(r["label"]) for r in rows])
    return {"snli_acc3": float((probs.argmax(1) == gold).mean()),
            "snli_auroc": float(auroc(probs[:, 0], gold == 0))}


async def measure_model(name: str, zoo: Path | None, files: dict[str, Path]) -> dict[str, Any]:
    """The curve's figures for one zoo model (a checkpoint's export, or a shipped model as the baseline)."""
    from guardrail_server.evals.results import read_rows

    point: dict[str, Any] = {}
    for set_name, path in files.items():
        out = Path(tempfile.mkdtemp(prefix="curve_"))
        r = await evaluate_set(path, "entailment", name, "model", models_dir=str(zoo) if zoo else None, out_dir=out,
                               threshold=0.5)
        rows = [x for x in read_rows(out) if x["invariant"] == "entailment"]
        supported = [x for x in rows if x.get("expected") == "pass"]
        flagged = sum(1 for x in supported if x.get("outcome") != "pass") / max(len(supported), 1)
        point[set_name] = {"auroc": r.auroc, "bal_acc_0.5": r.balanced_accuracy, "flag_rate_correct_0.5": flagged,
                           "n": r.n}
        shutil.rmtree(out, ignore_errors=True)
    return point | await snli(name, zoo, SNLI_N)


async def measure(ckpt: Path, run: Path, files: dict[str, Path], normalization: str | None) -> dict[str, Any]:
    step = int(ckpt.stem.split("-")[1])
    zoo = run / "curve-zoo"
    name = f"curve-step{step}"
    t0 = time.time()
    import torch

    blob = torch.load(ckpt, map_location="cpu", weights_only=False)  # before a newer checkpoint rotates it away
    trained = {"pairs_seen": blob["seen"], "train_minutes": round(blob["train_s"] / 60, 1), "loss_ema": blob["loss_ema"]}
    del blob
    export_checkpoint(ckpt, run, zoo, name, normalization)
    point: dict[str, Any] = {"step": step, "input_normalization": normalization}
    point |= await measure_model(name, zoo, files)
    point["minutes_to_measure"] = round((time.time() - t0) / 60, 1)
    shutil.rmtree(zoo / name, ignore_errors=True)
    return point | trained


def plot(points: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(points, key=lambda p: p["step"])
    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name in SLICES:
        ax.plot(steps, [p[name]["auroc"] for p in points], marker="o", label=name)
    ax.plot(steps, [p["snli_auroc"] for p in points], marker="o", label="snli (entailment vs rest)")
    ax.set_xlabel("training step (32 pairs each)")
    ax.set_ylabel("AUROC (dev slices, int8, judge: model)")
    ax.set_title(title)
    ax.set_ylim(0.4, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def table(points: list[dict[str, Any]]) -> str:
    head = ["step", "min trained", *SLICES, "snli AUROC", "snli acc3", "reword flagged@0.5"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in sorted(points, key=lambda p: p["step"]):
        cells = [str(p["step"]), str(p.get("train_minutes", "-"))]
        cells += [f"{p[s]['auroc']:.3f}" if p[s]["auroc"] is not None else "-" for s in SLICES]
        cells += [f"{p['snli_auroc']:.3f}", f"{p['snli_acc3']:.3f}",
                  f"{p['rewording_dev_v1']['flag_rate_correct_0.5']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from guardrail_models.training import checkpoint as ck
    from guardrail_server.logs import configure_logging

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="the run folder (runs/<name>)")
    ap.add_argument("--mirror", type=Path, default=None, help="default ~/.cache/guardrail-train/<name>")
    ap.add_argument("--watch", action="store_true", help="keep measuring new checkpoints (poll every 2 minutes)")
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--baseline", default=None, metavar="MODEL",
                    help="also measure this zoo model once, drawn as step 0 (e.g. the shipped judge the run starts from)")
    ap.add_argument("--baseline-models-dir", type=Path, default=None,
                    help="where --baseline lives (a copy without input normalization: checkpoints are measured "
                    "without it, so step 0 must be too)")
    ap.add_argument("--input-normalization", choices=["canonical_v1", "none"], default="canonical_v1",
                    help="what each checkpoint's export declares: the form its groups were written in "
                    "(training_mix --normalize; v4/v4w: none)")
    args = ap.parse_args()
    normalization = None if args.input_normalization == "none" else args.input_normalization
    configure_logging("warning")
    mirror = args.mirror or ck.CACHE / args.run.name
    curve = args.run / "curve.jsonl"
    files = slice_files(args.run / "curve-sets")
    if args.baseline:
        base = args.run / "baseline.json"
        if not base.exists():
            base.write_text(json.dumps({"step": 0, "model": args.baseline,
                                        **asyncio.run(measure_model(args.baseline, args.baseline_models_dir, files))}))
            if mirror.is_dir():
                shutil.copy2(base, mirror / base.name)
    while True:
        points = [json.loads(x) for x in curve.read_text().splitlines()] if curve.exists() else []
        if (args.run / "baseline.json").exists():
            points = [json.loads((args.run / "baseline.json").read_text())] + [p for p in points if p["step"] != 0]
        done = {p["step"] for p in points}
        todo = [c for c in ck.checkpoints(args.run) if int(c.stem.split("-")[1]) not in done]
        for c in todo[-1:]:  # the newest: a backlog is skipped rather than measured late
            point = asyncio.run(measure(c, args.run, files, normalization))
            with curve.open("a") as f:
                f.write(json.dumps(point) + "\n")
            if mirror.is_dir():
                shutil.copy2(curve, mirror / "curve.jsonl")
            points.append(point)
            print(json.dumps(point), flush=True)
        if points and args.plot:
            plot(points, args.plot, f"{args.run.name}: learning curve")
        if points:
            print(table(points), flush=True)
        if not args.watch:
            return
        time.sleep(120)


if __name__ == "__main__":
    main()
