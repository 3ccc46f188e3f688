"""A sampled case as a plain JSON-able record: what the intake journal, the spool and the store hold.

Two steps, on two sides of the hot path:

* `raw_record(pending)` runs in `offer()`: a cheap, raw (unredacted) snapshot, journaled before the Check reply
  claims the sample id (see `intake.py`).
* `redact_record(raw, ...)` runs later, in the redaction worker process, before anything reaches the store or
  the spool. It rewrites **free text only** — question, response, passage titles and texts, sampled responses,
  finding messages and quotes, verdict errors — with the PII redactor (Presidio; e-mail addresses on any TLD are
  replaced before it, so `.internal`/`.corp` never depend on a public-suffix list), after which the pattern scrubber
  (`guardrail_invariants.pii.scrub`, the one every log line passes) catches what a recognizer missed: secrets in
  URLs, UK National Insurance and Aadhaar numbers, any run of 9+ digits (a phone number in a format the phone
  recognizer does not parse).
  Public places (cities, countries, "the Louvre") stay readable in a record whose context holds a passage marked
  public: "How tall is the Eiffel Tower?" is not personal data there. Structured values keep
  their meaning: invariant and judge names, outcomes, numbers, finding kinds, `entity_type` and other
  identifier-like evidence values stay as they are (Presidio used to turn `entity_type: EMAIL_ADDRESS` into
  `<PERSON>`). Identifiers that may carry personal data are never stored raw:

  | field                         | stored as                                                             |
  |-------------------------------|-----------------------------------------------------------------------|
  | request_id, app               | keyed hash `#<16 hex>` (correlate with `guardrail review hash VALUE`)  |
  | metadata                      | keys redacted like free text, values hashed                           |
  | passage id, citation refs     | redacted like free text: the response cites ids, so both must match   |
  | passage url                   | scheme and redacted host kept, path/query/fragment hashed             |

  The hash is HMAC-SHA256 keyed by the review key when one is configured (`review.key_file` or
  `GUARDRAIL_REVIEW_KEY`); without a key it is a plain SHA-256, which a dictionary of likely values can
  reverse — configure a key where that matters.
* With `review.encrypt_raw_text` the raw case (and raw finding quotes) is also *sealed* into the record with
  Fernet under the review key: reviewers who are signed in to the review page see the text as it was, the
  database and its backups hold only ciphertext.

Finding spans are offsets into the *raw* response, so each finding carries the text of its span (`quote`),
redacted like any other free text (a PII finding's quote becomes `<ENTITY_TYPE>` outright: the quote *is*
the value, and a bare name is too short for NER to recognise).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from guardrail_invariants.pii.scrub import scrub, scrub_emails
from guardrail_invariants.types import Case, Finding, Verdict

log = logging.getLogger(__name__)

Redactor = Callable[[str], str]

REASONS = ("disagreement", "failure", "random")
PRIORITY = {reason: i for i, reason in enumerate(REASONS)}
REDACTION_UNAVAILABLE = "[redaction unavailable: text withheld]"
MAX_PASSAGE_CHARS = 8000  # reviewers read passages, they do not need 32k of each; also bounds redaction cost
MAX_ID_CHARS = 256  # ids, titles, urls, metadata: enough to read, bounded so a hostile value cannot bloat a row

# Evidence/detail values under these keys are structure, not text (kept when they look like identifiers).
STRUCTURED_KEYS = frozenset({"entity_type", "match", "format", "via", "mode", "kind", "judge", "family",
                             "outcome", "label", "aggregation", "model", "invariant", "source"})
# ... and under these keys they are passage ids or citation refs (redacted like the response that cites them).
ID_KEYS = frozenset({"passage_id", "passages", "refs", "ref", "passage_ids"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,63}$")
HASH_DOMAIN = b"guardrail-review-hash/v1"


@dataclass(slots=True)
class Pending:
    """What `offer()` samples: references only until `raw_record` snapshots it."""

    id: str
    created_at: float
    case: Case
    verdicts: Sequence[Verdict]
    decision: str
    reasons: tuple[str, ...]
    disagreements: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """How `redact_record` treats identifiers and raw text. Picklable: it travels to the redaction worker."""

    hash_key: bytes | None = None  # HMAC key for hashed identifiers (None: unkeyed SHA-256)
    seal_key: bytes | None = None  # Fernet key: seal the raw case into the record (review.encrypt_raw_text)


def new_id() -> str:
    return str(uuid.uuid4())


def default_redactor(entities: Sequence[str] | None = None) -> Redactor:
    """The PII redactor from `guardrail_invariants.pii`, imported lazily (Presidio is heavy). If it cannot be loaded the
    store withholds text rather than storing it raw: raw text is opt-in only."""
    try:
        from guardrail_invariants.pii import redact
    except Exception as exc:  # noqa: BLE001 - any import failure means "no redactor"
        log.error("review: PII redactor unavailable (%s); stored text is withheld", type(exc).__name__)
        return _withhold
    if entities is None:
        return redact
    import functools

    return functools.partial(redact, entities=tuple(entities))


def _withhold(text: str) -> str:
    return REDACTION_UNAVAILABLE if text else text


def hash_value(value: str, key: bytes | None = None) -> str:
    """`#` + 16 hex digits of HMAC-SHA256(key, value) (SHA-256 when no key): stable, so equal values correlate."""
    if not value:
        return ""
    data = value.encode("utf-8", "surrogatepass")
    digest = (hmac.new(key, HASH_DOMAIN + b"\0" + data, hashlib.sha256) if key
              else hashlib.sha256(HASH_DOMAIN + b"\0" + data)).hexdigest()
    return "#" + digest[:16]


# -- the raw snapshot (hot path) ---------------------------------------------------------------------------


def _clip(text: str, limit: int = MAX_PASSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f" [… {len(text) - limit} more characters not stored]"


def _plain(value: Any) -> Any:
    """JSON-safe copy of evidence/details (tuples become lists, odd objects their str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _raw_finding(f: Finding, response: str) -> dict[str, Any]:
    quote = response[f.start:f.end] if 0 <= f.start < f.end <= len(response) else ""
    return {
        "kind": f.kind, "message": f.message, "start": f.start, "end": f.end, "quote": quote[:MAX_PASSAGE_CHARS],
        "passage_id": f.passage_id, "score": f.score, "evidence": _plain(dict(f.evidence)),
    }


def _raw_verdict(v: Verdict, response: str) -> dict[str, Any]:
    return {
        "invariant": v.invariant, "outcome": v.outcome.value, "score": float(v.score),
        "threshold": float(v.threshold), "judge": v.judge, "latency_s": float(v.latency_s), "error": v.error,
        "findings": [_raw_finding(f, response) for f in v.findings], "details": _plain(dict(v.details)),
    }


def _raw_case(case: Case) -> dict[str, Any]:
    return {
        "question": case.question,
        "response": case.response,
        "context": [
            {"id": p.id[:MAX_ID_CHARS], "title": p.title[:MAX_ID_CHARS], "url": p.url[:MAX_ID_CHARS * 4],
             "text": _clip(p.text), "sensitivity": p.sensitivity}
            for p in case.context
        ],
        "samples": list(case.samples),
        "metadata": {str(k)[:MAX_ID_CHARS]: str(v)[:MAX_ID_CHARS * 4] for k, v in case.metadata.items()},
    }


def raw_record(p: Pending) -> dict[str, Any]:
    """The unredacted record of a pending sample (`redacted: False`). Cheap: dict building, no analysis."""
    reasons = tuple(sorted(set(p.reasons), key=PRIORITY.__getitem__))
    return {
        "id": p.id,
        "created_at": datetime.fromtimestamp(p.created_at, UTC).isoformat(),
        "request_id": p.case.request_id[:MAX_ID_CHARS],
        "app": p.case.app[:MAX_ID_CHARS],
        "decision": p.decision[:16],
        "reason": reasons[0],
        "reasons": ",".join(reasons),
        "priority": PRIORITY[reasons[0]],
        "in_random_slice": "random" in reasons,
        "redacted": False,
        "case": _raw_case(p.case),
        "verdicts": [_raw_verdict(v, p.case.response) for v in p.verdicts],
        "disagreements": list(p.disagreements),
    }


# -- redaction (off the hot path) --------------------------------------------------------------------------


class _Redaction:
    """One record's redaction: the free-text redactor plus the identifier rules above."""

    def __init__(self, redact: Redactor, options: RecordOptions, *, public_places: bool = False) -> None:
        self.redact = redact
        self.options = options
        # keep public places readable (a passage of the case is public) where the redactor can tell them apart
        keep = public_places and accepts_keyword(redact, "keep_public_places")
        self.keep = {"keep_public_places": True} if keep else {}

    def text(self, text: str) -> str:
        if not text:
            return text
        try:
            # e-mail addresses first (Presidio splits one into PERSON and URL pieces); the rest of the scrubber after
            # Presidio, which must see the text as written: "Call Jane Roe at <NUMBER>" hides Jane Roe from spaCy
            out = self.redact(scrub_emails(text), **self.keep)
        except Exception as exc:  # noqa: BLE001 - a redactor bug must never leak raw text
            log.error("review: redaction failed (%s); text withheld", type(exc).__name__)
            return REDACTION_UNAVAILABLE
        return scrub(out)

    def ident(self, value: str) -> str:
        """A passage id or citation ref: redacted like the text that cites it."""
        return self.text(value) if isinstance(value, str) else value

    def hashed(self, value: str) -> str:
        return hash_value(value, self.options.hash_key)

    def url(self, url: str) -> str:
        if not url:
            return url
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.hashed(url)
        if not parts.scheme or not parts.netloc:
            return self.hashed(url)
        host = parts.hostname or ""
        netloc = self.text(host) + (f":{parts.port}" if _port(parts) else "")
        rest = url[url.index(parts.netloc) + len(parts.netloc):]
        return f"{parts.scheme}://{netloc}" + (f"/…{self.hashed(rest)}" if rest.strip("/") else "")

    def structured(self, value: Any, key: str = "") -> Any:
        """Evidence and details: numbers and booleans kept; identifier-like strings under structural keys kept;
        ids redacted like text; every other string is treated as free text."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            if key in ID_KEYS:
                return self.ident(value)
            if key in STRUCTURED_KEYS and _IDENTIFIER.match(value):
                return value
            return self.text(value)
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for k, v in value.items():
                k = str(k)
                safe_key = k if _IDENTIFIER.match(k) else self.text(k)
                out[_unique(out, safe_key)] = self.structured(v, k)
            return out
        if isinstance(value, (list, tuple)):
            return [self.structured(v, key) for v in value]
        return self.text(str(value))

    def finding(self, f: Mapping[str, Any]) -> dict[str, Any]:
        evidence = f.get("evidence") or {}
        entity = evidence.get("entity_type") if isinstance(evidence, Mapping) else None
        if f.get("kind") == "pii_leak" and isinstance(entity, str) and _IDENTIFIER.match(entity):
            quote = f"<{entity}>" if f.get("quote") else ""
        else:
            quote = self.text(f.get("quote", ""))
        return {
            **{k: f.get(k) for k in ("kind", "start", "end", "score")},
            "message": self.text(f.get("message", "")),
            "quote": quote,
            "passage_id": self.ident(f.get("passage_id", "")),
            "evidence": self.structured(evidence),
        }

    def verdict(self, v: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **{k: v.get(k) for k in ("invariant", "outcome", "score", "threshold", "judge", "latency_s")},
            "error": self.text(v.get("error", "")),
            "findings": [self.finding(f) for f in v.get("findings", [])],
            "details": self.structured(v.get("details") or {}),
        }

    def case(self, c: Mapping[str, Any]) -> dict[str, Any]:
        metadata: dict[str, str] = {}
        for k, v in (c.get("metadata") or {}).items():
            metadata[_unique(metadata, self.text(str(k)))] = self.hashed(str(v))
        return {
            "question": self.text(c.get("question", "")),
            "response": self.text(c.get("response", "")),
            "context": [
                {"id": self.ident(p.get("id", "")), "title": self.text(p.get("title", "")),
                 "url": self.url(p.get("url", "")), "text": self.text(p.get("text", "")),
                 "sensitivity": p.get("sensitivity", "")}
                for p in c.get("context", [])
            ],
            "samples": [self.text(s) for s in c.get("samples", [])],
            "metadata": metadata,
        }


def accepts_keyword(redact: Redactor, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(redact).parameters
    except (TypeError, ValueError):
        return False


def _has_public_passage(case: Mapping[str, Any]) -> bool:
    return any(p.get("sensitivity") == "public" for p in case.get("context", []))


def _port(parts: Any) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _unique(existing: Mapping[str, Any], key: str) -> str:
    if key not in existing:
        return key
    n = 2
    while f"{key} ({n})" in existing:
        n += 1
    return f"{key} ({n})"


def redact_record(raw: Mapping[str, Any], redact: Redactor | None, options: RecordOptions | None = None
                  ) -> dict[str, Any]:
    """The storable record of a raw one. `redact=None` keeps text raw (`review.store_raw_text`); identifiers are
    hashed either way only when redacting."""
    options = options or RecordOptions()
    if raw.get("redacted"):
        return dict(raw)
    out = dict(raw)
    if redact is not None:
        r = _Redaction(redact, options, public_places=_has_public_passage(raw["case"]))
        out.update(
            request_id=r.hashed(raw.get("request_id", "")),
            app=r.hashed(raw.get("app", "")),
            case=r.case(raw["case"]),
            verdicts=[r.verdict(v) for v in raw.get("verdicts", [])],
            redacted=True,
        )
    if options.seal_key is not None:
        out["sealed"] = seal({"case": raw["case"], "verdicts": raw.get("verdicts", []),
                              "request_id": raw.get("request_id", ""), "app": raw.get("app", "")},
                             options.seal_key)
    return out


def seal(obj: Any, key: bytes) -> str:
    """Fernet token (AES-128-CBC + HMAC-SHA256, timestamped) of `obj` as JSON."""
    from cryptography.fernet import Fernet

    return Fernet(key).encrypt(json.dumps(obj, separators=(",", ":")).encode()).decode("ascii")


def unseal(token: str, key: bytes) -> Any:
    """The object `seal` sealed; raises `cryptography.fernet.InvalidToken` for a wrong key or tampering."""
    from cryptography.fernet import Fernet

    return json.loads(Fernet(key).decrypt(token.encode("ascii")))


def to_record(p: Pending, redact: Redactor | None, options: RecordOptions | None = None) -> dict[str, Any]:
    """The storable record of a pending sample in one step; `redact=None` stores text raw."""
    return redact_record(raw_record(p), redact, options)


def case_record(case: Case, redact: Redactor | None) -> dict[str, Any]:
    """The stored form of one case (clipped; redacted when `redact` is given)."""
    raw = _raw_case(case)
    return raw if redact is None else _Redaction(redact, RecordOptions(),
                                                 public_places=_has_public_passage(raw)).case(raw)
