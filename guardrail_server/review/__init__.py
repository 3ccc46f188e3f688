"""Review loop: sample live traffic, label it with critiques, freeze anchor sets, calibrate the judges.

The server needs only `ReviewSampler` and `latest_agreement`; the CLI (`guardrail_server.cli.review`) and the
web page use the store directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail_server.review.sampler import ReviewSampler
    from guardrail_server.review.store import ReviewStore

__all__ = ["ReviewSampler", "ReviewStore", "latest_agreement", "set_agreement_gauge"]


def __getattr__(name: str) -> Any:
    if name == "ReviewSampler":
        from guardrail_server.review.sampler import ReviewSampler

        return ReviewSampler
    if name == "ReviewStore":
        from guardrail_server.review.store import ReviewStore

        return ReviewStore
    if name in ("latest_agreement", "set_agreement_gauge"):
        from guardrail_server.review import calibration

        return getattr(calibration, name)
    raise AttributeError(name)
