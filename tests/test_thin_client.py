"""The thin client distribution (clients/python, `guardrail-sidecar-client`): built as a wheel, installed into a fresh
venv with only grpcio + protobuf, and used from an application folder that has its own `models.py` and
`invariants.py` and its own `guardrail/` package — against a real server over TLS with a token. Also: its stubs are
the server's, byte for byte, inside `guardrail_client` (no top-level `guardrail` package to collide with an app's).

Fast and offline-friendly: the grpcio/protobuf wheels are fetched once into pytest's cache (`pip download`, from the
configured indexes) and installed with `--no-index`; the venv is made without pip (`pip --python` installs into it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from guardrail_client import Decision, Outcome
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb
from tests.certs import CA
from tests.conftest import make_config, running_server

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip"]
DEPS = ["grpcio==1.85.3", "protobuf==7.36.2"]
SERVER_ONLY = ("onnxruntime", "spacy", "presidio_analyzer", "presidio_anonymizer", "numpy", "guardrail_server",
               "invariants", "models", "tokenizers", "sqlalchemy", "pydantic", "structlog")
TOKEN = "thin-client-token-" + "7" * 20
STUBS = "guardrail_client/_proto/guardrail/v1"

APP_SCRIPT = r'''
import json, sys
import models, invariants                      # the application's own modules, as in any app folder
import guardrail                               # and its own `guardrail` package (issue 23: it hid our stubs)
from guardrail_client import TLS, GuardrailClient, Decision

target, ca, token = sys.argv[1:4]
with GuardrailClient(target, tls=TLS(ca_file=ca), token=token, timeout=10) as guard:
    reply = guard.check("This is forbidden [1].", context=[{"id": "1", "text": "Some passage."}], app="shop")
    fine = guard.check("All fine.")
    streamed = [r.decision for r in guard.check_stream([{"response": "forbidden", "request_id": "s-1"}])]
    serving = guard.health()
print(json.dumps({
    "decision": str(reply.decision), "formatted": f"{reply.decision}", "fine": str(fine.decision),
    "blocked": reply.blocked, "outcome": str(reply.results[0].outcome), "streamed": [str(d) for d in streamed],
    "serving": serving, "user_models": models.WHO, "user_invariants": invariants.WHO, "user_guardrail": guardrail.WHO,
    "client_file": sys.modules["guardrail_client"].__file__, "modules": sorted(sys.modules),
}))
'''


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def build_wheel(out: Path) -> Path:
    """Builds from a copy holding only what the client's pyproject names (clients/python, guardrail_client/): proves
    the wheel needs nothing else of the repository, and leaves no build/ or egg-info in the checkout."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    shutil.copytree(ROOT / "clients/python", src / "clients/python", ignore=ignore)
    shutil.copytree(ROOT / "guardrail_client", src / "guardrail_client", ignore=ignore)
    _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src / "clients/python")])
    (wheel,) = out.glob("guardrail_sidecar_client-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_the_servers_stubs_byte_for_byte_and_only_grpc_deps(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        stubs = {n for n in names if n.startswith(f"{STUBS}/") and n.endswith((".py", ".pyi"))}
        committed = {f"{STUBS}/{p.name}" for p in (ROOT / STUBS).iterdir() if p.suffix in (".py", ".pyi")}
        assert stubs == committed
        for name in stubs:
            assert zf.read(name) == (ROOT / name).read_bytes(), f"{name} in the client wheel drifted from the server's"
        top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        assert top == {"guardrail_client"}  # no top-level `guardrail`: an application's own would shadow it
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = sorted(line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:"))
    assert [r.split(">")[0].split("<")[0].split("=")[0] for r in requires] == ["grpcio", "protobuf"]


def test_client_enums_match_the_wire_enums() -> None:
    assert {d.name: d.value for d in Decision} == {
        n.removeprefix("DECISION_"): v for n, v in pb.Decision.items()}
    assert {o.name: o.value for o in Outcome} == {n.removeprefix("OUTCOME_"): v for n, v in pb.Outcome.items()}
    assert str(Decision.FLAG) == "FLAG" and f"{Decision.BLOCK:>6}" == " BLOCK" and Decision.ALLOW == pb.ALLOW


def _site_size(venv: Path) -> tuple[int, list[str]]:
    (site,) = venv.glob("lib/python*/site-packages")
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())
    return total, sorted(p.name.lower() for p in site.iterdir())


async def test_thin_client_from_an_app_folder_with_models_py(
    wheel: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    deps = Path(request.config.cache.mkdir("thin-client-deps"))
    done = deps / ("complete-" + "-".join(DEPS))
    if not done.exists():  # grpcio, protobuf and what they need (typing-extensions), once
        await asyncio.to_thread(_run, [*PIP, "download", "-q", "--only-binary=:all:", "-d", str(deps), *DEPS])
        done.touch()
    venv = tmp_path / "venv"
    await asyncio.to_thread(_run, [sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin/python"
    await asyncio.to_thread(_run, [*PIP, "--python", str(py), "install", "-q", "--no-index", "--find-links", str(deps),
                                   str(wheel)])
    size, installed = _site_size(venv)
    for name in SERVER_ONLY:
        assert not any(entry == name or entry.startswith(f"{name}-") for entry in installed), name
    assert size < 60 * 1024 * 1024, f"thin client venv is {size / 2**20:.1f} MiB"
    print(f"\nthin client venv site-packages: {size / 2**20:.1f} MiB ({', '.join(installed)})")

    app = tmp_path / "app"
    app.mkdir()
    (app / "models.py").write_text("WHO = 'the app'\n")
    (app / "invariants.py").write_text("WHO = 'the app'\n")
    (app / "guardrail").mkdir()
    (app / "guardrail" / "__init__.py").write_text("WHO = 'the app'\n")
    (app / "main.py").write_text(APP_SCRIPT)
    ca = CA(tmp_path, "thin")
    server_pair = ca.issue("guardrail", stem="server")
    cfg = make_config({"test_keyword": {"options": {"word": "forbidden"}, "on_fail": "block"}},
                      {"server.tls": {"cert_file": str(server_pair.cert), "key_file": str(server_pair.key)},
                       "server.auth.tokens": [TOKEN]})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    async with running_server(cfg) as (_, target):
        proc = await asyncio.to_thread(_run, [str(py), "main.py", target, str(ca.pem), TOKEN], cwd=app, env=env)
    out = json.loads(proc.stdout)
    assert out["decision"] == "BLOCK" and out["formatted"] == "BLOCK" and out["blocked"] is True
    assert out["fine"] == "ALLOW" and out["outcome"] == "FAIL" and out["streamed"] == ["BLOCK"]
    assert out["serving"] is True
    assert out["user_models"] == out["user_invariants"] == out["user_guardrail"] == "the app"
    assert out["client_file"].startswith(str(venv))
    loaded = {m.split(".")[0] for m in out["modules"]}
    assert not loaded & {"onnxruntime", "spacy", "presidio_analyzer", "numpy", "guardrail_server"}


def test_client_package_imports_only_grpc_protobuf_and_the_stubs() -> None:
    """The layer rule that keeps the client thin: stdlib, grpc, google.protobuf, its own stubs — nothing else."""
    import ast

    allowed = set(sys.stdlib_module_names) | {"grpc", "google", "guardrail_client"}
    offenders: dict[str, list[str]] = {}
    for path in (ROOT / "guardrail_client").rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        if names - allowed:
            offenders[path.name] = sorted(names - allowed)
    assert offenders == {}


def test_build_request_passages_strings_dicts_objects_and_typos() -> None:
    from dataclasses import dataclass

    from guardrail_client import build_request

    @dataclass
    class Doc:
        id: str
        text: str
        title: str = ""

    req = build_request("r", context=["first", {"id": 7, "text": "t", "title": "T", "url": "https://x"}, Doc("d", "x")],
                        metadata={"k": "v"}, app="a", request_id="q", invariants=["entailment"])
    assert [(c.id, c.text, c.title, c.url) for c in req.context] == [
        ("1", "first", "", ""), ("7", "t", "T", "https://x"), ("d", "x", "", "")]
    assert (req.app, req.request_id, list(req.invariants), dict(req.metadata)) == ("a", "q", ["entailment"], {"k": "v"})
    with pytest.raises(ValueError, match=r"context\[0\]: unknown passage field\(s\) \['titel'\]"):
        build_request("r", context=[{"text": "t", "titel": "T"}])
