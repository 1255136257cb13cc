"""Judging scores: metrics and the decision threshold (`metrics`), ROC-AUC intervals and
paired differences (`intervals`), the run's report and the end-of-run evaluation (`report`),
its figures (`plots`), calibration, the tuned tabular baseline and the hybrid of an adapter
with it, the stacked models (`stacking`, `two_adapters`) and calibration that follows the
clinic (`recalibration`). Works on arrays of probabilities and labels; loads no model.

Layer 4: imports config, system, data, labels and modeling only."""
