"""The review web page: server-rendered HTML (Jinja2, autoescaped), a plain WSGI app on the stdlib server,
no build step. A queue ordered by priority, one page per case, keyboard shortcuts, progress in the header.

Reviewers sign in (`auth.py`: accounts from `guardrail review users add`, scrypt hashes, HttpOnly
SameSite=Strict session cookie, CSRF token on every POST, cross-origin POSTs refused); the signed-in name is
recorded on every label. Each case page shows the question, every passage, the response, the sampled responses
`self_consistency` compared, and the labels already given (a reopened case shows what was saved). With the review
key and `review.encrypt_raw_text` the text is the raw text, decrypted for signed-in reviewers only; otherwise
the redacted copy. Blind review (`review.blind_review`) hides the judges' verdicts, the sampling reasons and
other reviewers' labels until this reviewer has labeled the case; saving then reveals them on the same page.

It binds 127.0.0.1 unless told otherwise (`server.host` in `serve`, `--host` for `guardrail review web`).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.cookies import SimpleCookie
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from jinja2 import Environment, PackageLoader, select_autoescape

from guardrail_server.review import auth
from guardrail_server.review.store import ReviewStore
from guardrail_server.review.view import labeled_by, reveal, with_raw_text

log = logging.getLogger(__name__)

_SAMPLE = re.compile(r"^/sample/([0-9a-fA-F-]{36})$")
MAX_BODY = 1 << 20
LEASE_S = 600.0  # a case opened by one reviewer is not handed to another by /next for this long
SESSION_COOKIE = "guardrail_session"
LOGIN_COOKIE = "guardrail_login"
FAILED_LOGIN_DELAY_S = 0.5

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy",
     "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
     "form-action 'self'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
]


class ReviewApp:
    """WSGI callable over one store."""

    def __init__(self, store: ReviewStore, *, key: bytes | None = None, blind: bool = False) -> None:
        self.store = store
        self.key = key
        self.blind = blind
        self.sessions = auth.Sessions()
        self._leases: dict[str, tuple[str, float]] = {}
        self._lease_lock = threading.Lock()
        self.env = Environment(
            loader=PackageLoader("guardrail_server.review", "templates"), autoescape=select_autoescape(["html"])
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Exception:  # noqa: BLE001 - a page error (store down, ...) must not kill the server thread
            log.exception("review web: request failed")
            return _text(start_response, HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    # -- routing -------------------------------------------------------------------------------------------

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            return _text(start_response, HTTPStatus.OK, "ok")
        if path == "/favicon.ico":
            return _text(start_response, HTTPStatus.NOT_FOUND, "not found")
        if method == "POST" and not _same_origin(environ):
            return _text(start_response, HTTPStatus.FORBIDDEN, "cross-origin request refused")
        if path == "/login":
            if method == "POST":
                return self._post_login(environ, start_response)
            return self._login_page(environ, start_response)
        token = _cookies(environ).get(SESSION_COOKIE)
        session = self.sessions.get(token)
        if session is not None and self.store.user_hash(session.user) is None:  # disabled since signing in
            self.sessions.drop(token)
            session = None
        if session is None:
            if method == "GET":
                return _redirect(start_response, "/login?next=" + quote(path, safe="/"))
            return _text(start_response, HTTPStatus.FORBIDDEN, "sign in first")
        form: dict[str, str] = {}
        if method == "POST":
            form = _form(environ)
            if not auth.same_token(form.get("csrf"), session.csrf):
                return _text(start_response, HTTPStatus.FORBIDDEN, "missing or wrong CSRF token")
        if path == "/logout" and method == "POST":
            self.sessions.drop(token)
            return _redirect(start_response, "/login", cookies=[_clear(SESSION_COOKIE)])
        if path == "/" and method == "GET":
            message = parse_qs(environ.get("QUERY_STRING", "")).get("message", [""])[0][:200]
            queue = [with_raw_text(s, self.key) for s in self.store.queue(limit=200)]
            return self._page(start_response, "queue.html", session, queue=queue, message=message,
                              show_reasons=not self.blind)
        if path == "/next" and method == "GET":
            sample_id = self._next_for(session.user)
            if sample_id is None:
                return _redirect(start_response, "/?message=The+queue+is+empty.")
            return _redirect(start_response, f"/sample/{sample_id}")
        match = _SAMPLE.match(path)
        if match:
            stored = self.store.get_sample(match.group(1))
            if stored is None:
                return _text(start_response, HTTPStatus.NOT_FOUND, "no such sample")
            if method == "GET":
                return self._sample_page(environ, start_response, session, stored)
            if method == "POST":
                return self._post_sample(start_response, session, stored, form)
        return _text(start_response, HTTPStatus.NOT_FOUND, "not found")

    # -- sign-in -------------------------------------------------------------------------------------------

    def _login_page(self, environ: dict[str, Any], start_response: StartResponse, *, error: str = "",
                    status: HTTPStatus = HTTPStatus.OK) -> Iterable[bytes]:
        # one pre-session token per browser: a second tab (or a stray request) must not invalidate the first form
        nonce = _cookies(environ).get(LOGIN_COOKIE) or ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{40,64}", nonce):
            nonce = secrets.token_urlsafe(32)
        target = _local(parse_qs(environ.get("QUERY_STRING", "")).get("next", ["/"])[0])
        body = self.env.get_template("login.html").render(csrf=nonce, next=target, error=error,
                                                          no_users=not self.store.users())
        start_response(f"{status.value} {status.phrase}",
                       [("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS,
                        ("Set-Cookie", _cookie(LOGIN_COOKIE, nonce, environ, max_age=900))])
        return [body.encode()]

    def _post_login(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        form = _form(environ)
        if not auth.same_token(form.get("csrf"), _cookies(environ).get(LOGIN_COOKIE)):
            return _text(start_response, HTTPStatus.FORBIDDEN, "missing or wrong CSRF token")
        name = form.get("username", "").strip()[:128]
        if not auth.verify_password(form.get("password", ""), self.store.user_hash(name) if name else None):
            time.sleep(FAILED_LOGIN_DELAY_S)
            log.warning("review web: failed sign-in")
            environ = {**environ, "QUERY_STRING": "next=" + quote(_local(form.get("next", "/")), safe="/")}
            return self._login_page(environ, start_response, error="Wrong name or password.",
                                    status=HTTPStatus.UNAUTHORIZED)
        token, _ = self.sessions.create(name)
        log.info("review web: %s signed in", name)
        return _redirect(start_response, _local(form.get("next", "/")),
                         cookies=[_cookie(SESSION_COOKIE, token, environ), _clear(LOGIN_COOKIE)])

    # -- cases ---------------------------------------------------------------------------------------------

    def _sample_page(self, environ: dict[str, Any], start_response: StartResponse, session: auth.Session,
                     stored: Mapping[str, Any]) -> Iterable[bytes]:
        sample = with_raw_text(stored, self.key)
        self._lease(sample["id"], session.user)
        mine = labeled_by(sample, session.user)
        show = reveal(sample, session.user, self.blind)
        others = [a for a in sample["annotations"] if a["reviewer"] != session.user] if show else []
        saved = "saved" in parse_qs(environ.get("QUERY_STRING", ""))
        return self._page(
            start_response, "sample.html", session, sample=sample, show_verdicts=show, blind=self.blind,
            current=(mine or {}).get("labels", {}), critique=(mine or {}).get("critique", ""), mine=mine,
            others=others, saved=saved,
        )

    def _next_for(self, reviewer: str) -> str | None:
        """First case in priority order that no other reviewer has open; else the first one."""
        queue = self.store.queue(limit=50)
        now = time.monotonic()
        with self._lease_lock:
            for s in queue:
                holder = self._leases.get(s["id"])
                if holder is None or holder[1] < now or holder[0] == reviewer:
                    return s["id"]
        return queue[0]["id"] if queue else None

    def _lease(self, sample_id: str, reviewer: str) -> None:
        now = time.monotonic()
        with self._lease_lock:
            self._leases = {k: v for k, v in self._leases.items() if v[1] >= now}
            holder = self._leases.get(sample_id)
            if holder is None or holder[1] < now or holder[0] == reviewer:
                self._leases[sample_id] = (reviewer, now + LEASE_S)

    def _post_sample(self, start_response: StartResponse, session: auth.Session, sample: Mapping[str, Any],
                     form: Mapping[str, str]) -> Iterable[bytes]:
        if form.get("action") == "skip":
            self.store.skip(sample["id"])
            return _redirect(start_response, "/next")
        known = {v["invariant"] for v in sample["verdicts"]}
        labels = {
            k[len("label_"):]: v for k, v in form.items()
            if k.startswith("label_") and k[len("label_"):] in known and v != "none"
        }
        if any(v not in ("pass", "fail") for v in labels.values()):
            return _text(start_response, HTTPStatus.BAD_REQUEST, "labels must be pass or fail")
        critique = form.get("critique", "").strip()
        if not labels and not critique:
            return _redirect(start_response, f"/sample/{sample['id']}")
        self.store.save_annotation(sample["id"], session.user, labels, critique)
        if self.blind:  # reveal the judges on the case just labeled, then move on from there
            return _redirect(start_response, f"/sample/{sample['id']}?saved=1")
        return _redirect(start_response, "/next")

    def _page(self, start_response: StartResponse, template: str, session: auth.Session, **ctx: Any
              ) -> Iterable[bytes]:
        body = self.env.get_template(template).render(
            progress=self.store.progress(), reviewer=session.user, csrf=session.csrf, **ctx
        )
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS])
        return [body.encode()]


# -- helpers -----------------------------------------------------------------------------------------------


def _cookies(environ: Mapping[str, Any]) -> dict[str, str]:
    jar = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
        return {}
    return {k: m.value for k, m in jar.items()}


def _form(environ: Mapping[str, Any]) -> dict[str, str]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _same_origin(environ: Mapping[str, Any]) -> bool:
    """A POST whose Origin (or, lacking it, Referer) names another origin than the Host it was sent to is
    refused. Browsers send Origin on every cross-origin POST; a request without either header (curl) falls back
    to the CSRF token alone."""
    host = environ.get("HTTP_HOST", "")
    origin = environ.get("HTTP_ORIGIN") or environ.get("HTTP_REFERER") or ""
    if not origin:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == host


def _local(target: str) -> str:
    """Only same-site paths as redirect targets (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _secure(environ: Mapping[str, Any]) -> bool:
    return environ.get("wsgi.url_scheme") == "https" or environ.get("HTTP_X_FORWARDED_PROTO") == "https"


def _cookie(name: str, value: str, environ: Mapping[str, Any], *, max_age: int | None = None) -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if _secure(environ):
        parts.append("Secure")
    return "; ".join(parts)


def _clear(name: str) -> str:
    return f"{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"


def _text(start_response: StartResponse, status: HTTPStatus, text: str) -> Iterable[bytes]:
    start_response(f"{status.value} {status.phrase}", [("Content-Type", "text/plain; charset=utf-8"),
                                                       *SECURITY_HEADERS])
    return [text.encode()]


def _redirect(start_response: StartResponse, location: str, cookies: list[str] | None = None) -> Iterable[bytes]:
    headers = [("Location", location), *SECURITY_HEADERS]
    headers += [("Set-Cookie", c) for c in cookies or []]
    start_response("303 See Other", headers)
    return [b""]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("review web: " + format, *args)


class ReviewWebServer:
    """The page on its own thread (for `serve`) or in the foreground (for `guardrail review web`)."""

    def __init__(self, store: ReviewStore, host: str = "127.0.0.1", port: int = 0, *, key: bytes | None = None,
                 blind: bool = False) -> None:
        self.app = ReviewApp(store, key=key, blind=blind)
        self._httpd = make_server(host, port, self.app, server_class=_Server, handler_class=_QuietHandler)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, store: ReviewStore, review: Any, host: str = "127.0.0.1", port: int | None = None
                    ) -> "ReviewWebServer":
        """The page as `review` (a ReviewConfig) says: key (for sealed raw text), blind review, port."""
        from guardrail_server.review.keys import load_key

        key = load_key(getattr(review, "key_file", None))
        return cls(store, host, review.web_port if port is None else port, key=key,
                   blind=bool(getattr(review, "blind_review", False)))

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> int:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="review-web", daemon=True)
        self._thread.start()
        return self.port

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
