"""One merge rule for every config layer (defaults < files < environment < --set), and start-up errors that are one
line naming the key or file with exit code 2 — through the library API and the `guardrail` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardrail_server.cli import main
from guardrail_server.config import DEFAULT_INVARIANTS, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def _effective(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """`guardrail config ...`: the validated configuration as the CLI sees it."""
    assert main(["config", *argv]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_a_file_naming_one_invariant_keeps_the_others_and_their_timeouts(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("invariants:\n  entailment:\n    threshold: 0.4\n")
    cfg = load_config(f, environ={})
    assert list(cfg.enabled_invariants()) == list(DEFAULT_INVARIANTS)
    assert cfg.invariants["entailment"].threshold == 0.4
    assert cfg.invariants["entailment"].timeout_s == DEFAULT_INVARIANTS["entailment"]["timeout_s"] == 5.0


def test_file_env_and_set_give_the_same_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("invariants:\n  entailment: {threshold: 0.4}\n")
    by_file = _effective(capsys, "--config", str(f))
    by_set_key = _effective(capsys, "--set", "invariants.entailment.threshold=0.4")
    by_set_map = _effective(capsys, "--set", "invariants={entailment: {threshold: 0.4}}")
    by_env = load_config(None, environ={"GUARDRAIL_INVARIANTS__ENTAILMENT__THRESHOLD": "0.4"}).model_dump()
    assert by_file == by_set_key == by_set_map
    assert by_env["invariants"] == load_config(f, environ={}).model_dump()["invariants"]
    assert by_file["invariants"]["entailment"]["timeout_s"] == 5.0
    assert all(by_file["invariants"][n]["enabled"] for n in DEFAULT_INVARIANTS)


def test_turning_an_invariant_off_is_explicit(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("invariants:\n  self_consistency: {enabled: false}\n")
    over = tmp_path / "later.yaml"
    over.write_text("invariants:\n  self_consistency: {threshold: 0.3}\n")  # refines; does not switch it back on
    cfg = load_config([f, over], environ={})
    assert "self_consistency" not in cfg.enabled_invariants()
    assert cfg.invariants["self_consistency"].threshold == 0.3
    assert len(cfg.enabled_invariants()) == 3


def test_a_scalar_or_list_replaces(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("invariants:\n  pii_boundary:\n    options: {entities: [EMAIL_ADDRESS, PHONE_NUMBER]}\n")
    cfg = load_config(f, environ={}, overrides=[("invariants.pii_boundary.options.entities", ["EMAIL_ADDRESS"])])
    assert cfg.invariants["pii_boundary"].options["entities"] == ["EMAIL_ADDRESS"]
    cfg = load_config(None, environ={}, overrides=[("server.metrics_port", None)])
    assert cfg.server.metrics_port is None


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("server.max_message_bytes=1099511627776", "server.max_message_bytes"),
        ("review.url=mysql://app:hunter2@db/reviews", "review.url"),
        ("invariants.entailment.timeout_s=.inf", "invariants.entailment.timeout_s"),
        ("invariants.pii_boundary.timeout_s=.nan", "invariants.pii_boundary.timeout_s"),
        ("server.grace_period_s=.inf", "server.grace_period_s"),
        ("invariants.pii_boundary.options.max_name_windows=.inf", "invariants.pii_boundary.options.max_name_windows"),
    ],
)
def test_values_accepted_before_are_refused_naming_the_key(
    setting: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "--set", setting])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err
    assert "hunter2" not in err


def test_review_store_schemes() -> None:
    for ok in ("sqlite:///x.db", "sqlite:///:memory:", "postgresql://u@h/db", "postgres://h/db",
               "postgresql+psycopg://u:p@h:5432/db"):
        expected = f"sqlite:///{Path.cwd() / 'x.db'}" if ok == "sqlite:///x.db" else ok  # relative: from the cwd
        assert load_config(None, environ={}, overrides=[("review.url", ok)]).review.url == expected
    for bad in ("mysql://u@h/db", "x.db", "mongodb://h"):
        with pytest.raises(ConfigError, match="review.url"):
            load_config(None, environ={}, overrides=[("review.url", bad)])


@pytest.mark.parametrize("kind", ["non-utf8", "directory"])
def test_unreadable_config_files_exit_2_naming_the_file(tmp_path: Path, kind: str) -> None:
    if kind == "non-utf8":
        path = tmp_path / "latin1.yaml"
        path.write_bytes("server:\n  host: caf\xe9\n".encode("latin-1"))
    else:
        path = tmp_path / "conf.d"
        path.mkdir()
    proc = subprocess.run([sys.executable, "-m", "guardrail_server.cli", "serve", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], proc.stderr
