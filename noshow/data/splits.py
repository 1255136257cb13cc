"""The split policy, in one place: which rows train, which validate and which test, leak-free.

    from noshow.data.splits import choose_split, split_data
    frame = split_data(loaded.frame, "time")     # adds split = train / validation / test
    choice = choose_split(loaded, "time")        # what training and the Data tab both use
    choice.frame, choice.method, choice.note     # note: why the split differs from the one asked

- 'time': test = appointments on/after 2016-05-30, validation the 3 appointment days before.
- 'patient': a patient's appointments all land in one part (seeded hash of the id).
- 'random': stratified by the label, seeded; the only split text-only data can take.
A file that brings a complete split column keeps it: its author chose that split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from noshow.data.clean import SPLIT_NAMES, DataError
from noshow.data.load import LoadedData

SPLIT_METHODS = ("time", "patient", "random")
# Time split: test = the last 8 appointment days of the real file (35,243 rows after
# cleaning); validation = the 3 appointment days before them (2016-05-20, -24, -25; 11,746
# rows, about 16% of the pre-test rows), so validation is as close to test in time as it can be.
TIME_SPLIT_TEST_START = "2016-05-30"
TIME_SPLIT_VALIDATION_START = "2016-05-20"
PATIENT_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # of patients
RANDOM_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # of rows, within each class


def split_data(
    frame: pd.DataFrame, method: Literal["time", "patient", "random"], *, seed: int = 0
) -> pd.DataFrame:
    """Return a copy of `frame` with `split` in {train, validation, test}.

    - 'time': test = appointment_day on/after 2016-05-30, validation = 2016-05-20 .. 05-29,
      train = earlier days (needs `appointment_day`).
    - 'patient': about 70/10/20% of patients by a seeded hash of `patient_id`; every
      patient's rows land in one part (needs `patient_id`).
    - 'random': 80/10/10% of rows, stratified by `no_show`, seeded.
    A Statement/NoShow frame that already has a valid split column keeps it whatever the
    method, because its author chose that split.
    """
    if method not in SPLIT_METHODS:
        raise DataError(f"Unknown split method {method!r}: use one of {', '.join(SPLIT_METHODS)}.")
    out = frame.copy()
    is_text_only = "patient_id" not in out.columns and "appointment_day" not in out.columns
    if is_text_only and "split" in out.columns and out["split"].isin(SPLIT_NAMES).all():
        return out
    needs = {"time": "appointment_day", "patient": "patient_id", "random": "no_show"}[method]
    if needs not in out.columns:
        raise DataError(
            f"The '{method}' split needs the {needs} column, which this data lacks"
            + (
                " (Statement/NoShow files hold text and labels only). Use split='random', or "
                "add a split column (train/validation/test) to the file."
                if is_text_only
                else ". Load the data with noshow.data.load.load_data, which adds it."
            )
        )
    if method == "time":
        day = pd.to_datetime(out["appointment_day"])
        test = (day >= pd.Timestamp(TIME_SPLIT_TEST_START)).to_numpy()
        validation = ~test & (day >= pd.Timestamp(TIME_SPLIT_VALIDATION_START)).to_numpy()
        labels = np.where(test, "test", np.where(validation, "validation", "train"))
        empty = [part for part in SPLIT_NAMES if not (labels == part).any()]
        if empty and len(out):
            raise DataError(
                f"The time split leaves {', '.join(empty)} empty: appointment days here run "
                f"from {day.min():%Y-%m-%d} to {day.max():%Y-%m-%d}, but the split puts "
                f"validation on {TIME_SPLIT_VALIDATION_START} .. and test on/after "
                f"{TIME_SPLIT_TEST_START}. Use split='patient' or 'random'."
            )
    elif method == "patient":
        unit = _hash_unit(out["patient_id"].to_numpy(dtype=np.int64), seed)
        train_end = PATIENT_SPLIT_FRACTIONS[0]
        val_end = train_end + PATIENT_SPLIT_FRACTIONS[1]
        labels = np.where(unit < train_end, "train", np.where(unit < val_end, "validation", "test"))
    else:
        labels = _stratified_labels(out["no_show"].to_numpy(), seed)
    out["split"] = pd.Series(labels, index=out.index, dtype="str")
    return out


@dataclass
class SplitChoice:
    """A frame with its `split` column and how that split came about."""

    frame: pd.DataFrame
    method: str
    """'time' / 'patient' / 'random' as asked, 'given' (the file's own column) or 'random'."""
    note: str | None = None
    """One sentence when the split used is not the one asked for, else None."""


def choose_split(loaded: LoadedData, method: str, *, seed: int = 0) -> SplitChoice:
    """The one split policy, for training and the Data tab alike: a file that brings a
    complete split column keeps it; a Statement/NoShow file (no dates, no patient ids)
    falls back to a stratified random split; otherwise `split_data(frame, method)`."""
    frame = loaded.frame
    if "split" in frame.columns and frame["split"].isin(SPLIT_NAMES).all() and len(frame):
        return SplitChoice(
            frame.copy(), "given", "The file brings its own split column: using that split."
        )
    if not loaded.has_features and method != "random":
        return SplitChoice(
            split_data(frame, "random", seed=seed),
            "random",
            f"Statement/NoShow data has no dates or patient ids: the '{method}' split falls "
            "back to a stratified random split.",
        )
    return SplitChoice(split_data(frame, method, seed=seed), method)


def _hash_unit(ids: np.ndarray, seed: int) -> np.ndarray:
    """Map integer ids to [0, 1) with SplitMix64: deterministic across runs and machines
    (Python's hash() is salted per process), and spread evenly for any id pattern."""
    x = ids.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def _stratified_labels(y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.empty(len(y), dtype=object)
    for value in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == value))
        n_train = round(len(rows) * RANDOM_SPLIT_FRACTIONS[0])
        n_val = round(len(rows) * RANDOM_SPLIT_FRACTIONS[1])
        labels[rows[:n_train]] = "train"
        labels[rows[n_train : n_train + n_val]] = "validation"
        labels[rows[n_train + n_val :]] = "test"
    return labels.astype(str)
