"""Judging scores: metrics with intervals and the run's report (`report`), calibration,
the tuned tabular baseline and the hybrid of an adapter with it. Works on arrays of
probabilities and labels; loads no model.

Layer 4: imports config, system, data, labels and modeling only."""
