"""`guardrail adapt`: the self-taught loop that teaches the entailment judge the user's own documents.

documents (as `guardrail synth` reads them) -> `pairs.make_pairs`: contrastive (premise window, claim, label) pairs from
the judge's own training generator and its mechanical rewordings -> `pairs.label_noise`: a pair whose construction
label the current judge *and* the lexical features both confidently contradict is dropped -> `groups`: the pairs in the
trainer's groups format (windowed as the invariant windows), mixed with a replayed sample of the general training mix
so the judge does not forget -> `loop`: the shipped judge's torch weights recovered from its int8 ONNX, fine-tuned for
a bounded time, a second round on the pairs it still gets wrong, exported to a zoo model -> `judging`: base and adapted
judge evaluated through `guardrail eval` on the anchors and on a synth set of held-out documents, the threshold
calibrated on the anchors (refused where the labels cannot back it), and the config overlay written only when the
anchors do not say the adapted judge is worse. See docs/adapt.md.
"""
