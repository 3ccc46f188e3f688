"""The self-taught loop: the judge's torch weights recovered, two rounds of fine-tuning in a bounded time, one export.

    base zoo model (int8 ONNX) --recover--> torch checkpoint            (guardrail_models.training.recover, ~98% argmax
    document pairs --score with the base--> label-noise filter            agreement with the ONNX file it came from)
    round 1: kept pairs + replay   --train.main, no export-->  round-1 weights
    score the kept pairs with round 1 --> the pairs it still gets wrong
    round 2: wrong pairs + as many right ones + replay --train.main --export--> OUT/zoo/NAME (int8 ONNX + manifest)

Both rounds are `guardrail_models.training.train.main` with its own flags (`--groups --init --run-dir --no-mirror
--total-steps --stop-after-min`); only the last round exports (ONNX, dynamic int8, the trainer's ONNX-vs-torch
agreement check), so an adaptation pays for one export. Time: everything before, between and after the rounds is
measured as it happens; each round gets its share of what is left of `minutes` after a reserve for the export and the
evaluations, and ends at its deadline (`--stop-after-min`) or at its planned steps, whichever comes first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_server.adapt import groups as grouping
from guardrail_server.adapt.pairs import DocPair, label_noise, make_pairs, sample, wrong

RATE_GUESS = 12.0  # training pairs/s on two shared cores before a round has measured its own (v2: 28 idle)
EXPORT_RESERVE_S = 150.0  # ONNX export + int8 + the trainer's agreement check, measured ~70-90 s on two busy cores
MIN_ROUND_S = 15.0
RESCORE_SHARE, RESCORE_MIN_S = 0.1, 30.0  # round 1's rescoring of the document pairs: at most this share of --minutes
MAX_EPOCHS = 3


@dataclass(slots=True)
class LoopSettings:
    name: str
    out: Path  # OUT/work: the run state and logs
    zoo_dir: Path  # the model goes to zoo_dir/NAME
    base_dir: Path  # the base zoo model's folder
    deadline: float  # time.time() by which the whole command should be done
    eval_reserve_s: float  # what the evaluations after training are expected to take
    pairs: int = 3000
    replay: float = 1.0  # replayed general-mix groups per document pair
    replay_exclude: tuple[str, ...] = ()
    seed: int = 0
    steps: int | None = None  # round 1's planned steps (round 2: half); None = from the time budget
    lr: float = 2e-5
    pairs_per_batch: int = 16
    threads: int = 2
    label_hook: Callable[[DocPair], str] | None = None  # tests only: the label a pair is trained with


@dataclass(slots=True)
class RoundInfo:
    steps: int
    planned: int
    minutes: float
    groups: dict[str, Any]
    pairs_per_s: float | None
    wrong_before: int | None = None  # document pairs the model got wrong going into this round
    scored_before: int | None = None  # of how many it was scored on


@dataclass(slots=True)
class LoopResult:
    model_dir: Path
    documents: int
    pairs_made: int
    pairs_kept: int
    dropped_by_kind: dict[str, int]
    dropped_examples: list[dict[str, str]]
    pairs_by_label: dict[str, int]
    base_wrong: int
    rounds: list[RoundInfo] = field(default_factory=list)
    agreement: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def scores_onnx(model_dir: Path, pairs: Sequence[DocPair], threads: int) -> np.ndarray:
    """P(entailment) of each pair from a zoo model (int8 ONNX, as the service runs it)."""
    from guardrail_models.runtime import NliRuntime

    rt = NliRuntime.from_dir(model_dir, threads=threads)
    return _batched(lambda chunk: rt.predict(chunk)[:, 0], pairs)


def scores_torch(model: Any, tok: Any, pairs: Sequence[DocPair], normalize: Callable[[str], str] | None = None, *,
                 until: float | None = None, seed: int = 0) -> np.ndarray:
    """P(entailment) from a torch checkpoint whose labels are the trainer's (entailment first), on the pairs in the
    form the runtime feeds the model (`normalize`: the manifest's input normalization). With `until` (a time.time()),
    pairs are scored in a seeded random order until then; the rest stay NaN (fp32 torch on two busy cores scored
    under 2 pairs/s in the bench: all of 3,000 pairs could eat the budget)."""
    import torch

    model.eval()

    def run(chunk: list[tuple[str, str]]) -> np.ndarray:
        if normalize is not None:
            chunk = [(normalize(p), normalize(h)) for p, h in chunk]
        with torch.no_grad():
            feats = tok([p for p, _ in chunk], [h for _, h in chunk], truncation="only_first", max_length=256,
                        padding=True, return_tensors="pt")
            return torch.softmax(model(**feats).logits, -1)[:, 0].numpy()

    return _batched(run, pairs, until=until, seed=seed)


def _batched(fn: Callable[[list[tuple[str, str]]], np.ndarray], pairs: Sequence[DocPair], size: int = 16, *,
             until: float | None = None, seed: int = 0) -> np.ndarray:
    """Scores in batches of similar length (little padding); with `until`, block by block in a seeded random order
    until that time, the unscored pairs left NaN."""
    import random

    def by_length(ids: list[int]) -> list[int]:
        return sorted(ids, key=lambda i: len(pairs[i].premise) + len(pairs[i].claim))

    out = np.full(len(pairs), np.nan, dtype=np.float32)
    ids = list(range(len(pairs)))
    if until is None:
        blocks = [by_length(ids)]
    else:
        random.Random(seed).shuffle(ids)
        blocks = [by_length(ids[i:i + 8 * size]) for i in range(0, len(ids), 8 * size)]
    for block in blocks:
        if until is not None and time.time() > until:
            break
        for start in range(0, len(block), size):
            idx = block[start:start + size]
            out[idx] = fn([(pairs[i].premise, pairs[i].claim) for i in idx])
    return out


def quiet_libraries() -> None:
    """transformers' load reports and progress bars are noise here (the trainer's own output goes to its log)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def _quiet_trainer(log: Path):
    """The trainer prints per step and installs its own SIGINT/SIGTERM handlers (stop at the next step): its output
    goes to `log`, and our handlers come back afterwards so Ctrl-C still stops `guardrail adapt`."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _train(args: list[str], log: Path) -> None:
    from guardrail_models.training import train

    with _quiet_trainer(log):
        print(f"# train {' '.join(args)}", flush=True)
        train.main(args)


def _round_state(run_dir: Path) -> dict[str, Any]:
    import torch

    from guardrail_models.training import checkpoint as ck

    newest = ck.newest([run_dir])
    if newest is None:
        raise RuntimeError(f"the training round left no checkpoint in {run_dir}")
    return torch.load(newest, map_location="cpu", weights_only=False)


def _plan_steps(budget_s: float, rate: float, pairs_per_batch: int, pairs: int, fixed: int | None) -> int:
    """The planned steps (the LR schedule decays over them): what the time allows at `rate`, at most MAX_EPOCHS
    passes over the round's pairs."""
    if fixed is not None:
        return fixed
    by_time = int(budget_s * rate / pairs_per_batch)
    return max(1, min(by_time, MAX_EPOCHS * -(-pairs // pairs_per_batch)))


def _trainer_args(s: LoopSettings, groups: Path, init: Path, run_dir: Path, steps: int, minutes: float,
                  normalization: str | None, *, export: bool, name: str) -> list[str]:
    args = ["--groups", str(groups), "--init", str(init), "--name", name, "--run-dir", str(run_dir), "--no-mirror",
            "--total-steps", str(steps), "--stop-after-min", f"{max(minutes, 0.05):.3f}", "--lr", str(s.lr),
            "--warmup-steps", str(max(1, steps // 10)), "--pairs-per-batch", str(s.pairs_per_batch),
            "--threads", str(s.threads), "--seed", str(s.seed + 13), "--checkpoint-min", "1000",
            "--input-normalization", normalization or "none"]
    return args + (["--export", "--zoo-dir", str(s.zoo_dir)] if export else ["--no-export"])


def run_loop(s: LoopSettings, docs: Sequence[Any], say: Callable[[str], None]) -> LoopResult:
    """Pairs -> filter -> round 1 -> round 2 -> OUT/zoo/NAME. `docs`: the documents to adapt on (SourceDocs)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from guardrail_models.manifest import load_manifest
    from guardrail_models.training.recover import recover
    from guardrail_models.training.train import backbone_dir

    quiet_libraries()
    started = time.time()
    work = s.out / "work"
    log = work / "train.log"
    seconds: dict[str, float] = {}
    t = time.time()
    base = load_manifest(s.base_dir)

    pairs = make_pairs(docs, s.pairs, s.seed)
    seconds["pairs"] = time.time() - t
    say(f"pairs: {len(pairs)} from {len(docs)} documents ({_labels(pairs)}) in {seconds['pairs']:.1f} s")

    t = time.time()
    base_p = scores_onnx(s.base_dir, pairs, s.threads)
    filtered = label_noise(pairs, base_p)
    kept = filtered.kept
    base_wrong = len(wrong(pairs, base_p))
    seconds["filter"] = time.time() - t
    say(f"filter: the base judge gets {base_wrong}/{len(pairs)} pairs wrong at P(entailment) 0.5; dropped "
        f"{len(filtered.dropped)} as likely label noise {filtered.dropped_by_kind() or ''} "
        f"in {seconds['filter']:.1f} s")
    if len(kept) < 2:
        raise ValueError(f"only {len(kept)} pairs left after the label-noise filter; give more documents")

    t = time.time()
    recovered = recover(s.base_dir, work / "base-torch", backbone_dir("minilm"))
    seconds["recover"] = time.time() - t

    def as_trained(pair: DocPair) -> DocPair:
        if s.label_hook is None:
            return pair
        return DocPair(pair.premise, pair.claim, s.label_hook(pair), pair.kind)

    replay_n = int(round(len(kept) * s.replay))
    replay_rows = grouping.replay_rows(replay_n * 2, s.seed, s.replay_exclude)  # round 2 takes the second half
    t = time.time()
    count, normalize = grouping.token_counter(s.base_dir), grouping.normalizer(s.base_dir)
    doc_groups = [grouping.doc_group(as_trained(p), count, normalize) for p in kept]
    g1 = grouping.write_groups(work / "round1.groups.jsonl.gz",
                               doc_groups + grouping.replay_groups(replay_rows[:replay_n], count, normalize), s.seed)
    seconds["groups"] = time.time() - t
    rounds: list[RoundInfo] = []

    # round 1
    left = s.deadline - time.time() - s.eval_reserve_s - EXPORT_RESERVE_S
    if left < 3 * MIN_ROUND_S:
        say(f"note: the budget leaves {max(left, 0) / 60:.1f} min for training after what is fixed (pairs, filter, "
            f"recovery so far; about {EXPORT_RESERVE_S / 60:.1f} min for the export and {s.eval_reserve_s / 60:.1f} "
            "for the evaluations): the rounds get the minimum and the command will likely run past --minutes")
    budget1 = max(MIN_ROUND_S, left * 2 / 3)
    steps1 = _plan_steps(budget1, RATE_GUESS, s.pairs_per_batch, g1["pairs"], s.steps)
    say(f"round 1: {g1['documents']} document pairs + {g1['replay']} replayed, {steps1} steps planned, at most "
        f"{budget1 / 60:.1f} min")
    t = time.time()
    _train(_trainer_args(s, work / "round1.groups.jsonl.gz", recovered, work / "round1", steps1, budget1 / 60,
                         base.input_normalization, export=False, name=f"{s.name}-round1"), log)
    state = _round_state(work / "round1")
    rate1 = state["seen"] / state["train_s"] if state["train_s"] else None
    rounds.append(RoundInfo(int(state["step"]), steps1, round((time.time() - t) / 60, 2), g1,
                            round(rate1, 1) if rate1 else None, wrong_before=base_wrong, scored_before=len(pairs)))
    say(f"round 1: {state['step']}/{steps1} steps in {rounds[0].minutes:.1f} min"
        + (f" ({rate1:.1f} pairs/s)" if rate1 else ""))

    # the pairs round 1 still gets wrong
    t = time.time()
    tok = AutoTokenizer.from_pretrained(str(recovered))
    model = AutoModelForSequenceClassification.from_pretrained(str(recovered))
    model.load_state_dict(state["model"], strict=False)
    torch.set_num_threads(s.threads)
    trained = [as_trained(p) for p in kept]
    p1 = scores_torch(model, tok, trained, normalize, seed=s.seed,
                      until=time.time() + max(RESCORE_MIN_S, RESCORE_SHARE * (s.deadline - started)))
    scored = [i for i in range(len(trained)) if not np.isnan(p1[i])]
    still = wrong(trained, p1)
    round1_dir = work / "round1-model"
    model.save_pretrained(str(round1_dir))
    tok.save_pretrained(str(round1_dir))
    del model
    seconds["rescore"] = time.time() - t
    say(f"round 1 gets {len(still)}/{len(scored)} document pairs wrong (base: {base_wrong}/{len(pairs)})"
        + (f"; {len(scored)} of {len(trained)} rescored in the time allowed" if len(scored) < len(trained) else ""))

    # round 2: what it still gets wrong, as many it gets right, replay; exports the model
    right = sorted(set(scored) - set(still))
    picked = [trained[i] for i in still] + [trained[i] for i in sample(right, len(still), s.seed + 2)]
    replay2 = replay_rows[replay_n:replay_n + int(round(len(picked) * s.replay))]
    groups2 = ([grouping.doc_group(p, count, normalize) for p in picked]
               + grouping.replay_groups(replay2, count, normalize))
    if not groups2:  # nothing wrong: the round only exports round 1
        groups2 = doc_groups[:1]
    g2 = grouping.write_groups(work / "round2.groups.jsonl.gz", groups2, s.seed + 1)
    left = s.deadline - time.time() - s.eval_reserve_s - EXPORT_RESERVE_S
    rate = rate1 or RATE_GUESS
    if not still:
        steps2, budget2 = 0, 0.0
    elif s.steps is not None:
        steps2, budget2 = max(1, s.steps // 2), max(MIN_ROUND_S, left)
    elif left < MIN_ROUND_S:
        steps2, budget2 = 0, 0.0
    else:
        steps2, budget2 = _plan_steps(left, rate, s.pairs_per_batch, g2["pairs"], None), left
    say(f"round 2: {len(still)} wrong + {len(picked) - len(still)} right document pairs + {len(replay2)} replayed, "
        f"{steps2} steps planned" + (f", at most {budget2 / 60:.1f} min" if steps2 else " (export only)"))
    t = time.time()
    _train(_trainer_args(s, work / "round2.groups.jsonl.gz", round1_dir, work / "round2", steps2, budget2 / 60,
                         base.input_normalization, export=True, name=s.name), log)
    state2 = _round_state(work / "round2")
    rate2 = state2["seen"] / state2["train_s"] if state2["train_s"] else None
    rounds.append(RoundInfo(int(state2["step"]), steps2, round((time.time() - t) / 60, 2), g2,
                            round(rate2, 1) if rate2 else None, wrong_before=len(still), scored_before=len(scored)))
    model_dir = s.zoo_dir / s.name
    training = json.loads((work / "round2" / "training.json").read_text())
    say(f"round 2: {state2['step']}/{steps2} steps; exported {model_dir} in {rounds[1].minutes:.1f} min "
        f"(int8 vs torch argmax agreement "
        f"{training.get('onnx_agreement', {}).get('int8', {}).get('argmax_agreement')})")
    dropped = [{"kind": p.kind, "premise": p.premise, "claim": p.claim, "label": p.label, "why": why}
               for p, why in filtered.dropped[:20]]
    return LoopResult(model_dir, len(docs), len(pairs), len(kept), filtered.dropped_by_kind(), dropped,
                      _labels(kept), base_wrong, rounds, training.get("onnx_agreement", {}), seconds)


def _labels(pairs: Sequence[DocPair]) -> dict[str, int]:
    return dict(sorted(Counter(p.label for p in pairs).items()))


def finish_manifest(model_dir: Path, base_dir: Path, adaptation: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The exported manifest, completed: the base's hybrid rule (carried over, not refitted: the adapted judge starts
    from the base's weights and its threshold is calibrated on the anchors), its input normalization, where it came
    from, and what adaptation did and measured. The ONNX file (and so the sha256) is untouched."""
    from guardrail_models.manifest import load_manifest

    base = load_manifest(base_dir)
    manifest = load_manifest(model_dir)
    manifest.source = f"guardrail adapt: {base.name} fine-tuned on the user's documents"
    manifest.license = base.license + "; adapted on the user's documents (their license applies)"
    manifest.judge = dict(base.judge)
    if manifest.judge:
        manifest.judge["carried_over_from"] = base.name
    manifest.input_normalization = base.input_normalization
    manifest.training = {**manifest.training, "adaptation": adaptation}
    manifest.metrics = metrics
    manifest.write(model_dir)


def clean_work(work: Path) -> int:
    """Deletes the bulky intermediates (recovered and round-1 torch weights, checkpoints, the fp32 ONNX export, the
    round-2 torch export); keeps logs, groups files and run.json/training.json. Returns bytes freed."""
    freed = 0
    doomed = [work / "base-torch", work / "round1-model", work / "round2" / "export"]
    doomed += [p for run in ("round1", "round2") for p in (work / run).glob("ckpt-*.pt")]
    doomed += list(work.glob("round*/model.fp32.onnx"))
    for path in doomed:
        if path.is_dir():
            freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        elif path.exists():
            freed += path.stat().st_size
            path.unlink()
    return freed
