"""Test-only invariants for exercising the server's mechanics (timeouts, errors, slow loading).

They are registered by the tests themselves and never ship in the package registry."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any, ClassVar

from guardrail_invariants.base import InvariantOptions, verdict_from_score
from guardrail_invariants.types import Case, Finding, Verdict

TEST_INVARIANTS = {
    "test_sleepy": "tests.helpers_invariants:SleepyInvariant",
    "test_broken": "tests.helpers_invariants:BrokenInvariant",
    "test_keyword": "tests.helpers_invariants:KeywordInvariant",
    "test_gil_hog": "tests.helpers_invariants:GilHogInvariant",
    "test_crash": "tests.helpers_invariants:CrashInvariant",
}


class _Base:
    name: ClassVar[str]
    default_threshold: ClassVar[float] = 0.5

    def __init__(self, threshold: float, options: Any, zoo: Any) -> None:
        self.threshold = threshold
        self.options = options

    async def load(self) -> None:
        await asyncio.sleep(getattr(self.options, "load_seconds", 0.0))


class SleepyInvariant(_Base):
    name = "test_sleepy"

    class Options(InvariantOptions):
        seconds: float = 0.2
        load_seconds: float = 0.0

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        await asyncio.sleep(float(case.metadata.get("sleep", self.options.seconds)))
        return verdict_from_score(self.name, 1.0, self.threshold, started=started)


class BrokenInvariant(_Base):
    name = "test_broken"

    class Options(InvariantOptions):
        pass

    async def check(self, case: Case) -> Verdict:
        raise RuntimeError("model exploded")


class KeywordInvariant(_Base):
    """Fails when the response contains `word`; a finding spans each occurrence."""

    name = "test_keyword"

    class Options(InvariantOptions):
        word: str = "forbidden"

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        findings = []
        start = case.response.find(self.options.word)
        while start >= 0:
            end = start + len(self.options.word)
            findings.append(Finding(kind="keyword", message="keyword present", start=start, end=end))
            start = case.response.find(self.options.word, end)
        return verdict_from_score(self.name, 0.0 if findings else 1.0, self.threshold, findings, started=started)


class GilHogInvariant(_Base):
    """Holds the GIL in one C call for as long as `metadata["hog"]` says (a catastrophically backtracking regex): the
    shape of spaCy's tokenizer on 31 KB of backticks. In a thread it freezes the event loop; only a process can stop
    it."""

    name = "test_gil_hog"

    class Options(InvariantOptions):
        pass

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        n = int(case.metadata.get("hog", "0"))
        if n:
            re.match(r"(a+)+$", "a" * n + "b")  # ~2**n steps, one uninterruptible call
        return verdict_from_score(self.name, 1.0, self.threshold, started=started)


class CrashInvariant(_Base):
    """Kills the process it runs in when `metadata["crash"]` is set (a segfaulting native library)."""

    name = "test_crash"

    class Options(InvariantOptions):
        pass

    async def check(self, case: Case) -> Verdict:
        started = time.perf_counter()
        if case.metadata.get("crash"):
            os._exit(3)
        return verdict_from_score(self.name, 1.0, self.threshold, started=started)
