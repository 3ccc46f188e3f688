"""DynamicBatcher: the real shipped model gives the same scores batched as unbatched (exactly with the default of one
pair per call, within a tolerance with batches of dynamic int8); batches form under concurrency;
results go back to the right caller in order; the queue is bounded; errors reach every waiting caller."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from guardrail_models.batcher import BatcherClosedError, DynamicBatcher
from guardrail_models.zoo import ModelZoo, ZooSettings

PREMISES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "A man in a red jacket is riding a bicycle down a busy city street while talking on his phone.",
    "The Danube is the second-longest river in Europe. It flows through Vienna, Budapest and Belgrade before "
    "reaching the Black Sea, and it drains a basin of 801,000 square kilometres spread over ten countries.",
    "Bread is made from flour and water.",
]
HYPOTHESES = ["The tower was finished in 1889.", "A person is cycling.", "The Danube reaches the Black Sea.",
              "Bread contains rice.", "The river is in Africa."]
PAIRS = [(p, h) for p in PREMISES for h in HYPOTHESES]


@pytest.fixture(scope="module")
def zoo() -> ModelZoo:
    return ModelZoo(ZooSettings(max_batch_size=16, max_wait_ms=5.0))


async def test_batched_scores_equal_unbatched(zoo: ModelZoo) -> None:
    model = await zoo.load_nli()
    single = np.concatenate([model.predict_sync([p]) for p in PAIRS])
    before = model.batcher.batches
    chunks = [PAIRS[i:i + 3] for i in range(0, len(PAIRS), 3)]
    batched = np.concatenate(await asyncio.gather(*(model.predict(c) for c in chunks)))
    assert batched.shape == (len(PAIRS), 3)
    np.testing.assert_allclose(batched.sum(1), 1.0, atol=1e-5)
    # dynamic int8 quantizes activations with one scale per batch tensor, so batch composition moves the output a
    # little; the entailment column (what the invariant scores) must stay within 0.05, the argmax nearly always
    np.testing.assert_allclose(batched[:, 0], single[:, 0], atol=0.05)
    assert (batched.argmax(1) == single.argmax(1)).mean() >= 0.9
    assert model.batcher.batches - before < len(chunks)  # concurrent callers shared batches


async def test_default_settings_score_every_pair_exactly_as_alone() -> None:
    """The shipped default (one pair per model call): concurrency never changes a score, whatever else is queued."""
    zoo = ModelZoo()
    model = await zoo.load_nli()
    try:
        single = np.concatenate([model.predict_sync([p]) for p in PAIRS])
        long_mate = (" ".join(PREMISES) * 3, "A long neighbour in the queue.")
        chunks = [[*PAIRS[i:i + 3], long_mate] for i in range(0, len(PAIRS), 3)]
        results = await asyncio.gather(*(model.predict(c) for c in chunks))
        batched = np.concatenate([r[:-1] for r in results])
        np.testing.assert_array_equal(batched, single)
    finally:
        await zoo.close()


async def test_batch_metrics_are_recorded(zoo: ModelZoo) -> None:
    model = await zoo.load_nli()
    name = model.name
    count = REGISTRY.get_sample_value("guardrail_model_batch_size_count", {"model": name}) or 0.0
    infer = REGISTRY.get_sample_value("guardrail_model_inference_seconds_count", {"model": name}) or 0.0
    await asyncio.gather(*(model.predict([p]) for p in PAIRS[:8]))
    assert REGISTRY.get_sample_value("guardrail_model_batch_size_count", {"model": name}) > count
    assert REGISTRY.get_sample_value("guardrail_model_inference_seconds_count", {"model": name}) > infer
    assert REGISTRY.get_sample_value("guardrail_model_queue_depth", {"model": name}) is not None


def _echo(pairs):
    """Row = (len(premise), len(hypothesis), call thread id) so each caller can check it got its own rows."""
    time.sleep(0.01)
    return np.array([[len(p), len(h), threading.get_ident() % 1000] for p, h in pairs], dtype=np.float32)


async def test_each_caller_gets_its_own_rows_in_order() -> None:
    b = DynamicBatcher(_echo, name="echo", max_batch_size=8, max_wait_ms=5)
    calls = [[("x" * (i * 7 % 13 + j), "y" * (i + j)) for j in range(i % 4 + 1)] for i in range(30)]
    outs = await asyncio.gather(*(b.predict(c) for c in calls))
    for c, out in zip(calls, outs, strict=True):
        assert out[:, 0].tolist() == [len(p) for p, _ in c]
        assert out[:, 1].tolist() == [len(h) for _, h in c]
    assert b.batches < len(calls)
    await b.close()


async def test_queue_is_bounded() -> None:
    b = DynamicBatcher(_echo, name="bounded", max_batch_size=2, max_wait_ms=1, max_queue=3)
    depths: list[int] = []

    async def watch() -> None:
        while True:
            if b._queue is not None:
                depths.append(b._queue.qsize())
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    outs = await asyncio.gather(*(b.predict([("p" * i, "h")]) for i in range(1, 25)))
    watcher.cancel()
    assert [int(o[0, 0]) for o in outs] == list(range(1, 25))
    assert depths and max(depths) <= 3
    await b.close()


async def test_errors_reach_every_caller_and_the_batcher_survives() -> None:
    fail = {"on": True}

    def flaky(pairs):
        if fail["on"]:
            raise RuntimeError("model exploded")
        return _echo(pairs)

    b = DynamicBatcher(flaky, name="flaky", max_batch_size=4, max_wait_ms=5)
    results = await asyncio.gather(*(b.predict([("a", "b")]) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    fail["on"] = False
    assert (await b.predict([("abc", "d")]))[0, 0] == 3
    await b.close()
    with pytest.raises(BatcherClosedError):
        await b.predict([("a", "b")])


async def test_empty_input() -> None:
    b = DynamicBatcher(_echo, name="empty")
    assert (await b.predict([])).shape == (0, 3)
