"""The CLI explains itself (issue 23, item 9): `guardrail --help` names every command, every subcommand and flag has
help text, exit codes are the documented ones, and installing the package prints no setuptools deprecation banner."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardrail_server.cli import build_parser, main
from guardrail_server.review.store import ReviewStore

ROOT = Path(__file__).resolve().parent.parent


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse._SubParsersAction]:
    return (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("guardrail",)
         ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command path, parser) of the tree, the top level first."""
    yield path, parser
    for action in _subparsers(parser):
        for name, sub in action.choices.items():
            yield from walk(sub, (*path, name))


def test_top_level_help_lists_every_command() -> None:
    parser = build_parser()
    (commands,) = _subparsers(parser)
    out = subprocess.run([sys.executable, "-m", "guardrail_server.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    description = out.stdout.split("exit codes")[0]
    listed = {line.split()[0] for line in out.stdout.split("positional arguments:")[1].split("options:")[0]
              .splitlines()[2:] if line.startswith("    ") and not line.startswith("     ")}
    assert listed == set(commands.choices), out.stdout
    for name in commands.choices:  # the one-line summary at the top names each of them too
        assert name in description, name


def test_every_subcommand_and_flag_has_help() -> None:
    missing = []
    for path, parser in walk(build_parser()):
        for action in _subparsers(parser):
            helped = {a.dest for a in action._choices_actions if a.help}
            missing += [" ".join((*path, name)) for name in action.choices if name not in helped]
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip():
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_every_command_renders_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    for path, _ in walk(build_parser()):
        with pytest.raises(SystemExit) as done:
            main([*path[1:], "--help"])
        assert done.value.code == 0, path
        assert "usage: guardrail" in capsys.readouterr().out


def test_review_commands_exit_2_on_what_they_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented codes: 2 for a usage or input problem (it was 1 for these), 1 only for a crash or where a
    command documents it (`calibrate --strict`)."""
    url = f"sqlite:///{tmp_path / 'review.db'}"
    with ReviewStore(url):
        pass  # a store, empty
    base = ["--url", url, "--set", "invariants={}"]
    cases = [
        ["calibrate", *base, "--anchors", "golden"],  # the case: no such anchor set
        ["calibrate", *base, "--all-labels"],  # nothing labeled
        ["calibrate", *base, "--all-labels", "--test-fraction", "1.5"],
        ["anchors", "select", *base],  # nothing to select from
        ["anchors", "select", *base, "--size", "0"],
        ["anchors", "show", *base, "--name", "golden"],
        ["anchors", "export", *base, "golden"],
        ["anchors", "import", *base, str(tmp_path / "missing.jsonl")],
        ["review", "users", "disable", *base, "nobody"],
        ["recalibrate", *base, "--period", "soon"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith("guardrail: "), (argv, err)
    assert main(["calibrate", *base, "--anchors", "golden"]) == 2
    assert "no anchor set 'golden'" in capsys.readouterr().err


def test_installing_prints_no_setuptools_deprecation_banner(tmp_path: Path) -> None:
    """`make run` reinstalls when pyproject.toml changes; setuptools' metadata step is where the banners came from
    (`project.license` as a TOML table)."""
    code = ("import setuptools.build_meta as b, sys; "
            f"b.prepare_metadata_for_build_editable({str(tmp_path)!r})")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Deprecat" not in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    (metadata,) = tmp_path.glob("*.dist-info/METADATA")
    assert "License-Expression: Apache-2.0" in metadata.read_text()
