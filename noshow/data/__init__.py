"""Data in: the appointment file found and read (`load`), checked cell by cell and cleaned
into the prepared frame with features (`clean`), the one split policy (`splits`), each row
rendered as a statement and parsed back (`statements`), the prepared data set written for
people and `datasets` (`export`), a synthetic stand-in (`synthetic`) and the examples
clinicians try (`examples`).

Layer 1: imports `noshow.config` and `noshow.system` only."""
