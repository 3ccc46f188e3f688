"""Entailment invariant benchmark: accuracy vs the lexical baseline, latency, batching throughput, int8 vs fp32/torch.

`python -m bench.entailment [--quick] [--fp32 PATH] [--torch-checkpoint DIR]` prints the tables of one run:
  1. accuracy on the dev sets (bench.nli_eval, through guardrail eval): AUROC and balanced accuracy next to word
     overlap; SNLI/ANLI acc;
  2. latency p50/p99 of `check` for a 5-sentence response over ~500- and ~2,000-token contexts, two-round scoring
     vs every window, NLI pairs per check, and the service overhead over raw onnxruntime time for the very same calls;
  3. throughput (cases/s) at concurrency 1/8/64: dynamic batching vs per-pair calls vs one call per request;
  4. raw model pairs/s (batches of 16 and single pairs), SNLI accuracy and batch-dependence: the shipped ONNX vs ONNX
     fp32 vs other builds (`--variant NAME=PATH`) vs PyTorch (when available).
Contexts come from held-out WikiText documents (not evaluation data).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import numpy as np

from bench.check_latency import latency, make_cases
from guardrail_invariants.entailment import EntailmentInvariant, EntailmentOptions
from guardrail_invariants.types import Case
from guardrail_models.runtime import NliRuntime
from guardrail_models.zoo import ModelZoo, ZooSettings

FP32_DEFAULT = Path("/tmp/gr_train_v2/model.fp32.onnx")  # where guardrail_models.training.train leaves them
CKPT_DEFAULT = Path("/tmp/gr_train_v2/checkpoint")


async def throughput(inv: EntailmentInvariant, cases: list[Case], concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(c: Case) -> None:
        async with sem:
            await inv.check(c)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in cases))
    return len(cases) / (time.perf_counter() - t0)


class _PerRequestModel:
    """No cross-request batching: each check's pairs go to onnxruntime in their own call (in a worker thread)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.manifest = inner.manifest
        self.name = inner.name

    def token_count(self, text: str) -> int:
        return self.inner.token_count(text)

    async def predict(self, pairs):
        return await asyncio.to_thread(self.inner.predict_sync, pairs)


async def perf_tables(quick: bool, threads: int) -> str:
    out = []
    n_lat = 10 if quick else 40
    zoo = ModelZoo(ZooSettings(intra_op_threads=threads, max_batch_size=32, max_wait_ms=2.0))
    inv = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), zoo)
    await inv.load()
    every = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(early_exit=None), zoo)
    await every.load()
    out.append(f"{'context':<16}{'scoring':<22}{'p50 ms':>10}{'p99 ms':>10}{'NLI pairs':>11}"
               f"{'overhead vs raw ORT':>22}")
    for tokens in (500, 2000):
        cases = make_cases(n_lat, tokens, inv.model.token_count, seed=tokens)
        for label, invariant in (("two rounds (default)", inv), ("every window", every)):
            p50, p99, n_pairs, over = await latency(invariant, cases)
            out.append(f"{f'~{tokens} tokens':<16}{label:<22}{p50 * 1000:>10.1f}{p99 * 1000:>10.1f}{n_pairs:>11.1f}"
                       f"{over * 100:>21.1f}%")
    out.append("")
    n_tp = 32 if quick else 96
    cases = make_cases(n_tp, 500, inv.model.token_count, seed=1)
    unbatched_zoo = ModelZoo(ZooSettings(intra_op_threads=threads, max_batch_size=1, max_wait_ms=0.0))
    inv_pair = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), unbatched_zoo)
    await inv_pair.load()
    inv_req = EntailmentInvariant(EntailmentInvariant.default_threshold, EntailmentOptions(), zoo)
    await inv_req.load()
    inv_req.model = _PerRequestModel(inv.model)
    out.append(f"{'concurrency':<12}{'batched cases/s':>17}{'per-pair cases/s':>18}{'per-request cases/s':>21}"
               f"{'batched/per-pair':>18}")
    for conc in (1, 8, 64):
        b = await throughput(inv, cases, conc)
        u = await throughput(inv_pair, cases, conc)
        r = await throughput(inv_req, cases, conc)
        out.append(f"{conc:<12}{b:>17.2f}{u:>18.2f}{r:>21.2f}{b / u:>17.2f}x")
    await zoo.close()
    await unbatched_zoo.close()
    return "\n".join(out)


