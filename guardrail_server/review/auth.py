"""Sign-in for the review page: reviewers stored in the review store with scrypt password hashes, server-side
sessions behind an HttpOnly SameSite=Strict cookie, and a CSRF token on every form.

Why these choices:

* Labels feed `guardrail calibrate`, which moves production thresholds, so who labeled what must be known and
  forged labels must be impossible. The page used to take a free-text "reviewer" name and any POST.
* Reviewers live in the store (`guardrail review users add NAME`), not in the sidecar's config, so adding one
  needs no redeploy and every process that serves the page (the one in `serve`, `guardrail review web`) sees
  the same list. Passwords are hashed with scrypt (hashlib, no extra dependency; n=2^14, r=8, p=1, 16-byte
  salt, the parameters stored with the hash so they can be raised later).
* Sessions are random 256-bit tokens held in memory by the page's process (a restart signs everyone out,
  which is acceptable for an internal tool and keeps tokens out of the database). Idle sessions expire.
* CSRF: SameSite=Strict already keeps the browser from sending the cookie on cross-site requests, but other
  ports on the same host are the *same site*; so every POST also carries the session's CSRF token (compared in
  constant time), and a POST whose Origin header names another origin is refused outright. The sign-in form
  itself gets a token bound to a short-lived pre-session cookie (login CSRF).
* The terminal UI (`guardrail review`) has no sign-in: whoever runs it already holds the database URL and its
  credentials; the reviewer name recorded there is the login name or `--reviewer`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
SESSION_IDLE_S = 8 * 3600.0
MAX_SESSIONS = 10_000


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt$hash` (salt and hash url-safe base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=SCRYPT_LEN, maxmem=64 * 1024 * 1024)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; a missing user costs as much as a wrong password (no user enumeration by timing)."""
    if not stored:
        hash_password(password)  # same work either way
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(slots=True)
class Session:
    user: str
    csrf: str
    seen: float


class Sessions:
    """In-memory session table (thread-safe)."""

    def __init__(self, idle_s: float = SESSION_IDLE_S) -> None:
        self.idle_s = idle_s
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), time.monotonic())
        with self._lock:
            self._expire()
            if len(self._by_token) >= MAX_SESSIONS:  # bounded: drop the oldest
                oldest = min(self._by_token, key=lambda k: self._by_token[k].seen)
                del self._by_token[oldest]
            self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_token.get(token)
            if session is None or now - session.seen > self.idle_s:
                self._by_token.pop(token, None)
                return None
            session.seen = now
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for k in [k for k, s in self._by_token.items() if now - s.seen > self.idle_s]:
            del self._by_token[k]


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
