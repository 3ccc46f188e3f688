"""`guardrail synth`: an eval set drawn from the user's own documents, labelled by construction.

documents (.txt/.md/.html/.pdf, JSONL id/title/text) -> `documents.load_documents` -> a `Corpus` of passages
-> `grid.plan` (kind x response length x passages per case x citation format; `anchors` steers the kind weights)
-> `kinds` (one builder per case kind, each with the per-invariant expectation it guarantees) -> `build.synthesize`
-> native `guardrail eval` rows (`build.to_row`), optionally plus model-written cases kept only when a judge of
another family agrees (`llm`). Pure Python apart from the optional judge; deterministic for a seed.
"""
