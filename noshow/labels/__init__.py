"""Clinician labels: what a label event is and the checks on its fields (`events`), the
append-only SQLite store (`store`) and where its file lives (`location`), exports and imports
for people (`export`) and agreement between annotators and with the data set (`agreement`).
The Label tab's queue (what to label next) is built in `noshow.app.label_views`.

Layer 2: imports `noshow.config`, `noshow.system` and `noshow.data` only."""
