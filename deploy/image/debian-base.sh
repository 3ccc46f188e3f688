#!/usr/bin/env bash
# Makes a Debian bookworm base image from Debian's own packages (mmdebstrap) and imports it into podman, for
# machines that reach no container registry. Cached: the tarball under GUARDRAIL_DEPLOY_CACHE, the image in podman.
#   deploy/image/debian-base.sh            -> localhost/guardrail-base:bookworm
set -euo pipefail
IMAGE=${BASE_TAG:-localhost/guardrail-base:bookworm}
PODMAN=${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}
CACHE=${GUARDRAIL_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardrail-deploy}
TAR="$CACHE/base-bookworm.tar"
mkdir -p "$CACHE"
if $PODMAN image exists "$IMAGE"; then
  echo "$IMAGE exists"; exit 0
fi
if [ ! -s "$TAR" ]; then
  mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$TAR.tmp"
  mv "$TAR.tmp" "$TAR"
fi
$PODMAN import "$TAR" "$IMAGE"
