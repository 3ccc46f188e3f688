"""Offline evals: the invariants of the live service run over datasets, with results, reports and CI gates."""
