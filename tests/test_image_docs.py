"""`make image` prepares what the build needs, as `make test` does (no podman needed to check the wiring: `make -n`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(*args: str) -> str:
    out = subprocess.run(["make", "-n", "image", *args], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_image_installs_podman_runc_and_mmdebstrap_first() -> None:
    """The deploy-deps recipe (Debian's podman, runc, mmdebstrap, a no-op once installed) runs before the build."""
    out = _dry_run()
    deps = out.index("apt-get install -y -qq podman runc mmdebstrap")
    assert deps < out.index("deploy/image/build.sh")


def test_make_image_makes_the_debian_base_when_asked_for_it() -> None:
    out = _dry_run("IMAGE_BASE=localhost/guardrail-base:bookworm",
                   "IMAGE_ENGINE_FLAGS=--runtime runc --cgroup-manager=cgroupfs")
    base = out.index("deploy/image/debian-base.sh")
    assert 'PODMAN="podman --runtime runc --cgroup-manager=cgroupfs"' in out
    assert out.index("mmdebstrap") < base < out.index("deploy/image/build.sh")
    assert 'BASE_IMAGE="localhost/guardrail-base:bookworm"' in out


def test_make_image_with_docker_installs_nothing() -> None:
    out = _dry_run("IMAGE_ENGINE=docker")
    assert "apt-get" not in out and "debian-base.sh" not in out
    assert 'ENGINE="docker"' in out
