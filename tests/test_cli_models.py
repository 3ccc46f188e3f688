from __future__ import annotations

import pytest

from guardrail_server.cli import main


def test_models_list_shows_the_shipped_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "minilm-groundedness-v2" in out and "family=bert-minilm" in out


def test_models_import_needs_a_destination(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc = main(["models", "import", str(tmp_path), "--name", "x", "--family", "f", "--license", "MIT"])
    assert rc == 2 and "models.dir" in capsys.readouterr().err
