"""A slice of `bench.load` against a real `guardrail serve`: at 4x capacity the server sheds instead of slowing down,
fails nothing open, and a flooding CheckStream client does not starve unary callers.

`test_sleepy` (1.0 s a check, in process workers) makes capacity exact: 2 workers = 2 checks/s. Admission is scaled
to that 1 s check (a real one takes ~75 ms, for which the defaults wait 0.25 s): a call waits at most 1 s for a worker,
so an admitted call takes at most ~1 + 1 s — within 3x the unloaded 1 s — and the rest is shed with
RESOURCE_EXHAUSTED at once or after that 1 s. The same drivers as the bench.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from bench.harness import ServerProcess, only_invariants
from bench.load import Target, measured, mixed, open_loop_unary, sequential
from guardrail_client._proto.guardrail.v1 import guardrail_pb2 as pb

CAPACITY = 2.0  # checks/s: 2 workers x 1 check/s


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    config = {"invariants": only_invariants({"test_sleepy": {"timeout_s": 5.0, "options": {"seconds": 1.0}}}),
              "workers": {"mode": "process", "count": 2}, "review": {"enabled": False},
              "admission": {"max_queue": 8, "max_queue_wait_s": 1.0}}
    with ServerProcess(config=config, start_timeout_s=120) as srv:
        yield srv


def target(server: ServerProcess) -> Target:
    return Target(server.target, [pb.CheckRequest(response="It is 330 m tall [1].")], deadline_s=10.0)


@pytest.mark.timeout(180)
async def test_at_4x_capacity_calls_are_shed_and_admitted_ones_stay_fast(server: ServerProcess) -> None:
    t = target(server)
    unloaded = await measured(server, "slice", "unloaded", "unary", 0, 0, lambda: sequential(t, 3))
    base = unloaded.p(0.5)
    assert 1.0 <= base < 1.5
    step = await measured(server, "slice", "4x", "unary", 4 * CAPACITY, 8.0,
                          lambda: open_loop_unary(t, 4 * CAPACITY, 8.0, random.Random(4)))
    assert len(step.calls) >= 40
    assert step.shed() and step.shed_metric == len(step.shed())  # every refusal counted in guardrail_shed_total
    assert len(step.admitted()) >= 12  # ~2/s for 8 s: the workers stayed busy
    assert step.p(0.99) <= 3 * base, (step.p(0.99), base)
    assert step.fail_opens == 0 and step.visible_errors() == 0
    assert not step.errors(), {c.status for c in step.errors()}


@pytest.mark.timeout(180)
async def test_unary_callers_are_admitted_while_a_stream_floods(server: ServerProcess) -> None:
    """The stream offers 4x capacity on its own; it may hold one of the two workers (stream_share 0.5), so unary
    callers at a quarter of capacity find the other one."""
    t = target(server)
    step = await measured(server, "slice", "mixed", "mixed", 4.5 * CAPACITY, 10.0,
                          lambda: mixed(t, 4 * CAPACITY, 0.25 * CAPACITY, 10.0, random.Random(7)))
    unary, stream = step.of("unary"), step.of("stream")
    assert len(unary) >= 3 and len(stream) >= 40
    assert len(step.admitted("unary")) == len(unary), [c.status for c in unary]
    assert step.admitted("stream") and step.shed("stream")  # the stream was served, and shed beyond its share
    assert len(step.admitted("stream")) <= 10 * 1.0 + 2  # at most one worker's worth: ~1/s
    assert step.fail_opens == 0 and not step.errors()
