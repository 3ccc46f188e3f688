"""Which review store a command uses does not depend on the folder it runs in (issue 23, item 5): the default lives in
the data dir ($XDG_DATA_HOME/guardrail), a relative path in a config file is relative to that file, every command names
its store on stderr, and a command that only reads refuses (exit 2) to create a store that is not there — run from
another folder, `guardrail review users list` used to create a new, empty store and answer from it.

Through the CLI in subprocesses, as an operator runs it from two different folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from guardrail_server.config import anchor_sqlite_url, load_config

PASSWORD = "correct horse battery"


def guardrail(*args: str, cwd: Path, data: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}, "XDG_DATA_HOME": str(data)}
    return subprocess.run([sys.executable, "-m", "guardrail_server.cli", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(one working folder, another, the data dir)"""
    paths = tmp_path / "here", tmp_path / "elsewhere", tmp_path / "data"
    for p in paths[:2]:
        p.mkdir()
    return paths


def test_the_default_store_is_found_from_any_folder_and_named(folders: tuple[Path, Path, Path]) -> None:
    here, elsewhere, data = folders
    added = guardrail("review", "users", "add", "alice", "--password-stdin", cwd=here, data=data, stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    store = data / "guardrail" / "review.db"
    assert f"review store: sqlite:///{store} (the default, in $XDG_DATA_HOME/guardrail)" in added.stderr
    assert store.is_file() and not list(here.iterdir())  # nothing in the working folder

    listed = guardrail("review", "users", "list", cwd=elsewhere, data=data)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("alice") and f"review store: sqlite:///{store}" in listed.stderr
    assert not list(elsewhere.iterdir())


def test_a_relative_path_in_a_config_file_is_relative_to_the_file(folders: tuple[Path, Path, Path]) -> None:
    here, elsewhere, data = folders
    conf = here / "conf"
    conf.mkdir()
    (conf / "guardrail.yaml").write_text(yaml.safe_dump({"review": {"url": "sqlite:///state/review.db",
                                                                    "spool_dir": "state/spool"}}))
    assert guardrail("review", "users", "add", "bob", "--password-stdin", "--config", "conf/guardrail.yaml",
                     cwd=here, data=data, stdin=PASSWORD).returncode == 0
    assert (conf / "state" / "review.db").is_file()
    listed = guardrail("review", "users", "list", "--config", str(conf / "guardrail.yaml"), cwd=elsewhere, data=data)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("bob") and f"sqlite:///{conf / 'state' / 'review.db'}" in listed.stderr
    config = load_config(conf / "guardrail.yaml", environ={})
    assert config.review.spool_dir == str(conf / "state" / "spool")
    # on the command line a relative path is relative to where the command runs, and shown absolute
    flag = guardrail("review", "users", "list", "--url", "sqlite:///conf/state/review.db", cwd=here, data=data)
    assert flag.returncode == 0 and flag.stdout.startswith("bob")
    assert f"review store: sqlite:///{conf / 'state' / 'review.db'}" in flag.stderr


@pytest.mark.parametrize("command", [
    ["review", "users", "list"],
    ["review", "users", "disable", "alice"],
    ["anchors", "list"],
    ["anchors", "export", "golden"],
    ["anchors", "select", "--name", "golden"],
    ["calibrate", "--anchors", "golden", "--out", "t.yaml"],
    ["recalibrate", "report"],
    ["review", "--limit", "1"],
    ["eval", "review", "--anchor-set", "golden", "--out", "run"],
    ["metamorph", "review", "--anchor-set", "golden", "--out", "run"],
])
def test_read_only_commands_refuse_to_create_a_store(folders: tuple[Path, Path, Path], command: list[str]) -> None:
    here, _, data = folders
    out = guardrail(*command, cwd=here, data=data)
    assert out.returncode == 2, (out.stdout, out.stderr)
    store = data / "guardrail" / "review.db"
    assert f"no review store at sqlite:///{store} (the default, in $XDG_DATA_HOME/guardrail) (review.url)" in out.stderr
    assert "does not create one" in out.stderr and "Traceback" not in out.stderr
    assert not store.exists() and not list(here.iterdir())


def test_anchoring_leaves_absolute_memory_and_server_urls_alone(tmp_path: Path) -> None:
    for url in ("sqlite:////abs/review.db", "sqlite:///:memory:", "sqlite://", "postgresql://u@h/db",
                "sqlite:///~/review.db"):
        assert anchor_sqlite_url(url, tmp_path) == url
    assert anchor_sqlite_url("sqlite:///r.db?timeout=3", tmp_path) == f"sqlite:///{tmp_path / 'r.db'}?timeout=3"
    assert anchor_sqlite_url("sqlite+pysqlite:///a/r.db", tmp_path) == f"sqlite+pysqlite:///{tmp_path / 'a/r.db'}"


def test_exists_creates_nothing_on_either_backend(store_url: str) -> None:
    from guardrail_server.review.store import ReviewStore

    fresh = ReviewStore(store_url)
    assert fresh.exists() is False and fresh.exists() is False  # asking twice: the first ask created nothing
    with ReviewStore(store_url):
        pass
    assert ReviewStore(store_url).exists() is True
