"""Flags and helpers shared by the subcommands, and the one way a command reports a start-up problem.

A problem the operator can fix — a config key, a file, a busy port, an unreachable store, an unknown model — is one
line on stderr naming the key, file or URL (passwords masked) and exit code 2, never a traceback: the line is what a
person reads in `kubectl logs` or a CI log, and 2 is what a script tells apart from a crash (1) or a verdict.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from guardrail_server.config import Config, ConfigError, load_config, parse_set_flags

EXIT_USAGE = 2


class StartupError(Exception):
    """A start-up problem with a one-line message that names what to fix; `guardrail` exits 2 with it."""


def fail(message: str) -> NoReturn:
    """Raises the SystemExit(2) every subcommand uses for start-up problems, after printing `message` on one line."""
    print(f"guardrail: {_one_line(message)}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", action="append", default=None, metavar="FILE",
        help="YAML config file; repeat to layer files (later wins), e.g. base.yaml then thresholds.yaml "
        "(default: $GUARDRAIL_CONFIG)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set invariants.entailment.threshold=0.4 (repeatable; merged like a "
        "file layer: a mapping value refines, it does not replace)",
    )


def config_files(args: argparse.Namespace) -> list[str]:
    """The config files a command was given (`--config`, else `$GUARDRAIL_CONFIG`)."""
    files = args.config if args.config is not None else [os.environ.get("GUARDRAIL_CONFIG") or None]
    return [f for f in files if f]


def config_from_args(
    args: argparse.Namespace, extra: list[tuple[str, object]] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Loads file + env + --set (+ command-specific flags); exits 2 with the offending key on error."""
    try:
        return load_config(config_files(args), environ=environ,
                           overrides=[*parse_set_flags(args.overrides), *(extra or [])])
    except ConfigError as exc:
        fail(f"invalid configuration: {exc}")


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}{at}{host}{slash}{path}"


def _password(url: str) -> str:
    userinfo = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else ""


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- the review store -----------------------------------------------------------------------------------------


def describe_store(url: str) -> str:
    """The store's URL (password masked), saying when it is the default one in the data dir."""
    from guardrail_server.config import default_store_url

    return mask_url(url) + (" (the default, in $XDG_DATA_HOME/guardrail)" if url == default_store_url() else "")


def review_store_in_use(url: str, *, create: bool) -> None:
    """Names the review store a command uses on stderr, and raises StartupError (exit 2) when it does not exist and
    the command only reads: issue 23 — run from another folder, `review users list` silently created a new, empty
    store and answered from it."""
    from guardrail_server.review.store import ReviewStore

    print(f"review store: {describe_store(url)}", file=sys.stderr)
    if not create and not ReviewStore(url).exists():
        raise StartupError(
            f"no review store at {describe_store(url)} (review.url); this command reads and does not create one. "
            "Point it at the store `guardrail serve` writes to (--config FILE, --url/--review-url URL or "
            "GUARDRAIL_REVIEW__URL); `guardrail serve` or `guardrail review users add` creates it")


# --- ports ----------------------------------------------------------------------------------------------------


def _listeners(config: Config) -> Iterator[tuple[str, str, int]]:
    """(config key, host, port) of every socket `serve` will listen on; port 0 (any free port) is skipped."""
    s = config.server
    yield "server.port", s.host, s.port
    if s.metrics_port:
        yield "server.metrics_port", getattr(s, "metrics_host", None) or s.host, s.metrics_port
    health_port = getattr(s, "health_port", None)
    if health_port:
        yield "server.health_port", getattr(s, "health_host", None) or s.host, health_port
    if config.review.enabled and config.review.web_port:
        yield "review.web_port", s.host, config.review.web_port


def check_ports_free(config: Config) -> None:
    """Raises StartupError naming the key when a port `serve` needs is taken or its host does not resolve.

    Checked before anything binds: a failure half-way through start-up would leave a started gRPC server behind
    (and its shutdown traceback). A race with another process binding in between is still reported, by the bind."""
    for key, host, port in _listeners(config):
        if port == 0:
            continue
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise StartupError(f"{key}: cannot resolve host {host!r} ({exc.strerror})") from None
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server bind
            try:
                probe.bind(address)
            except OSError as exc:
                raise StartupError(f"{key}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


# --- errors raised while starting ------------------------------------------------------------------------------


def _string_leaves(value: Any, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _string_leaves(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _string_leaves(v, f"{key}.{i}")


def _key_quoted_in(message: str, config: Config) -> str | None:
    """The config key whose string value the message quotes (`unknown model 'nope'` -> the key that says 'nope')."""
    for name, policy in config.enabled_invariants().items():
        for key, value in _string_leaves(policy.options, f"invariants.{name}.options"):
            if value and (f"'{value}'" in message or f'"{value}"' in message):
                return key
    return None


def describe_startup_error(exc: BaseException, config: Config | None = None, store_url: str | None = None
                           ) -> str | None:
    """One line naming the key, file or URL for a known start-up failure, or None for anything else (a bug)."""
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, ConfigError):
        return f"invalid configuration: {exc}"
    kind = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("sqlalchemy") or module.startswith("psycopg") or kind == "StoreGoneError":
        url = mask_url(store_url) if store_url else "(review.url)"
        reason = getattr(exc, "orig", None) or exc
        text = str(reason).strip().splitlines()
        line = _one_line(text[0] if text else kind, 200)
        secret = _password(store_url or "")
        return f"cannot open the review store {url} (review.url): {line.replace(secret, '***') if secret else line}"
    # Model errors may come from a check worker process, as text: "check worker failed to start: UnknownModelError: …"
    text = str(exc)
    if kind == "DeviceUnavailableError" or "DeviceUnavailableError: " in text:  # its message names models.device
        return text.split("DeviceUnavailableError: ", 1)[-1]
    for marker in ("UnknownModelError", "ModelNotInstalledError"):
        if kind == marker or f"{marker}: " in text:
            detail = text.split(f"{marker}: ", 1)[1] if f"{marker}: " in text else text
            if marker == "ModelNotInstalledError":
                return f"guardrail_invariants.pii_boundary: {detail}"
            key = (_key_quoted_in(detail, config) if config is not None else None) or "models.dir"
            return f"{key}: {detail}"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"cannot start: {exc.strerror or exc}{where}"
    return None
