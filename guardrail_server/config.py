"""Configuration as data: one YAML file, `GUARDRAIL_*` environment overrides and CLI `--set` flags,
validated once at start-up. Errors name the offending key (e.g. `invariants.entailment.threshold`)."""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator

from guardrail_server.tls import TLSConfig
from guardrail_invariants.base import InvariantOptions
from guardrail_invariants.registry import REGISTRY, default_threshold, options_model

if TYPE_CHECKING:
    from guardrail_models.zoo import ZooSettings

ENV_PREFIX = "GUARDRAIL_"


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key."""


class _Strict(BaseModel):
    # No `.inf`/`nan` anywhere: an infinite timeout never fires, a NaN threshold compares false both ways.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- server.auth (enforced by guardrail_server.auth) ---------------------------------------------------------

MIN_SECRET_CHARS = 16
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Secret(BaseModel):
    """One secret: `value` inline, or `env` (variable name) or `file` (path, one trailing newline stripped).
    A plain string in YAML is the inline form."""

    model_config = ConfigDict(extra="forbid")

    value: SecretStr | None = None
    env: str | None = None
    file: str | None = None
    _resolved: bytes = PrivateAttr(default=b"")

    @model_validator(mode="before")
    @classmethod
    def _plain_string(cls, data: Any) -> Any:
        return {"value": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _resolve(self) -> "Secret":
        given = [name for name in ("value", "env", "file") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of value, env, file")
        if self.value is not None:
            raw = self.value.get_secret_value()
        elif self.env is not None:
            if self.env not in os.environ:
                raise ValueError(f"environment variable {self.env} is not set")
            raw = os.environ[self.env]
        else:
            assert self.file is not None
            try:
                raw = Path(self.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read secret file {self.file!r}: {type(exc).__name__}") from None
            raw = raw[:-1] if raw.endswith("\n") else raw
        if len(raw) < MIN_SECRET_CHARS:
            raise ValueError(f"secret is shorter than {MIN_SECRET_CHARS} characters (use e.g. `openssl rand -hex 32`)")
        if any(c.isspace() for c in raw) or not raw.isascii() or not raw.isprintable():
            raise ValueError("secret must be printable ASCII without spaces (it travels in gRPC metadata)")
        self._resolved = raw.encode("ascii")
        return self

    def reveal(self) -> bytes:
        return self._resolved


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, (str, dict)) else value


class AuthConfig(BaseModel):
    """`server.auth`. Empty (the default) = no authentication. Each entry may be a list, for rotation without downtime:
    add the new secret, roll the clients, remove the old one."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[Secret] = Field(default_factory=list, description="bearer tokens valid for every app")
    api_keys: dict[str, list[Secret]] = Field(
        default_factory=dict, description="app name -> its API key(s); a key pins the call's `app`"
    )

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens_list(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_lists(cls, value: Any) -> Any:
        return {k: _as_list(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("api_keys")
    @classmethod
    def _app_names(cls, value: dict[str, list[Secret]]) -> dict[str, list[Secret]]:
        for app, keys in value.items():
            if not _APP_NAME.match(app):
                raise ValueError(f"app name {app[:64]!r} must be 1-64 of A-Z a-z 0-9 . _ - (it becomes a label)")
            if not keys:
                raise ValueError(f"app {app!r} has no keys")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> "AuthConfig":
        seen: dict[bytes, str] = {}
        entries = [("tokens", s) for s in self.tokens] + [
            (f"api_keys.{app}", s) for app, keys in self.api_keys.items() for s in keys
        ]
        for where, secret in entries:
            digest = hashlib.sha256(secret.reveal()).digest()
            if digest in seen and seen[digest] != where:
                raise ValueError(f"the same secret is configured under {seen[digest]} and {where}")
            seen[digest] = where
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.api_keys)

    def mode(self) -> str:
        """For the start-up log line: which kinds of credential are configured (never the secrets)."""
        kinds = [k for k, on in (("tokens", self.tokens), ("api_keys", self.api_keys)) if on]
        return "+".join(kinds) or "off"


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535, description="0 picks a free port")
    metrics_port: int | None = Field(9464, ge=0, le=65535, description="null disables the endpoint; 0 picks a free port")
    grace_period_s: float = Field(10.0, ge=0, description="time SIGTERM leaves in-flight calls to finish")
    default_deadline_s: float = Field(10.0, gt=0, description="used when the caller sets no gRPC deadline")
    max_message_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, le=2**31 - 1, description="largest gRPC message either way (gRPC takes a 32-bit int)")
    reflection: bool = True
    metrics_host: str | None = Field(
        None, description="bind address of the metrics endpoint; null = `host`. In Kubernetes a Prometheus in another "
        "pod scrapes the pod IP: set the pod IP (downward API) or 0.0.0.0")
    health_port: int | None = Field(
        None, ge=0, le=65535, description="extra plaintext port serving only gRPC health, for Kubernetes gRPC probes "
        "(they cannot do TLS or send tokens); null = off")
    health_host: str | None = Field(None, description="bind address of health_port; null = `host`")
    tls: TLSConfig | None = Field(None, description="serve gRPC over TLS (mTLS with client_ca_file); null = plaintext")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="bearer tokens / per-app API keys; empty = off")


