#!/usr/bin/env bash
# Builds the guardrail-sidecar image without network inside the build (the air-gapped pattern): the host builds
# the wheels, the Dockerfile installs them with --no-index.
#
#   deploy/image/build.sh                         # podman (or ENGINE=docker), tag guardrail-sidecar:dev
#   TAG=registry.example.com/guardrail-sidecar:0.1.0 BASE_IMAGE=python:3.11-slim-bookworm deploy/image/build.sh
#   GPU=1 deploy/image/build.sh                   # the -gpu variant, tag guardrail-sidecar:dev-gpu: onnxruntime-gpu
#                                                 # (CUDA 13 + cuDNN 9 from PyPI) instead of onnxruntime; the node
#                                                 # brings the NVIDIA driver (>= 580) and runtime; models.device: auto
#                                                 # (the image default) runs on the GPU when one is visible
#   PRINT_REQUIREMENTS=1 GPU=1 deploy/image/build.sh   # print the pinned dependency list and stop
#
# The dependency wheels are cached by the hash of the pinned dependency list (GUARDRAIL_DEPLOY_CACHE, default
# ~/.cache/guardrail-deploy), so a rebuild after a code change only rebuilds our own wheel and the last layers.
# Env: PYTHON (host interpreter with pip), ENGINE, ENGINE_FLAGS (e.g. "--runtime runc --cgroup-manager=cgroupfs"),
# BUILD_FLAGS (extra build flags), TAG, BASE_IMAGE (empty = the Dockerfile's python:3.11-slim-bookworm),
# BUILD_STAGE_TAG (also tag the build stage, so pruning dangling images keeps the dependency layer cached).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ENGINE=${ENGINE:-podman}
ENGINE_FLAGS=${ENGINE_FLAGS:-}
BUILD_FLAGS=${BUILD_FLAGS:-}
GPU=${GPU:-0}
if [ "$GPU" = 1 ]; then TAG=${TAG:-guardrail-sidecar:dev-gpu}; else TAG=${TAG:-guardrail-sidecar:dev}; fi
BASE_IMAGE=${BASE_IMAGE:-}
CACHE=${GUARDRAIL_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardrail-deploy}
mkdir -p "$CACHE/wheels"

# 1. dependency wheels, keyed by the pinned list in pyproject.toml
REQS=$(cd "$ROOT" && "$PYTHON" -c 'import tomllib;print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))')
if [ "$GPU" = 1 ]; then  # the same pinned version, GPU build, with its CUDA and cuDNN wheels (extras cuda, cudnn)
  REQS=$(printf '%s\n' "$REQS" | sed -E 's/^onnxruntime==/onnxruntime-gpu[cuda,cudnn]==/')
fi
if [ "${PRINT_REQUIREMENTS:-0}" = 1 ]; then printf '%s\n' "$REQS"; exit 0; fi
VERSION=$(cd "$ROOT" && "$PYTHON" -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
KEY=$(printf '%s\n' "$REQS" | sha256sum | cut -c1-16)
DEPS="$CACHE/wheels/deps-$KEY"
if [ ! -f "$DEPS/requirements.txt" ]; then
  rm -rf "$DEPS.tmp" && mkdir -p "$DEPS.tmp"
  printf '%s\n' "$REQS" > "$DEPS.tmp/reqs.in"
  "$PYTHON" -m pip wheel --quiet --wheel-dir "$DEPS.tmp" -r "$DEPS.tmp/reqs.in"
  mv "$DEPS.tmp/reqs.in" "$DEPS.tmp/requirements.txt"
  rm -rf "$DEPS" && mv "$DEPS.tmp" "$DEPS"
fi

# 2. our own wheel, from the working tree, every time
CTX="$CACHE/context"
rm -rf "$CTX" && mkdir -p "$CTX/wheelhouse/app" "$CTX/deploy"
# from a clean copy of the sources: setuptools' in-tree build/ can carry stale modules into a wheel
SRC="$CACHE/src" && rm -rf "$SRC" && mkdir -p "$SRC"
(cd "$ROOT" && "$PYTHON" - "$SRC" <<'PY'
import shutil, sys, tomllib
from pathlib import Path
dest = Path(sys.argv[1])
pyproject = tomllib.load(open("pyproject.toml", "rb"))
setuptools_cfg = pyproject["tool"]["setuptools"]
package_dir = setuptools_cfg.get("package-dir", {})
tops = {package_dir.get(p.split(".")[0], p.split(".")[0]) for p in setuptools_cfg["packages"]}
ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
for top in sorted(tops):
    shutil.copytree(top, dest / top, ignore=ignore)
for f in ("pyproject.toml", "README.md"):
    shutil.copy2(f, dest / f)
PY
)
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CTX/wheelhouse/app" "$SRC"

# 3. a small build context: Dockerfile, deploy/image, the wheels (hard links into the cache)
cp -al "$DEPS" "$CTX/wheelhouse/deps" 2>/dev/null || cp -a "$DEPS" "$CTX/wheelhouse/deps"
cp "$ROOT/Dockerfile" "$ROOT/.dockerignore" "$CTX/"
cp -r "$ROOT/deploy/image" "$CTX/deploy/image"

ARGS=(--build-arg "VERSION=$VERSION")
[ "$GPU" = 1 ] && ARGS+=(--build-arg "VARIANT=gpu")
[ -n "$BASE_IMAGE" ] && ARGS+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
case "$ENGINE" in *podman*) ARGS+=(--format docker) ;; esac  # OCI format drops HEALTHCHECK and STOPSIGNAL
# shellcheck disable=SC2086
$ENGINE $ENGINE_FLAGS build $BUILD_FLAGS "${ARGS[@]}" -t "$TAG" "$CTX"
if [ -n "${BUILD_STAGE_TAG:-}" ]; then  # keep the build stage (the dependency layer) tagged, i.e. cached across prunes
  # shellcheck disable=SC2086
  $ENGINE $ENGINE_FLAGS build $BUILD_FLAGS "${ARGS[@]}" --target build -t "$BUILD_STAGE_TAG" "$CTX" >/dev/null
fi
echo "built $TAG"