def model_variants(variants: dict[str, Path], ckpt: Path, threads: int, quick: bool) -> str:
    """Raw runtimes side by side: window pairs/s in batches of 16 and one at a time, SNLI accuracy, size, and how far
    a pair's P(entailment) moves when it shares a batch with a long pair (dynamic int8 scales activations per batch)."""
    from bench.nli_eval import LABELS, load_dev
    from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR

    rows = load_dev("snli_test", 300 if quick else None)
    pairs = [(r["context"], r["response"]) for r in rows]
    gold = np.array([LABELS.index(r["label"]) for r in rows])
    shipped = SHIPPED_DIR / DEFAULT_NLI
    cases = make_cases(16, 500, NliRuntime.from_dir(shipped).token_count, seed=3)
    window_pairs = [(c.context[0].text[:700], s) for c in cases for s in c.response.split(". ")][:96]
    runners = {name: NliRuntime.from_dir(shipped, threads=threads, onnx_path=path).predict
               for name, path in variants.items() if path.is_file()}
    if ckpt.is_dir():
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            torch.set_num_threads(threads or 2)
            tmodel = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval()
            ttok = AutoTokenizer.from_pretrained(str(ckpt))

            def torch_fn(ps):
                with torch.no_grad():
                    f = ttok([p for p, _ in ps], [h for _, h in ps], truncation=True, max_length=256, padding=True,
                             return_tensors="pt")
                    return torch.softmax(tmodel(**f).logits, -1).numpy()

            runners["pytorch fp32"] = torch_fn
        except ImportError:
            pass
    lines = [f"{'model':<24}{'pairs/s b16':>12}{'pairs/s b1':>11}{'SNLI acc':>10}{'batch dP max':>14}{'size MB':>9}"]
    long_mate = (" ".join(c.context[0].text for c in cases[:2])[:1500], "A long neighbour in the same batch.")
    for name, fn in runners.items():
        fn(window_pairs[:8])
        t0 = time.perf_counter()
        for i in range(0, len(window_pairs), 16):
            fn(window_pairs[i:i + 16])
        b16 = len(window_pairs) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for pair in window_pairs[:32]:
            fn([pair])
        b1 = 32 / (time.perf_counter() - t0)
        probs = np.concatenate([fn(pairs[i:i + 32]) for i in range(0, len(pairs), 32)])
        acc = float((probs.argmax(1) == gold).mean())
        alone = np.concatenate([fn([p]) for p in window_pairs[:24]])
        mixed = np.concatenate([fn([p, long_mate])[:1] for p in window_pairs[:24]])
        drift = float(np.abs(alone[:, 0] - mixed[:, 0]).max())
        size = variants[name].stat().st_size / 1e6 if name in variants else 0.0
        lines.append(f"{name:<24}{b16:>12.1f}{b1:>11.1f}{acc:>10.3f}{drift:>14.5f}{size:>9.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer cases (smoke run)")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("GUARDRAIL_BENCH_THREADS", "2")))
    ap.add_argument("--fp32", type=Path, default=FP32_DEFAULT, help="the shipped model's float export")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                    help="another ONNX file of the shipped model to compare (e.g. a static int8 build)")
    ap.add_argument("--torch-checkpoint", type=Path, default=CKPT_DEFAULT)
    args = ap.parse_args()
    if not args.skip_accuracy:
        from bench.nli_eval import evaluate_model, table

        results = asyncio.run(evaluate_model(None, "hybrid", limit=200 if args.quick else None))
        print("== accuracy on dev through guardrail eval (threshold = shipped default; AUROC is threshold-free)")
        print(table("default", "hybrid", results))
        print()
    print("== latency and throughput (5-sentence responses, WikiText contexts)")
    print(asyncio.run(perf_tables(args.quick, args.threads)))
    print()
    print("== model variants (raw runtime, batches of 16 window pairs)")
    from guardrail_models.manifest import load_manifest
    from guardrail_models.zoo import DEFAULT_NLI, SHIPPED_DIR

    shipped = SHIPPED_DIR / DEFAULT_NLI
    variants = {f"onnx shipped ({load_manifest(shipped).quantization})": shipped / "model.onnx", "onnx fp32": args.fp32}
    variants.update(dict(v.split("=", 1) for v in args.variant))
    print(model_variants({k: Path(v) for k, v in variants.items()}, args.torch_checkpoint, args.threads, args.quick))


if __name__ == "__main__":
    main()
