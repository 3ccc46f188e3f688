"""Normalized views of a text (a context passage or the question) in which detected values are looked up.

Looking a value up is a string search over views built once per text — no NER — so the cost of provenance
does not depend on running a model over the context. Views are built lazily: a response without phone
numbers never pays for the digit runs of the context.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import cached_property
from typing import Generic, TypeVar

from guardrail_invariants.pii.normalize import ALNUM_TYPES, DIGIT_TYPES, address_fold, fold, ip_canonical, phone_key

# Digit groups joined by at most three separator characters (`+1 (212) 555-0187`, `4111 1111 1111 1111`).
_DIGIT_RUN = re.compile(r"\d+(?:[ \t.\-/()]{1,3}\d+)*")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_NON_DIGIT = re.compile(r"\D+")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_MIN_ALNUM_ID = 6  # shorter identifiers are searched as words, not inside the letter-digit stream


class TextIndex:
    """One text and its normalized views."""

    __slots__ = ("text", "__dict__")

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def folded(self) -> str:
        return fold(self.text)

    @cached_property
    def address_folded(self) -> str:
        return address_fold(self.text)

    @cached_property
    def digit_runs(self) -> tuple[str, ...]:
        return tuple(_NON_DIGIT.sub("", m.group()) for m in _DIGIT_RUN.finditer(self.text))

    @cached_property
    def alnum(self) -> str:
        return _NON_ALNUM.sub("", self.text).upper()

    @cached_property
    def ips(self) -> frozenset[str]:
        found = {ip_canonical(m.group()) for m in _IPV4.finditer(self.text)}
        found |= {ip_canonical(m.group()) for m in _IPV6.finditer(self.text) if m.group().count(":") >= 2}
        found.discard(None)
        return frozenset(found)  # type: ignore[arg-type]

    def has_word_sequence(self, folded_value: str) -> bool:
        """`folded_value` occurs in the folded text between word boundaries."""
        return _has_words(self.folded, folded_value)

    def has_email(self, value: str) -> bool:
        pattern = r"(?<![\w.+\-])" + re.escape(value) + r"(?![\w\-@]|\.\w)"
        return re.search(pattern, self.folded) is not None

    def has_phone(self, value: str) -> bool:
        key = phone_key(value)
        if len(key) < 6:
            return False
        for run in self.digit_runs:
            bare = run.lstrip("0")
            if bare.endswith(key) and len(bare) - len(key) <= 4:
                return True
        return False

    def contains(self, entity_type: str, value: str) -> bool:
        """Whether the normalized `value` of `entity_type` occurs in this text, written in any form."""
        if entity_type == "EMAIL_ADDRESS":
            return self.has_email(value)
        if entity_type == "PHONE_NUMBER":
            return self.has_phone(value)
        if entity_type == "CREDIT_CARD":
            return any(value in run for run in self.digit_runs)
        if entity_type in DIGIT_TYPES:
            return value in self.digit_runs
        if entity_type == "IP_ADDRESS":
            return value in self.ips
        if entity_type == "STREET_ADDRESS":
            return _has_words(self.address_folded, value)
        if entity_type in ALNUM_TYPES and len(value) >= _MIN_ALNUM_ID:
            return value in self.alnum
        return self.has_word_sequence(fold(value))


def _has_words(haystack: str, needle: str) -> bool:
    pos = haystack.find(needle)
    while pos != -1:
        before = haystack[pos - 1] if pos else " "
        end = pos + len(needle)
        after = haystack[end] if end < len(haystack) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        pos = haystack.find(needle, pos + 1)
    return False


K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A small thread-safe LRU: checks run in worker threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_build(self, key: K, build: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
        value = build()
        if self.size > 0:
            with self._lock:
                self._data[key] = value
                self._data.move_to_end(key)
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def content_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