class WorkersConfig(_Strict):
    """Where invariants run (see `guardrail_server.workers`): `count` checks run at once, one per worker."""

    mode: Literal["process", "inline"] = Field(
        "process", description="process: check workers a deadline can kill (the server's loop never blocks); "
        "inline: threads in the server process (tests, notebooks)")
    count: int = Field(2, ge=1, le=64, description="checks running at once (process mode: worker processes, each "
                       "holding every model: ~350 MB each); size it to the cores")
    intra_op_threads: int = Field(1, ge=0, description="onnxruntime threads per worker process (0 = all cores)")
    kill_grace_s: float = Field(0.25, ge=0, le=10, description="a worker that overruns a check's timeout by this "
                                "much is killed and replaced")
    restart_delay_s: float = Field(0.5, gt=0, le=60, description="first back-off when a replacement fails to start")
    nice: int = Field(5, ge=0, le=19, description="process mode: workers run this much below the server's priority, "
                      "so on busy cores the server's event loop (health, admission, replies) is scheduled first")


class AdmissionConfig(_Strict):
    """Load shedding (see `guardrail_server.admission`): a call waits at most `max_queue_wait_s` for a free check
    worker, else RESOURCE_EXHAUSTED — before its invariants could time out and fail open."""

    # measured by bench.load (2 cores, 2 workers, HaluEval/WiCE cases): waits of 1.0 / 0.5 / 0.25 s admit the same
    # 13.7-14.2 checks/s at 4x saturation with admitted p99 1235 / 857 / 638 ms, so the short wait is the default
    max_queue: int = Field(4, ge=0, description="calls waiting for a worker (unary + stream); more are shed at once")
    max_queue_wait_s: float = Field(0.25, ge=0, le=60, description="longest wait for a worker")
    min_run_s: float = Field(0.5, ge=0, le=60, description="a call whose deadline leaves less than this for its "
                             "checks after waiting is shed instead of run")
    stream_share: float = Field(0.5, gt=0, le=1, description="share of workers and of the queue CheckStream calls "
                                "may hold, so streams cannot starve unary callers")


