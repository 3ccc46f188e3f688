"""A tiny OpenAI-compatible chat endpoint on 127.0.0.1 (stdlib http.server in a thread).

The only fake in the suite: no LLM runs here, so the LLM judge, the sampler and the streaming adapter are tested
against this stand-in, which records every request and answers through a test-supplied function. A request with
`"stream": true` is answered with server-sent events: the reply's text one token (`" word"`) per event,
`stream_delay_s` apart, then `data: [DONE]`; a client that hangs up stops the stream (`streams_cut` counts those).
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
    def __init__(self, reply: Reply, delay_s: float = 0.0, stream_delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.stream_delay_s = stream_delay_s
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.events_sent = 0  # SSE events written (streamed requests)
        self.streams_cut = 0  # streamed replies the client hung up on before [DONE]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append(body)
                fake.paths.append(self.path)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if body.get("stream"):
                    self._stream(body)
                    return
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

            def _stream(self, body: dict[str, Any]) -> None:
                text = fake.reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
                events += [{"choices": [{"index": 0, "delta": {"content": tok}}]}
                           for tok in re.findall(r"\s*\S+\s*?", text)]
                events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                try:
                    for event in events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                        fake.events_sent += 1
                        if fake.stream_delay_s:
                            time.sleep(fake.stream_delay_s)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    fake.streams_cut += 1

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
