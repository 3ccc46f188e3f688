"""Model runtime and zoo: ONNX sessions, tokenizers, the dynamic batcher, one manifest per model.

This layer imports neither `invariants` nor `guardrail_server`."""