class StreamingConfig(_Strict):
    """`CheckGeneration`: responses checked while they are generated (see `guardrail_server.generation`,
    docs/streaming.md). The limits, auth and admission of Check apply to it too."""

    max_streams: int = Field(
        10, ge=0, description="CheckGeneration streams open at once; one more is refused with RESOURCE_EXHAUSTED "
        "(guardrail_shed_total{kind=\"generation\",reason=\"streams_full\"}). Measured (bench.streaming): ~10 "
        "streams at 20 tokens/s keep 2 check workers on 2 shared cores busy; raise it with more workers or cores")
    idle_timeout_s: float = Field(30.0, gt=0, description="a stream that sends nothing for this long is ended with "
                                  "DEADLINE_EXCEEDED")
    max_duration_s: float = Field(300.0, gt=0, description="longest a stream may stay open (the call's own deadline "
                                  "may be shorter)")
    sentence_invariants: list[str] = Field(
        default_factory=lambda: ["entailment", "reference_integrity"], description="run on each sentence as soon as "
        "it ends (when enabled and requested); every invariant runs on the whole response at the close")
    live_pii: bool = Field(True, description="run pii_boundary on the text so far, so a leak is reported as soon as "
                           "the entity is complete, before its sentence ends")
    max_pending_verdicts: int = Field(8, ge=1, description="verdicts waiting for a slow reader; past them the stream "
                                      "stops checking (and its memory stops growing) until the reader catches up")
    max_check_wait_s: float = Field(
        1.0, gt=0, description="a new stream is refused (RESOURCE_EXHAUSTED) while the open streams' checks have "
        "waited longer than this for a worker: past capacity new streams are shed, instead of every open stream "
        "falling behind")

    @field_validator("sentence_invariants")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in REGISTRY:
                raise ValueError(f"unknown invariant {name!r}; known: {sorted(REGISTRY)}")
        return list(dict.fromkeys(value))


class LimitsConfig(_Strict):
    """Documented input limits; exceeding one is RESOURCE_EXHAUSTED naming the field."""

    max_response_chars: int = Field(32_000, ge=1)
    max_question_chars: int = Field(16_000, ge=1)
    max_passages: int = Field(64, ge=0)
    max_passage_chars: int = Field(32_000, ge=1)
    max_context_chars: int = Field(256_000, ge=1)
    max_samples: int = Field(20, ge=0)
    max_sample_chars: int = Field(32_000, ge=1)
    max_metadata_entries: int = Field(32, ge=0)
    max_metadata_key_chars: int = Field(128, ge=1)
    max_metadata_value_chars: int = Field(1024, ge=1)
    max_passage_id_chars: int = Field(256, ge=1)
    max_passage_title_chars: int = Field(1024, ge=1)
    max_passage_url_chars: int = Field(4096, ge=1)
    max_request_id_chars: int = Field(128, ge=1)
    max_app_chars: int = Field(64, ge=1)
    max_findings: int = Field(
        100, ge=1, description="findings returned per invariant; more are counted in the verdict (`findings_omitted`) "
        "but not listed, so a 32 KB request cannot make a multi-MB reply")


class CalibrationNote(_Strict):
    """Where a threshold came from, as `guardrail calibrate` writes it into its overlay (read, never enforced: the
    server logs `unvalidated_threshold` at start-up for a threshold written with --allow-unvalidated-threshold)."""

    run: int | None = Field(None, description="the calibration run in the review store")
    source: str = Field("", description="anchors:NAME@VERSION or all-labels")
    validated: bool = Field(True, description="false: written although the labels did not show it agrees better")
    note: str = Field("", description="why it was not validated")


