"""`guardrail models`: list the model zoo and import Hugging Face NLI checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guardrail_server.cli.common import add_config_flags, config_from_args
from guardrail_server.config import zoo_settings
from guardrail_models.manifest import load_manifest
from guardrail_models.zoo import ModelZoo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list or import NLI models")
    msub = p.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="models this installation can load (shipped + models.dir)")
    add_config_flags(ls)
    ls.set_defaults(handler=run_list)
    imp = msub.add_parser(
        "import", help="convert a local Hugging Face NLI sequence-classification checkpoint to ONNX (needs .[train])"
    )
    imp.add_argument("src", help="checkpoint directory (config.json, weights, tokenizer)")
    imp.add_argument("--name", required=True, help="zoo name, e.g. deberta-v3-base-nli")
    imp.add_argument("--family", required=True, help="model family (judges of the same family are refused together)")
    imp.add_argument("--license", required=True, help="the checkpoint's license (SPDX id), kept in the manifest")
    imp.add_argument("--source", default="", help="where the checkpoint came from (URL, revision)")
    imp.add_argument("--labels", help="comma-separated label order when the checkpoint says LABEL_0..2")
    imp.add_argument("--no-quantize", action="store_true", help="keep fp32 (default: dynamic int8)")
    imp.add_argument("--out", help="models directory (default: models.dir from the config)")
    add_config_flags(imp)
    imp.set_defaults(handler=run_import)


def run_list(args: argparse.Namespace) -> int:
    zoo = ModelZoo(zoo_settings(config_from_args(args)))
    for name in zoo.available():
        m = load_manifest(zoo.model_dir(name), verify=False)
        print(f"{name:<28} {m.task:<6} family={m.family:<14} labels={','.join(m.labels)} license={m.license}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from guardrail_models.importer import import_hf_checkpoint

    root = args.out or config_from_args(args).models.dir
    if not root:
        print("guardrail models import: set --out or models.dir (where imported models live)", file=sys.stderr)
        return 2
    try:
        manifest = import_hf_checkpoint(
            args.src, Path(root) / args.name, args.name, args.family, args.license, quantize=not args.no_quantize,
            source=args.source, labels=args.labels.split(",") if args.labels else None,
        )
    except ImportError as exc:
        print(f"guardrail models import: {exc} (install the train extra: pip install -e '.[train]')", file=sys.stderr)
        return 2
    print(f"imported {manifest.name} ({manifest.family}) -> {Path(root) / args.name}; use it with "
          f"invariants.entailment.options.model={manifest.name} and judge=model")
    return 0
