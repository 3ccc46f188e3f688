"""A tiny OpenAI-compatible chat endpoint on 127.0.0.1 (stdlib http.server in a thread).

The only fake in the suite: no LLM runs here, so the LLM judge and the sampler are tested against this stand-in,
which records every request and answers through a test-supplied function.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# reply(body) -> message content (str), or (status, content-or-None), or a dict sent verbatim as the JSON body
Reply = Callable[[dict[str, Any]], Any]


class FakeOpenAI:
    def __init__(self, reply: Reply, delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append(body)
                fake.paths.append(self.path)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                status, payload = 200, None
                out = fake.reply(body)
                if isinstance(out, tuple):
                    status, out = out
                if isinstance(out, dict):
                    payload = out
                elif out is not None:
                    payload = {"id": "fake", "object": "chat.completion", "model": body.get("model"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": out}}]}
                data = json.dumps(payload or {"error": "fake error"}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def items_in(body: dict[str, Any]) -> int:
    """How many `[i]` items the judge's last user message asks about."""
    return len(re.findall(r"^\[(\d+)\]$", body["messages"][-1]["content"], flags=re.MULTILINE))


def judgement(n: int, entailment: float, neutral: float, contradiction: float) -> str:
    return json.dumps({"results": [{"id": i, "critique": "checked against the premise", "entailment": entailment,
                                    "neutral": neutral, "contradiction": contradiction} for i in range(1, n + 1)]})
