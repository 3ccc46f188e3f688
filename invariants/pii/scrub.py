"""Pattern-only redaction of free text: no model, no Presidio, microseconds per line.

Two users: every log line of the server (`guardrail_server.logs`: structlog events and stdlib records from gRPC,
asyncio, Presidio alike — tracebacks included), and the review store, where it runs before and after Presidio as a
catch-all for what a recognizer may miss. It replaces:

| what                                                             | becomes               |
|------------------------------------------------------------------|-----------------------|
| e-mail addresses on any top-level domain (`.internal`, `.corp`)  | `<EMAIL_ADDRESS>`     |
| secrets in URLs: query values of token/key/secret/password/sig/  | `?token=<URL_SECRET>` |
|   session/code/auth parameters, token-like path segments         | `/<URL_SECRET>/`      |
|   (12+ characters with 2+ digits and 2+ letters), Bearer/Basic   |                       |
| UK National Insurance numbers (`QQ 12 34 56 C`)                  | `<UK_NINO>`           |
| Aadhaar numbers (12 digits, Verhoeff check digit)                | `<IN_AADHAAR>`        |
| any other run of 9+ digits (phone, card, account, SSN, ID...)    | `<NUMBER>`            |

Digit runs next to letters or hyphens (uuids, hashes, `v2-123456789`) are left alone, so request ids still correlate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Bounded repetitions throughout: a log field can be 32,000 characters of one hostile word, and an unbounded
# `[...]*@` would rescan it from every position (quadratic).
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&*+/=?^_`{|}~-][A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{0,63}@"
                   r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?){1,8}")
_SECRET_PARAM = (r"[\w.\-]{0,32}?(?:token|key|secret|passw(?:or)?d|pwd|sig|signature|session|sid|code|otp|auth|"
                 r"credential|nonce|ticket)[\w.\-]{0,32}")
URL_QUERY_SECRET = re.compile(rf"(?i)(?<=[?&;])({_SECRET_PARAM}=)([^&#\s\"'<>]+)")
URL_PATH_TOKEN = re.compile(r"(?<=/)[A-Za-z0-9_\-]{12,256}(?=[/?#\s\"'<>),;]|$)")
AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic)(\s{1,8})([A-Za-z0-9._~+/=\-]{8,4096})")
UK_NINO = re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
AADHAAR = re.compile(r"(?<![\w\-])[2-9]\d{3}[ \-]?\d{4}[ \-]?\d{4}(?![\w\-])")
DIGIT_RUN = re.compile(r"(?<![\w\-.])\+?\d(?:[ .\-()/]{0,3}\d){8,}+(?![\w\-])")  # possessive: linear

# Verhoeff check (Aadhaar's last digit)
_D = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
      [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
      [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
_P = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
      [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
      [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]


def verhoeff_ok(digits: str) -> bool:
    check = 0
    for i, d in enumerate(reversed(digits)):
        check = _D[check][_P[i % 8][int(d)]]
    return check == 0


def _token_like(segment: str) -> bool:
    digits = sum(c.isdigit() for c in segment)
    letters = sum(c.isalpha() for c in segment)
    return digits >= 2 and letters >= 2


def url_secret_spans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of secrets inside URLs and auth headers: query values of secret-named parameters, token-like path
    segments, the credential after Bearer/Basic."""
    for m in URL_QUERY_SECRET.finditer(text):
        yield m.start(2), m.end(2)
    for m in URL_PATH_TOKEN.finditer(text):
        if _token_like(m.group()):
            yield m.start(), m.end()
    for m in AUTH_HEADER.finditer(text):
        if _token_like(m.group(3)) or len(m.group(3)) >= 24:  # not "Bearer authentication"
            yield m.start(3), m.end(3)


def spans(text: str) -> list[tuple[str, int, int]]:
    """(label, start, end) of every value `scrub` replaces, non-overlapping, in text order (earlier rules win)."""
    found: list[tuple[str, int, int]] = []
    covered = bytearray(len(text))

    def add(label: str, start: int, end: int) -> None:
        if start < end and not any(covered[start:end]):
            found.append((label, start, end))
            covered[start:end] = b"\x01" * (end - start)

    for m in EMAIL.finditer(text):
        add("EMAIL_ADDRESS", m.start(), m.end())
    for start, end in url_secret_spans(text):
        add("URL_SECRET", start, end)
    for m in UK_NINO.finditer(text):
        add("UK_NINO", m.start(), m.end())
    for m in AADHAAR.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if verhoeff_ok(digits):
            add("IN_AADHAAR", m.start(), m.end())
    for m in DIGIT_RUN.finditer(text):
        add("NUMBER", m.start(), m.end())
    return sorted(found, key=lambda f: f[1])


def scrub_emails(text: str) -> str:
    """Only the e-mail rule of `scrub` (the review store's pass before Presidio)."""
    return EMAIL.sub("<EMAIL_ADDRESS>", text) if "@" in text else text


def scrub(text: str) -> str:
    """`text` with every value of `spans` replaced by `<LABEL>`. Fast path: text without a digit, an `@` or a URL-ish
    character is returned as is."""
    if not text or (not any(c.isdigit() or c in "@/?" for c in text) and "earer" not in text and "asic" not in text):
        return text
    found = spans(text)
    if not found:
        return text
    out, last = [], 0
    for label, start, end in found:
        out.append(text[last:start])
        out.append(f"<{label}>")
        last = end
    out.append(text[last:])
    return "".join(out)
