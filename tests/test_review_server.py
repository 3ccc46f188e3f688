"""The review sampler wired into a real server: sampled replies carry the sample id, stored redacted."""

from __future__ import annotations

import json
from pathlib import Path

from guardrail_server.client import AsyncGuardrailClient
from guardrail_server.review.records import hash_value
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.review.store import ReviewStore
from tests.conftest import make_config, running_server


async def test_sampled_check_is_stored_redacted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    cfg = make_config(
        {"test_keyword": {"options": {"word": "forbidden"}}},
        {"review.enabled": True, "review.url": url, "review.spool_dir": str(tmp_path / "spool"),
         "review.random_rate": 0.0, "review.failure_rate_limit_per_minute": 1000},
    )
    sampler = ReviewSampler(cfg.review)
    async with running_server(cfg, sampler=sampler) as (_, target):
        async with AsyncGuardrailClient(target) as client:
            flagged = await client.check("Contact Robert Smith at robert.smith@example.com, it is forbidden.",
                                         question="who?", request_id="s-1")
            clean = await client.check("Nothing to see here.", request_id="s-2")
    assert flagged.review_sample_id and not clean.review_sample_id
    with ReviewStore(url).open() as store:
        sample = store.get_sample(flagged.review_sample_id)
        assert store.count_samples() == 1
    assert sample is not None and sample["request_id"] == hash_value("s-1")  # identifiers are stored hashed
    assert "failure" in sample["reasons"]
    stored = json.dumps(sample["case"])
    assert "robert.smith@example.com" not in stored and "Robert Smith" not in stored
    assert "forbidden" in stored
