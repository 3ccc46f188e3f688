"""A small client for OpenAI-compatible chat completion endpoints (vLLM, Ollama, llama.cpp, hosted APIs).

Only `POST {endpoint}/chat/completions` is used, so anything that speaks that dialect works. Timeouts bound every
attempt; transport errors, timeouts, 429 and 5xx are retried with exponential backoff; anything else is a
`ChatError` with a message that never contains the prompt (prompts may hold user text).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import httpx

from guardrail_invariants.judges.base import JudgeError

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ChatError(JudgeError):
    pass


def completions_url(endpoint: str) -> str:
    url = endpoint.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class ChatClient:
    def __init__(self, endpoint: str, model: str, *, api_key: str | None = None, api_key_env: str | None = None,
                 timeout_s: float = 20.0, retries: int = 2, backoff_s: float = 0.25) -> None:
        self.url = completions_url(endpoint)
        self.model = model
        key = api_key or (os.environ.get(api_key_env, "") if api_key_env else "")
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), headers=self.headers)
            self._loop = loop
        return self._client

    async def complete(self, messages: Sequence[dict[str, str]], *, temperature: float = 0.0,
                       max_tokens: int | None = None, response_format: dict[str, Any] | None = None,
                       seed: int | None = None) -> str:
        """One chat completion -> the assistant message's text. Raises ChatError after the retries are spent."""
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": temperature}
        if max_tokens:
            body["max_tokens"] = max_tokens
        if response_format:
            body["response_format"] = response_format
        if seed is not None:
            body["seed"] = seed
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = await self._http().post(self.url, json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout_s:.1f}s"
                continue
            except httpx.TransportError as exc:
                last = f"transport error: {type(exc).__name__}"
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                raise ChatError(f"chat endpoint {self.url} answered HTTP {resp.status_code}")
            return _content(resp)
        raise ChatError(f"chat endpoint {self.url} failed after {self.retries + 1} attempts: {last}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _content(resp: httpx.Response) -> str:
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ChatError("chat endpoint answered without choices[0].message.content") from None
    if not isinstance(content, str):
        raise ChatError("chat endpoint answered with non-text content")
    return content
