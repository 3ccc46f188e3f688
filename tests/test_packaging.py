"""The server's own packages cannot be shadowed by an application's modules: `invariants/` and `models/` install as
`guardrail_invariants` and `guardrail_models`, the generated stubs live inside `guardrail_client` (no top-level
`guardrail`), and the packaging lists exactly the packages on disk."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"invariants": "guardrail_invariants", "models": "guardrail_models"}


def test_packaging_lists_every_package_on_disk() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {v: k for k, v in MAPPED.items()}
    on_disk = set()
    for init in ROOT.glob("*/**/__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if parts[0] in ("tests", "bench", "scripts", "deploy", "clients", "helm", "docs", "data") or parts[0] \
                .startswith("."):
            continue
        on_disk.add(".".join((MAPPED.get(parts[0], parts[0]), *parts[1:])))
    assert set(config["packages"]) == on_disk


def test_the_server_imports_from_an_application_folder_with_its_own_models_and_invariants(tmp_path: Path) -> None:
    """A user's `models.py` and `invariants/` sit first on sys.path; the engine and the client still import ours."""
    (tmp_path / "models.py").write_text("raise ImportError('the application models.py was imported')\n")
    (tmp_path / "invariants").mkdir()
    (tmp_path / "invariants" / "__init__.py").write_text("raise ImportError('the application invariants was imported')\n")
    script = (
        "import sys; sys.path.insert(0, '.')\n"
        "from guardrail_server.engine import CheckEngine\n"
        "from guardrail_server.config import load_config\n"
        "from guardrail_server.client import GuardrailClient\n"
        "from guardrail_invariants.entailment import EntailmentInvariant\n"
        "from guardrail_models.zoo import ModelZoo\n"
        "print(ModelZoo().available())\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "minilm-l6-embed" in out.stdout


def test_the_client_and_server_import_beside_an_applications_own_guardrail_package(tmp_path: Path) -> None:
    """Issue 23: an application with its own `guardrail/` package (first on sys.path, as an app folder is) imported
    `guardrail_client` and got `No module named 'guardrail.v1'`. The stubs live inside `guardrail_client` now."""
    (tmp_path / "guardrail").mkdir()
    (tmp_path / "guardrail" / "__init__.py").write_text("WHO = 'the application'\n")
    script = (
        "import sys; sys.path.insert(0, '.')\n"
        "import guardrail\n"
        "from guardrail_client import Decision, GuardrailClient, build_request\n"
        "from guardrail_server.client import GuardrailClient as ServerSideClient\n"
        "from guardrail_server.servicer import GuardrailServicer\n"
        "request = build_request('It opened in 1887 [1].', context=['The tower opened in 1889.'], app='shop')\n"
        "print(guardrail.WHO, '|', type(request).DESCRIPTOR.full_name, '|', Decision.BLOCK,\n"
        "      '|', sorted(m for m in sys.modules if m == 'guardrail' or m.startswith('guardrail.')))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "the application | guardrail.v1.CheckRequest | BLOCK | ['guardrail']"