class InvariantPolicy(_Strict):
    enabled: bool = True
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="pass iff score >= threshold")
    calibration: CalibrationNote | None = Field(None, description="written by `guardrail calibrate` with threshold")
    on_fail: Literal["flag", "block"] = "flag"
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    on_partial: Literal["allow", "flag", "block"] = Field(
        "flag", description="the decision at least, when the invariant could not check all of the response: outcome "
        "partial (its time budget or a cap ran out; a violation in the checked part is still on_fail), or a timeout "
        "(nothing checked; the stricter of this and on_error). allow lets the unchecked part through (counted in "
        "guardrail_fail_open_total)")
    timeout_s: float = Field(2.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class ModelsConfig(_Strict):
    """Model runtime settings shared by every NLI invariant (see `guardrail_models.zoo`)."""

    dir: str = ""
    device: Literal["cpu", "cuda", "auto"] = Field(
        "auto", description="where the models run: cpu; cuda (onnxruntime's CUDA execution provider: needs "
        "onnxruntime-gpu, the -gpu image, and a visible GPU, else the server refuses to start naming this key); auto "
        "= cuda when that provider is installed and starts, else cpu (the CPU image always runs on the CPU)")
    intra_op_threads: int = Field(0, ge=0, description="0 = onnxruntime default")
    max_batch_size: int | None = Field(
        None, ge=1, description="pairs per model call, gathered from the concurrent checks of a process (the claims, "
        "windows and invariants of a case; several cases with workers.mode inline). null (default): 1 on the CPU — "
        "measured, batching gains no throughput there (bench.entailment), and dynamic int8 scales activations per "
        "batch, so with batch-mates a pair's score would depend on other requests — and 32 on CUDA, where a batch "
        "costs about what one pair does")
    max_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits to fill (only with max_batch_size > 1)")
    max_queue: int = Field(4096, ge=1)
    cache_size: int = Field(
        4096, ge=0, description="model outputs (NLI pairs, embeddings) kept per model and process, by input: a "
        "CheckGeneration's final verdict re-scores the sentences it checked live, and contexts recur; 0 = no cache")


def zoo_settings(config: "Config") -> ZooSettings:
    """The model runtime settings of `config.models`, as `guardrail_models.zoo` takes them (the engine, the check
    workers and `guardrail models` build their zoo from this)."""
    from guardrail_models.zoo import ZooSettings  # numpy and onnxruntime: only where a zoo is built

    m = config.models
    return ZooSettings(
        models_dir=Path(m.dir) if m.dir else None,
        intra_op_threads=m.intra_op_threads,
        device=m.device,
        max_batch_size=m.max_batch_size,
        max_wait_ms=m.max_wait_ms,
        max_queue=m.max_queue,
        cache_size=m.cache_size,
    )


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the review store and its spool live unless configured: `$XDG_DATA_HOME/guardrail`, by default
    `~/.local/share/guardrail`. A fixed place, so every command finds the store `serve` writes, from any folder."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base).expanduser() / "guardrail"


def default_store_url(environ: Mapping[str, str] | None = None) -> str:
    return f"sqlite:///{data_dir(environ) / 'review.db'}"


def anchor_sqlite_url(url: str, base: Path) -> str:
    """`url` with a relative SQLite file path made absolute against `base`; any other URL unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.lower().startswith("sqlite") or not rest.startswith("/"):
        return url
    path, q, query = rest[1:].partition("?")
    if not path or path == ":memory:" or path.startswith("file:"):
        return url
    p = Path(path).expanduser()
    return url if p.is_absolute() else f"{scheme}:///{base / p}{q}{query}"


def _anchor_review_paths(tree: dict[str, Any], base: Path) -> None:
    """Makes the relative review.url (SQLite) and review.spool_dir of one layer absolute against `base`: a config
    file's folder for the file's own values, the working directory for the environment's and the flags'."""
    review = tree.get("review")
    if not isinstance(review, dict):
        return
    if isinstance(review.get("url"), str):
        review["url"] = anchor_sqlite_url(review["url"], base)
    spool = review.get("spool_dir")
    if isinstance(spool, str) and spool and not Path(spool).expanduser().is_absolute():
        review["spool_dir"] = str(base / Path(spool).expanduser())


class ReviewConfig(_Strict):
    enabled: bool = True
    url: str = Field(default_factory=lambda: default_store_url(), description="sqlite:///PATH or postgresql://… "
                     "(default: review.db in the data dir, $XDG_DATA_HOME/guardrail; a relative path in a config file "
                     "is relative to that file's folder, on the command line or in the environment to the working "
                     "directory)")
    spool_dir: str = Field(default_factory=lambda: str(data_dir() / "spool"), description="samples waiting for the "
                           "store (default: spool/ in the data dir; relative paths resolve as review.url's)")
    random_rate: float = Field(0.01, ge=0.0, le=1.0)
    failure_rate_limit_per_minute: float = Field(60.0, ge=0.0)
    queue_size: int = Field(1000, ge=1)
    store_raw_text: bool = False
    web_port: int = Field(0, ge=0, le=65535, description="0 disables the review web page in `serve`")
    write_timeout_s: float = Field(5.0, gt=0, description="a store write slower than this fails over to the spool")
    key_file: str | None = Field(None, description="review key (Fernet) file; GUARDRAIL_REVIEW_KEY overrides it")
    encrypt_raw_text: bool = Field(False, description="seal raw text with the review key for signed-in reviewers")
    redact_entities: list[str] | None = Field(None, description="entity types redacted in stored text (default: all)")
    blind_review: bool = Field(False, description="hide the judges' verdicts from reviewers until they have labeled")

    @model_validator(mode="after")
    def _raw_text_needs_a_key(self) -> "ReviewConfig":
        if self.encrypt_raw_text and not (self.key_file or os.environ.get("GUARDRAIL_REVIEW_KEY")):
            raise ValueError("review.encrypt_raw_text needs a key: set review.key_file or GUARDRAIL_REVIEW_KEY "
                             "(`guardrail review key generate --out FILE`)")
        return self

    @field_validator("url")
    @classmethod
    def _supported_store(cls, value: str) -> str:
        """Refused here, not at the first write: an unsupported database would otherwise spool every sample forever
        while the server looks healthy. The message names the scheme only, never the rest (it may hold a password)."""
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in SUPPORTED_STORE_SCHEMES:
            shown = repr(scheme) if scheme else "none"
            raise ValueError(f"unsupported review store scheme {shown}; use sqlite:///PATH or postgresql://USER@HOST/DB")
        return value


SUPPORTED_STORE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"})

_APP_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


class MetricsConfig(_Strict):
    """Prometheus label policy: the calling `app` is a label only for the names listed here (bounded cardinality)."""

    apps: list[str] = Field(
        default_factory=list, max_length=100,
        description="apps that get their own `app` label value on guardrail_checks_total and "
        "guardrail_decisions_total; any other app is counted as `other`, a call without app as `unset`")

    @field_validator("apps")
    @classmethod
    def _app_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _APP_LABEL.match(name):
                raise ValueError(f"{name!r} is not a valid app name (letters, digits, _ . : -, at most 63 chars)")
            if name in ("other", "unset"):
                raise ValueError(f"{name!r} is reserved (apps not listed are 'other', calls without app 'unset')")
        if len(set(value)) != len(value):
            raise ValueError("duplicate app names")
        return value


# What runs when the config names no invariants (`make run`): all four, flagging rather than blocking, since the
# judges' agreement with people is still being calibrated (see README, "Where the judges stand").
DEFAULT_INVARIANTS: dict[str, dict[str, Any]] = {
    "reference_integrity": {"on_fail": "flag", "timeout_s": 2.0},
    "entailment": {"on_fail": "flag", "timeout_s": 5.0},
    "pii_boundary": {"on_fail": "flag", "timeout_s": 3.0},
    "self_consistency": {"on_fail": "flag", "timeout_s": 5.0},
}


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    logging: LoggingConfig = LoggingConfig()
    models: ModelsConfig = ModelsConfig()
    workers: WorkersConfig = WorkersConfig()
    admission: AdmissionConfig = AdmissionConfig()
    streaming: StreamingConfig = StreamingConfig()
    review: ReviewConfig = ReviewConfig()
    metrics: MetricsConfig = MetricsConfig()
    invariants: dict[str, InvariantPolicy] = Field(
        default_factory=lambda: {k: InvariantPolicy(**v) for k, v in DEFAULT_INVARIANTS.items()}
    )

    @field_validator("invariants")
    @classmethod
    def _known_invariants(cls, value: dict[str, InvariantPolicy]) -> dict[str, InvariantPolicy]:
        for name in value:
            if name not in REGISTRY:
                raise ValueError(f"unknown invariant {name!r}; known: {sorted(REGISTRY)}")
        return value

    @model_validator(mode="after")
    def _validate_options(self) -> "Config":
        for name, policy in self.invariants.items():
            if not policy.enabled:
                continue
            try:
                options_model(name).model_validate(policy.options)
            except ValidationError as exc:
                raise ValueError(_format_errors(exc, prefix=f"invariants.{name}.options")) from None
            bad = _non_finite(policy.options, f"invariants.{name}.options")
            if bad:
                raise ValueError(f"{bad}: must be a finite number (got .inf or .nan)")
        return self

    def enabled_invariants(self) -> dict[str, InvariantPolicy]:
        return {name: p for name, p in self.invariants.items() if p.enabled}

    def threshold(self, name: str) -> float:
        policy = self.invariants[name]
        return policy.threshold if policy.threshold is not None else default_threshold(name)

    def options(self, name: str) -> InvariantOptions:
        return options_model(name).model_validate(self.invariants[name].options)


def _format_errors(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        key = ".".join(p for p in (prefix, loc) if p)
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{key}: {msg}" if key else msg)  # a model-level check names its key inside the message
    return "; ".join(lines)


def _non_finite(value: Any, key: str) -> str | None:
    """The dotted key of the first `.inf`/`.nan` inside an invariant's options (their models are not ours to tighten)."""
    if isinstance(value, float) and not math.isfinite(value):
        return key
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = _non_finite(v, f"{key}.{k}")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{key}.{i}")
            if found:
                return found
    return None


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Merges `value` at `dotted` by the one rule of `_deep_merge`: a mapping merges into the mapping already there,
    anything else replaces it."""
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(f"empty config key in override {dotted!r}")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    _deep_merge(node, {parts[-1]: value})


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any]]:
    """`GUARDRAIL_SERVER__PORT=6000` -> ("server.port", 6000); `__` separates levels, values parse as YAML."""
    out = []
    for key, raw in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        dotted = ".".join(part.lower() for part in key[len(ENV_PREFIX):].split("__"))
        out.append((dotted, _parse_scalar(raw)))
    return out


def parse_set_flags(flags: Sequence[str]) -> list[tuple[str, Any]]:
    out = []
    for flag in flags:
        key, sep, raw = flag.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {flag!r}")
        out.append((key.strip(), _parse_scalar(raw)))
    return out


def _read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a directory, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror or type(exc).__name__}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p}: top level must be a mapping")
    return loaded


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """THE merge rule, for every layer (defaults < files < environment < flags): mappings merge key by key at every
    depth; any other value (scalar, list, null) replaces what was there. So a layer that names one invariant changes
    that invariant only; turning one off takes `enabled: false`."""
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else copy.deepcopy(value)
    return base


def default_tree() -> dict[str, Any]:
    """The bottom layer: what `make run` runs (every invariant with its own timeout). Pydantic supplies the rest."""
    return {"invariants": copy.deepcopy(DEFAULT_INVARIANTS)}


def load_config(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Sequence[tuple[str, Any]] = (),
) -> Config:
    """Defaults, then files (each merged over the previous one, e.g. a base config then `guardrail calibrate`'s
    thresholds), then environment, then CLI overrides — every layer by the one rule of `_deep_merge` (later wins).
    A relative review.url / review.spool_dir is resolved against the folder of the file that gave it (else the
    working directory), so a command run from another folder finds the same store. Raises ConfigError naming the
    key (or the file)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path or [])
    tree = default_tree()
    for p in paths:
        layer = _read_yaml(p)
        _anchor_review_paths(layer, Path(p).expanduser().resolve().parent)  # relative to the file, not the caller
        _deep_merge(tree, layer)
    for dotted, value in [*env_overrides(os.environ if environ is None else environ), *overrides]:
        _set_path(tree, dotted, value)
    _anchor_review_paths(tree, Path.cwd())  # what is still relative came from the environment or a flag
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
