"""A seeded slice of `bench.fuzz` against a real `guardrail serve`: no message crashes or freezes the server.

The same generators and drivers as the bench (which sends >= 100,000 messages): ~3,000 fast-lane messages (raw
bytes, bad UTF-8, unicode, hostile ids, huge fields, invariant names, deadline extremes, 31 KB punctuation runs),
a few hostile valid messages through every check of the real `reference_integrity` and `pii_boundary` (the two with a
history of quadratic paths; the NLI invariants are left out to keep the start-up short), streams cancelled mid-way
or never read, then SIGTERM with calls still in flight. Process workers, review store on, as in production.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.fuzz import Plan, fuzz, stop_under_load
from bench.harness import ServerProcess, loop_stalls_over, only_invariants

PLAN = Plan(seed=1313, fast=3000, heavy=8, mib4=2, streams=4)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    config = {"invariants": only_invariants({"reference_integrity": {}, "pii_boundary": {}}),
              "workers": {"mode": "process", "count": 2}}
    with ServerProcess(config=config, start_timeout_s=180) as srv:
        yield srv


@pytest.mark.timeout(240)
async def test_a_seeded_fuzz_slice_neither_crashes_nor_freezes_the_server(server: ServerProcess) -> None:
    result = await fuzz(server, PLAN, fast_concurrency=16, max_seconds=150)
    t = result.tally
    assert result.alive, server.log_tail()
    assert t.messages >= 3000
    assert t.unexpected() == {}, t.unexpected()  # UNKNOWN/INTERNAL = an exception escaped; LOST = replies lost
    assert t.status("INVALID_ARGUMENT") > 1000 and t.status("RESOURCE_EXHAUSTED") > 50
    assert t.status("OK") > 100  # valid hostile messages did reach the checks
    assert t.bad_spans == 0, t.bad_examples
    assert not t.client_errors, t.client_errors
    # health answered within 1 s throughout (a prober in its own process, every 0.5 s), and no loop tick ran 1 s late
    assert result.probe.failures == 0 and result.probe.max_s < 1.0, result.probe
    assert loop_stalls_over(result.after, 1.0) - loop_stalls_over(result.before, 1.0) == 0
    # a check may time out on a busy machine (counted, on_error policy); an exception is a bug in a check
    assert not [k for k in result.fail_opens() if k.endswith("/exception")], result.fail_opens()
    from guardrail_server.client import AsyncGuardrailClient

    async with AsyncGuardrailClient(server.target, timeout=5) as client:
        assert await client.health()
        reply = await client.check("It is 330 m tall [1].", context=["The tower is 330 m tall."])
    assert reply.allowed
    stop = await stop_under_load(server, PLAN)
    assert stop.exit_code == 0 and stop.within_grace, (stop, server.log_tail())
