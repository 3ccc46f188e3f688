from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_server.config import ConfigError, load_config


def test_defaults_validate_and_enable_every_invariant() -> None:
    cfg = load_config(None, environ={})
    assert list(cfg.enabled_invariants()) == ["reference_integrity", "entailment", "pii_boundary", "self_consistency"]
    assert all(p.on_fail == "flag" for p in cfg.invariants.values())
    assert cfg.server.port == 50051
    assert cfg.review.url.startswith("sqlite:")


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server:\n  port: 7000\nworkers:\n  count: 5\n")
    env = {"GUARDRAIL_SERVER__PORT": "7001", "GUARDRAIL_SERVER__GRACE_PERIOD_S": "3.5", "OTHER": "x"}
    cfg = load_config(f, environ=env, overrides=[("server.grace_period_s", 1)])
    assert cfg.server.port == 7001
    assert cfg.workers.count == 5
    assert cfg.server.grace_period_s == 1


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("server:\n  port: -1\n", "server.port"),
        ("server:\n  prot: 1\n", "server.prot"),
        ("invariants:\n  nonsense: {}\n", "invariants"),
        ("invariants:\n  reference_integrity:\n    threshold: 1.5\n", "invariants.reference_integrity.threshold"),
        ("invariants:\n  reference_integrity:\n    on_error: maybe\n", "invariants.reference_integrity.on_error"),
        ("limits:\n  max_passages: many\n", "limits.max_passages"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(f, environ={})
    assert key in str(info.value)


def test_env_override_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match="workers.count"):
        load_config(None, environ={"GUARDRAIL_WORKERS__COUNT": "0"})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})


def test_config_files_layer_deeply(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("server:\n  port: 7000\ninvariants:\n  reference_integrity: {on_fail: block}\n"
                    "  entailment: {timeout_s: 9}\n")
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("invariants:\n  entailment: {threshold: 0.42}\n")
    cfg = load_config([base, thresholds], environ={})
    assert cfg.server.port == 7000
    assert cfg.invariants["reference_integrity"].on_fail == "block"
    assert cfg.invariants["entailment"].threshold == 0.42 and cfg.invariants["entailment"].timeout_s == 9
