"""The review key: one Fernet key (32 random bytes, url-safe base64) per deployment, from the environment
variable `GUARDRAIL_REVIEW_KEY` or the file named by `review.key_file` (a mounted secret; the variable wins).

It encrypts the intake journal (samples before redaction), seals raw text into stored samples when
`review.encrypt_raw_text` is on (for signed-in reviewers), and keys the hash of identifiers (request_id, app,
metadata values, url paths) so a dictionary of likely values cannot reverse them. Losing the key makes sealed
text and encrypted intake lines unreadable (the redacted copy of every sample stays readable); rotating it
does the same for what was written before — keep old keys if that text matters.

`guardrail review key generate --out FILE` writes a new key with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

ENV_KEY = "GUARDRAIL_REVIEW_KEY"


class ReviewKeyError(ValueError):
    """The configured review key is missing, unreadable or not a Fernet key."""


def load_key(key_file: str | None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The configured key, validated; None when none is configured. Raises ReviewKeyError naming the source."""
    env = os.environ if environ is None else environ
    source = ENV_KEY
    raw: bytes | None = env[ENV_KEY].encode() if env.get(ENV_KEY) else None
    if raw is None and key_file:
        source = f"review.key_file ({key_file})"
        path = Path(key_file).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ReviewKeyError(f"{source}: cannot read the review key ({exc.strerror or type(exc).__name__})") from None
        try:
            if path.stat().st_mode & 0o077:
                log.warning("review key file %s is readable by group or others; chmod 600 it", path)
        except OSError:
            pass
    if raw is None:
        return None
    key = raw.strip()
    try:
        if len(base64.urlsafe_b64decode(key)) != 32:
            raise ValueError
    except ValueError:
        raise ReviewKeyError(f"{source}: not a review key (32 bytes, url-safe base64; "
                        "make one with `guardrail review key generate`)") from None
    return key


def hash_key(key: bytes) -> bytes:
    """A separate key for hashing identifiers, derived from the review key (never the encryption key itself)."""
    return hmac.new(base64.urlsafe_b64decode(key), b"guardrail-review/identifier-hash", hashlib.sha256).digest()


def generate_key(path: str | os.PathLike[str]) -> Path:
    """Writes a new random key to `path` (mode 0600, refusing to overwrite)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.urlsafe_b64encode(os.urandom(32)) + b"\n")
    return p
