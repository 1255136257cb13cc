"""Data in: the appointment table read and checked (`load`), the one split policy
(`load.choose_split`), each row rendered as a statement and parsed back (`statements`), a
synthetic stand-in (`synthetic`) and the examples clinicians try (`examples`).

Layer 1: imports `noshow.config` and `noshow.system` only."""
