from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import yaml

pytest_plugins = ["tests.review_support"]  # the review store fixtures (SQLite and PostgreSQL)

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The default review store and spool live in $XDG_DATA_HOME/guardrail: a test that leaves them at their defaults writes
# into a folder of this run (inherited by the servers and CLIs it starts), never into the user's data dir.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="guardrail-test-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], True)

from guardrail_server.config import DEFAULT_INVARIANTS, Config, load_config  # noqa: E402
from guardrail_server.logs import configure_logging  # noqa: E402
from guardrail_server.server import GuardrailServer  # noqa: E402
from guardrail_invariants import registry  # noqa: E402
from tests.helpers_invariants import TEST_INVARIANTS  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _register_test_invariants() -> None:
    registry.REGISTRY.update(TEST_INVARIANTS)


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> None:
    """Every test starts with JSON logs on stderr (a CLI call inside a test may have reconfigured them)."""
    configure_logging("debug", "json")


def make_config(
    invariants: dict[str, dict[str, Any]] | None = None, overrides: dict[str, Any] | None = None
) -> Config:
    """A config for tests: ephemeral ports, no review store unless asked, the given invariant policies."""
    registry.REGISTRY.update(TEST_INVARIANTS)
    pairs: list[tuple[str, Any]] = [
        ("server.port", 0),
        ("server.metrics_port", None),
        ("server.host", "127.0.0.1"),
        ("review.enabled", False),
        # invariants in this process (fast to start) with room for the tests' concurrency; the check workers and
        # admission control have their own tests (test_workers.py, test_admission.py)
        ("workers.mode", "inline"),
        ("workers.count", 8),
        ("admission.max_queue", 64),
    ]
    pairs += list((overrides or {}).items())
    if invariants is not None:
        # Under the one merge rule (README, "Configuration") a mapping refines the defaults; a test runs exactly
        # the invariants it names, so the defaults it does not name are switched off.
        pairs.append(("invariants", {**{n: {"enabled": False} for n in DEFAULT_INVARIANTS}, **invariants}))
    return load_config(None, environ={}, overrides=pairs)


def only(flow: str) -> str:
    """A `--set` value that runs just the invariants of a YAML flow mapping, e.g. `only("{test_keyword: {}}")`: the
    defaults it does not name are switched off (a mapping refines the defaults under the one merge rule)."""
    named = yaml.safe_load(flow)
    off = ", ".join(f"{n}: {{enabled: false}}" for n in DEFAULT_INVARIANTS if n not in named)
    return "invariants={" + off + (", " if off else "") + flow.strip()[1:-1] + "}"


@asynccontextmanager
async def running_server(config: Config, **kwargs: Any) -> AsyncIterator[tuple[GuardrailServer, str]]:
    """A real gRPC server on an ephemeral port, warm and SERVING; stopped afterwards."""
    server = GuardrailServer(config, **kwargs)
    ports = await server.start()
    await server.warm()
    try:
        yield server, f"127.0.0.1:{ports.grpc}"
    finally:
        await server.stop(0, flush_s=30.0)  # calls stop at once; tests read the review store right after


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
