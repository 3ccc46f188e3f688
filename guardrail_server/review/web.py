"""The review web page: server-rendered HTML (Jinja2, autoescaped), a plain WSGI app on the stdlib server,
no build step. A queue ordered by priority, one page per case, keyboard shortcuts, progress in the header.

It has no login: bind it to localhost or put it behind the team's authenticating proxy.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.cookies import SimpleCookie
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, quote, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from jinja2 import Environment, PackageLoader, select_autoescape

from guardrail_server.review.store import ReviewStore

log = logging.getLogger(__name__)

_SAMPLE = re.compile(r"^/sample/([0-9a-fA-F-]{36})$")
MAX_BODY = 1 << 20
LEASE_S = 600.0  # a case opened by one reviewer is not handed to another by /next for this long

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class ReviewApp:
    """WSGI callable over one store."""

    def __init__(self, store: ReviewStore) -> None:
        self.store = store
        self._leases: dict[str, tuple[str, float]] = {}
        self._lease_lock = threading.Lock()
        self.env = Environment(
            loader=PackageLoader("guardrail_server.review", "templates"), autoescape=select_autoescape(["html"])
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Exception:  # noqa: BLE001 - a page error must not kill the server thread
            log.exception("review web: request failed")
            return _text(start_response, HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/")
        reviewer = _reviewer(environ)
        if path == "/healthz":
            return _text(start_response, HTTPStatus.OK, "ok")
        if path == "/" and method == "GET":
            message = parse_qs(environ.get("QUERY_STRING", "")).get("message", [""])[0][:200]
            return self._page(start_response, "queue.html", reviewer, queue=self.store.queue(limit=200), message=message)
        if path == "/next" and method == "GET":
            sample_id = self._next_for(reviewer)
            if sample_id is None:
                return _redirect(start_response, "/?message=The+queue+is+empty.")
            return _redirect(start_response, f"/sample/{sample_id}")
        match = _SAMPLE.match(path)
        if match:
            sample = self.store.get_sample(match.group(1))
            if sample is None:
                return _text(start_response, HTTPStatus.NOT_FOUND, "no such sample")
            if method == "GET":
                self._lease(sample["id"], reviewer)
                mine = next((a for a in sample["annotations"] if a["reviewer"] == reviewer), None)
                return self._page(
                    start_response, "sample.html", reviewer, sample=sample,
                    current=(mine or {}).get("labels", {}), critique=(mine or {}).get("critique", ""),
                )
            if method == "POST":
                return self._post_sample(environ, start_response, sample)
        return _text(start_response, HTTPStatus.NOT_FOUND, "not found")

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

    def _post_sample(self, environ: dict[str, Any], start_response: StartResponse, sample: dict) -> Iterable[bytes]:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
        form = {k: v[0] for k, v in parse_qs(environ["wsgi.input"].read(length).decode("utf-8")).items()}
        reviewer = (form.get("reviewer") or _reviewer(environ) or "anonymous").strip()[:128]
        if form.get("action") == "skip":
            self.store.skip(sample["id"])
            return _redirect(start_response, "/next")
        known = {v["invariant"] for v in sample["verdicts"]}
        labels = {
            k[len("label_"):]: v for k, v in form.items() if k.startswith("label_") and k[len("label_"):] in known
        }
        if any(v not in ("pass", "fail") for v in labels.values()):
            return _text(start_response, HTTPStatus.BAD_REQUEST, "labels must be pass or fail")
        critique = form.get("critique", "").strip()
        if not labels and not critique:
            return _redirect(start_response, f"/sample/{sample['id']}")
        self.store.save_annotation(sample["id"], reviewer, labels, critique)
        return _redirect(start_response, "/next", cookie=("reviewer", reviewer))

    def _page(self, start_response: StartResponse, template: str, reviewer: str, **ctx: Any) -> Iterable[bytes]:
        body = self.env.get_template(template).render(progress=self.store.progress(), reviewer=reviewer, **ctx)
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
             ("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")],
        )
        return [body.encode()]


def _reviewer(environ: dict[str, Any]) -> str:
    cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    return unquote(cookie["reviewer"].value)[:128] if "reviewer" in cookie else ""


def _text(start_response: StartResponse, status: HTTPStatus, text: str) -> Iterable[bytes]:
    start_response(f"{status.value} {status.phrase}", [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode()]


def _redirect(start_response: StartResponse, location: str, cookie: tuple[str, str] | None = None) -> Iterable[bytes]:
    headers = [("Location", location)]
    if cookie:
        headers.append(("Set-Cookie", f"{cookie[0]}={quote(cookie[1])}; Path=/; SameSite=Strict"))
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

    def __init__(self, store: ReviewStore, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = make_server(host, port, ReviewApp(store), server_class=_Server, handler_class=_QuietHandler)
        self._thread: threading.Thread | None = None

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
