"""structlog JSON logging, configured only at the entry point. Events carry ids, outcomes and timings, never text.

Every line — structlog events and records from stdlib `logging` (the review store, gRPC, Presidio) alike — passes
`sanitize_event` before it is rendered, because log fields can carry what a caller sent:
- strings lose control and format characters (newlines, ANSI escapes, bidi overrides: no forged or hidden log lines)
  and are cut to a length (`request_id` 128, `app` 64, other fields 256, tracebacks 4000) with the dropped length and a
  fingerprint, so a 3 MB `request_id` gives a bounded line that still correlates;
- fields that identify a caller's documents or data (passage ids, urls, titles, metadata keys and values) are replaced
  by a fingerprint: a keyed hash (HMAC-SHA256, key random per process), equal within a process for correlation,
  useless for guessing the value from a dictionary of e-mail addresses;
- credentials (`authorization`, `token`, `api_key`, …) are replaced by `[redacted]`, whatever logs them;
- every other string — the event, a traceback, a gRPC core or asyncio message, any field — goes through the PII
  scrubber (`guardrail_invariants.pii.scrub`, patterns only): e-mail addresses, secrets in URLs and auth headers, UK
  National Insurance and Aadhaar numbers and any run of 9+ digits (phone, card, account numbers) become `<TYPE>`.
  A library's traceback quoting what a caller sent (gRPC's ExecuteBatchError chained to an input error naming a passage
  id) is scrubbed like the app's own events.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sys
import unicodedata
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from guardrail_invariants.pii.scrub import scrub

MAX_CHARS = 256
FIELD_MAX_CHARS = {"request_id": 128, "app": 64, "event": 512, "exception": 4000, "stack": 4000}
MULTILINE_FIELDS = frozenset({"exception", "stack"})  # tracebacks keep their newlines (escaped by the JSON renderer)
FINGERPRINTED_FIELDS = frozenset({
    "passage_id", "passage_ids", "url", "urls", "title", "titles", "metadata", "metadata_key", "metadata_keys",
})
SECRET_FIELDS = frozenset({"authorization", "token", "tokens", "api_key", "api_keys", "password", "secret"})
UNSCRUBBED_FIELDS = frozenset({"timestamp", "level", "logger"})  # written by the logging machinery, not by callers
MAX_ITEMS = 64
MAX_DEPTH = 4
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_KEY = os.urandom(32)


def fingerprint(value: object) -> str:
    """A stable-within-this-process stand-in for an identifying value: `fp:` + 12 hex of HMAC-SHA256."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    return "fp:" + hmac.new(_KEY, data, hashlib.sha256).hexdigest()[:12]


def _strip(text: str, keep_newlines: bool) -> str:
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        c for c in text
        if (keep_newlines and c == "\n") or (c == " ") or unicodedata.category(c) not in _DROPPED_CATEGORIES
    )


def clean_text(value: str, limit: int = MAX_CHARS, *, keep_newlines: bool = False, keep_tail: bool = False,
               scrubbed: bool = True) -> str:
    """`value` without control/format characters and (`scrubbed`) PII patterns, cut to `limit` characters. A cut value
    ends (or, with `keep_tail`, starts) with a marker: how many characters were dropped and the fingerprint of the whole
    original value."""
    if len(value) > limit * 8:  # strip only what can be kept: a 3 MB id must not cost a 3 MB pass per log line
        value_for_strip = value[-limit * 8:] if keep_tail else value[: limit * 8]
    else:
        value_for_strip = value
    text = _strip(scrub(value_for_strip) if scrubbed else value_for_strip, keep_newlines)
    if len(text) <= limit and len(value_for_strip) == len(value):
        return text
    marker = f"…[{len(value)} chars, {fingerprint(value)}]"
    room = max(0, limit - len(marker))
    return marker + text[-room:] if keep_tail else text[:room] + marker


def _clean(key: str, value: Any, depth: int) -> Any:
    if key in SECRET_FIELDS and value is not None and value != "":
        return "[redacted]"
    if key in FINGERPRINTED_FIELDS and value is not None and value != "" and not isinstance(value, (bool, int, float)):
        if isinstance(value, Mapping):
            return {fingerprint(k): fingerprint(v) for k, v in list(value.items())[:MAX_ITEMS]}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [fingerprint(v) for v in list(value)[:MAX_ITEMS]]
        return fingerprint(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return clean_text(value, FIELD_MAX_CHARS.get(key, MAX_CHARS), keep_newlines=key in MULTILINE_FIELDS,
                          keep_tail=key in MULTILINE_FIELDS, scrubbed=key not in UNSCRUBBED_FIELDS)
    if depth >= MAX_DEPTH:
        return clean_text(repr(value), MAX_CHARS)
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {clean_text(str(k), 64): _clean(str(k), v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"{len(items) - MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_list = [_clean(key, v, depth + 1) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            out_list.append(f"… {len(seq) - MAX_ITEMS} more")
        return out_list
    return clean_text(str(value), MAX_CHARS)


def sanitize_event(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: bounds, strips, fingerprints and redacts every field (see the module docstring)."""
    return {clean_text(str(k), 64): _clean(str(k), v, 0) for k, v in event_dict.items()}


def _renderer(fmt: str) -> structlog.typing.Processor:
    return structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)


CHILD_SETTINGS_ENV = "GUARDRAIL_CHILD_LOGGING"  # "level,format": how the server's helper processes log


def child_environment() -> dict[str, str]:
    """For `childproc.start_child`: the helper processes (check workers, the redaction worker) configure their logging
    like the server's, so their lines are sanitized and scrubbed too (without it a library's warning there would reach
    stderr through Python's last-resort handler, raw)."""
    return {CHILD_SETTINGS_ENV: f"{_settings[0]},{_settings[1]}"}


def configure_child_logging() -> None:
    """In a helper process: the server's level and format (child_environment), or nothing when started otherwise."""
    level, _, fmt = os.environ.get(CHILD_SETTINGS_ENV, "").partition(",")
    if level and fmt:
        configure_logging(level, fmt)


_settings = ("info", "json")


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """structlog events and stdlib `logging` records (warnings too) all end as one sanitized line on stderr (JSON or
    console)."""
    global _settings
    _settings = (level, fmt)
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                sanitize_event,
                _renderer(fmt),
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)  # warnings.warn from any library: a logging record like the rest
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            sanitize_event,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "guardrail") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
