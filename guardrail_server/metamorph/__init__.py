"""Metamorphic testing: label-free tests of a system under test — and of our own judges.

Instead of asking "is this output right?" (which needs a label), ask "does the output keep a known relation to a
transformed input?". A *relation* (`relations/`) turns a seed case into a follow-up case mechanically (seeded, so the
same seed always gives the same pair) and says how the two outputs must relate: unchanged (paraphrase, demographic
swap, distractor passage, shuffled passages) or flipped (negation). A *system under test* (`sut.py`) is an
OpenAI-compatible endpoint, a Python callable, or our own invariants through `CheckEngine`. `monotonicity.py` calls
a system with nested contexts and checks that the answer's specificity (`specificity.py`) does not fall.

`runner.py` writes a run directory in the `guardrail eval` schema (one row per pair x target, `invariant` =
`RELATION@TARGET`, outcome pass = the relation held), so summaries, the report, `--fail-if` gates and
`guardrail eval compare` work on it unchanged; `pairs.jsonl` holds both sides of every pair for the report.
"""
