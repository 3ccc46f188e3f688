#!/usr/bin/env python3
"""Validates Prometheus Operator objects (ServiceMonitor, PodMonitor, PrometheusRule) against their CRD schemas.

The schemas come from the npm package @kubernetes-models/prometheus-operator (MIT; generated from the operator's CRDs),
pinned with its lockfile in deploy/tools/crd-validate/ and installed once with `npm ci` into the cache
(~/.cache/guardrail-deploy/crd-validate-<lock hash>), never into the repository.

    python deploy/tools/crd_validator.py              # installs (if needed) and prints the directory
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "crd-validate"


def cache_dir() -> Path:
    base = os.environ.get("GUARDRAIL_DEPLOY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "guardrail-deploy")
    return Path(base)


def install() -> Path:
    """The installed validator directory (npm ci into the cache, keyed by the lockfile)."""
    lock = (SOURCE / "package-lock.json").read_bytes()
    target = cache_dir() / f"crd-validate-{hashlib.sha256(lock).hexdigest()[:12]}"
    if (target / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        shutil.copy2(SOURCE / "validate.mjs", target / "validate.mjs")
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copy2(SOURCE / name, partial / name)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=partial, check=True,
                   stdout=sys.stderr)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def validate(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One {kind, name, error} per object (error None when valid)."""
    directory = install()
    out = subprocess.run(["node", str(directory / "validate.mjs")], cwd=directory, input=json.dumps(list(docs)),
                         capture_output=True, text=True)
    results = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    if len(results) != len(docs):
        raise RuntimeError(f"validator failed: {out.stderr[-2000:]}")
    return results


if __name__ == "__main__":
    print(install())
