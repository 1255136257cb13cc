"""Clinician labels: the SQLite store, the labelling queue, agreement between annotators
and exports.

Layer 2: imports `noshow.config`, `noshow.system` and `noshow.data` only."""
