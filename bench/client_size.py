"""Installed size: the thin client (`guardrail-sidecar-client` in a fresh venv) vs the server's runtime dependencies.

The client side is measured as tests/test_thin_client.py installs it (wheel + grpcio + protobuf + what they pull in,
site-packages of a venv made without pip). The server side is the runtime dependency closure of `guardrail-sidecar`
(no extras) as installed in this environment, summed from each distribution's RECORD — what `from
guardrail_server.client import ...` used to drag into an application. Usage: python -m bench.client_size
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from tests.test_thin_client import DEPS, PIP, _site_size, build_wheel


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def closure(root: str) -> set[str]:
    """Distribution names `root` needs at run time (no extras), as installed here."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for req in dist.requires or []:
            if "extra ==" in req.replace('"', "'").replace("'", "") or "extra==" in req:
                continue
            if ";" in req and "python_version" not in req and "platform" not in req and "sys_platform" not in req:
                continue
            todo.append(_name(req))
    return seen


def installed_bytes(name: str) -> int:
    dist = metadata.distribution(name)
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    server = {n: installed_bytes(n) for n in closure("guardrail-sidecar") if n != "guardrail-sidecar"}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        wheel = build_wheel(t)
        deps = t / "deps"
        subprocess.run([*PIP, "download", "-q", "--only-binary=:all:", "-d", str(deps), *DEPS], check=True)
        venv = t / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run([*PIP, "--python", str(venv / "bin/python"), "install", "-q", "--no-index", "--find-links",
                        str(deps), str(wheel)], check=True)
        client, entries = _site_size(venv)
    top = sorted(server.items(), key=lambda kv: -kv[1])[:8]
    print(f"\n{'what':<52}{'MiB':>9}")
    dists = [e.removesuffix(".dist-info") for e in entries if e.endswith(".dist-info")]
    print(f"{'thin client venv site-packages':<52}{client / 2**20:>9.1f}")
    print(f"  ({', '.join(dists)})")
    print(f"{'server runtime deps (' + str(len(server)) + ' distributions)':<52}{sum(server.values()) / 2**20:>9.1f}")
    for name, size in top:
        print(f"{'  ' + name:<52}{size / 2**20:>9.1f}")


if __name__ == "__main__":
    main()
