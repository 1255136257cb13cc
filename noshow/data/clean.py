"""The table checked cell by cell and cleaned: the Kaggle columns become the prepared frame
(features, patient history, statements), a Statement/NoShow file becomes text and labels.

    from noshow.data.clean import clean_kaggle_frame
    frame, report = clean_kaggle_frame(raw)      # raw: the Kaggle columns, cells as read
    report.rows_kept, report.notes               # what cleaning dropped and why

Decisions worth knowing:
- Bad input raises `DataError` naming the file, the column, the first bad cell and where it
  is (the caller's `position` turns a row index into "line 7" or "row 7").
- Rows with Age < 0, or booked after their appointment day, are dropped and counted (a row
  with both counts as negative age). Patient history is counted over the kept rows, from
  appointments on strictly earlier days only: same-day appointments never see each other.
- PatientId is stored as a float in the file; the 5 ids with decimals are truncated to
  integers (no two ids collide on the real file; a note says when that happens).
- An empty Neighbourhood cell is allowed (the statement then leaves the place out) and counted
  in the report's notes; every other Kaggle column must be filled.
- The prepared frame's columns are `FEATURE_COLUMNS`; a `split` column, where a file brings
  one or `noshow.data.splits` adds it, holds `SPLIT_NAMES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from noshow.data.statements import render_statements

KAGGLE_COLUMNS = (
    "PatientId",
    "AppointmentID",
    "Gender",
    "ScheduledDay",
    "AppointmentDay",
    "Age",
    "Neighbourhood",
    "Scholarship",
    "Hipertension",
    "Diabetes",
    "Alcoholism",
    "Handcap",
    "SMS_received",
    "No-show",
)
STATEMENT_COLUMNS = ("Statement", "NoShow")
OPTIONAL_STATEMENT_COLUMNS = ("split", "record_id")
# The file's welfare, condition and reminder columns, in its order (handicap counts 0-4, the
# others are 0/1): the tabular baseline's features list them the same way.
FLAG_COLUMNS = ("scholarship", "hypertension", "diabetes", "alcoholism", "handicap", "sms_received")
FEATURE_COLUMNS = (
    "record_id",
    "patient_id",
    "gender",
    "scheduled_at",
    "appointment_day",
    "age",
    "neighbourhood",
    *FLAG_COLUMNS,
    "no_show",
    "lead_days",
    "weekday",
    "booking_hour",
    "age_band",
    "prior_appointments",
    "prior_no_shows",
    "statement",
)
AGE_BANDS = ("0-17", "18-34", "35-49", "50-64", "65+")
# The values of a split column, a file's own or the one noshow.data.splits adds; kept here
# because cleaning checks a file's own column against them.
SPLIT_NAMES = ("train", "validation", "test")

_BINARY_COLUMNS = {
    "Scholarship": "scholarship",
    "Hipertension": "hypertension",
    "Diabetes": "diabetes",
    "Alcoholism": "alcoholism",
    "SMS_received": "sms_received",
}


class DataError(ValueError):
    """The data cannot be used; the message names the file, the problem and how to fix it."""


@dataclass
class CleaningReport:
    """What cleaning did to the rows read."""

    rows_read: int
    """Data rows in the file (header excluded)."""
    rows_kept: int
    """Rows left after dropping invalid ones."""
    dropped_negative_age: int = 0
    """Rows dropped because Age < 0."""
    dropped_negative_lead: int = 0
    """Rows dropped because they were booked after the appointment day."""
    no_show_rate: float = 0.0
    """Share of no-shows among the kept rows."""
    notes: list[str] = field(default_factory=list)
    """Anything else worth telling the user (ignored columns, dropped split column...)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _raise_bad_values(
    name: str, column: str, values: pd.Series, bad: np.ndarray, expected: str, position
) -> None:
    """Raise a DataError quoting the first bad value of `column` and where it is."""
    rows = np.flatnonzero(bad)
    if len(rows) == 0:
        return
    first = rows[0]
    value = values.iloc[first]
    value = _plain(value)
    shown = (
        "an empty cell"
        if value is None or str(value).strip() in ("", "nan", "NaT")
        else repr(value)
    )
    more = f" ({len(rows):,} rows in all)" if len(rows) > 1 else ""
    raise DataError(
        f"{name}: column '{column}' must hold {expected}, but has {shown} on "
        f"{position(first)}{more}. Fix those cells or re-export the original file."
    )


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so messages quote 34.5, not np.float64(34.5)."""
    return value.item() if isinstance(value, np.generic) else value


def _to_float(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(values.astype(str).str.strip(), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _parse_integers(
    name: str, raw: pd.DataFrame, column: str, position, *, allowed: tuple[int, int] | None = None
) -> np.ndarray:
    values = raw[column]
    if pd.api.types.is_integer_dtype(values.dtype) and allowed is None:
        return values.to_numpy(dtype=np.int64)
    numbers = _to_float(values)
    bad = ~np.isfinite(numbers) | (numbers != np.floor(numbers))
    expected = "whole numbers"
    if allowed is not None:
        lo, hi = allowed
        bad |= (numbers < lo) | (numbers > hi)
        expected = f"whole numbers from {lo} to {hi}" if hi - lo > 1 else f"{lo} or {hi}"
    _raise_bad_values(name, column, values, bad, expected, position)
    return numbers.astype(np.int64)


def _parse_timestamps(name: str, raw: pd.DataFrame, column: str, position) -> pd.Series:
    values = raw[column]
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    _raise_bad_values(
        name,
        column,
        values,
        parsed.isna().to_numpy(),
        "ISO dates such as 2016-04-29T18:38:08Z",
        position,
    )
    # Wall-clock time as written (the file's "Z" times are local booking times, 6 a.m.-9 p.m.).
    return parsed.dt.tz_localize(None)


def clean_kaggle_frame(
    raw: pd.DataFrame, *, name: str = "data", position: Callable[[int], str] | None = None
) -> tuple[pd.DataFrame, CleaningReport]:
    """Validate a frame with the raw Kaggle columns and return (cleaned frame with features
    and statements, report). `name` and `position` (row index -> "line 7") shape the
    DataError messages."""
    position = position or (lambda i: f"row {i + 1}")
    notes: list[str] = []
    extra = [c for c in raw.columns if c not in KAGGLE_COLUMNS]
    if extra:
        notes.append(f"Ignored extra column(s): {', '.join(map(str, extra))}.")
    raw = raw.reset_index(drop=True)
    rows_read = len(raw)

    patient = _to_float(raw["PatientId"])
    _raise_bad_values(
        name, "PatientId", raw["PatientId"], ~np.isfinite(patient) | (patient < 0),
        "positive numbers", position,
    )  # fmt: skip
    patient_id = np.floor(patient).astype(np.int64)
    fractional = patient != np.floor(patient)
    if fractional.any():
        notes.append(
            f"{int(fractional.sum())} PatientId value(s) had decimals and were truncated to "
            "whole numbers."
        )
        if pd.Series(patient).nunique() != pd.Series(patient_id).nunique():
            notes.append("Truncating PatientId merged some distinct patients.")
    record_id = _parse_integers(name, raw, "AppointmentID", position)
    duplicated = pd.Series(record_id).duplicated(keep=False).to_numpy()
    _raise_bad_values(
        name, "AppointmentID", raw["AppointmentID"], duplicated, "unique ids", position
    )
    gender = raw["Gender"].astype(str).str.strip().str.upper()
    _raise_bad_values(
        name, "Gender", raw["Gender"], ~gender.isin(["F", "M"]).to_numpy(), "F or M", position
    )
    scheduled_at = _parse_timestamps(name, raw, "ScheduledDay", position)
    appointment_day = _parse_timestamps(name, raw, "AppointmentDay", position).dt.normalize()
    age = _parse_integers(name, raw, "Age", position)
    flags = {
        new: _parse_integers(name, raw, old, position, allowed=(0, 1))
        for old, new in _BINARY_COLUMNS.items()
    }
    handicap = _parse_integers(name, raw, "Handcap", position, allowed=(0, 4))
    neighbourhood = raw["Neighbourhood"].astype(str).str.strip()
    no_place = int((neighbourhood == "").sum())
    if no_place:
        notes.append(
            f"{no_place:,} row(s) have an empty Neighbourhood; their statements leave the "
            "place out."
        )
    outcome = raw["No-show"].astype(str).str.strip()
    _raise_bad_values(
        name, "No-show", raw["No-show"], ~outcome.isin(["Yes", "No"]).to_numpy(),
        "Yes or No", position,
    )  # fmt: skip

    lead_days = (appointment_day - scheduled_at.dt.normalize()).dt.days.to_numpy()
    frame = pd.DataFrame(
        {
            "record_id": record_id,
            "patient_id": patient_id,
            "gender": gender.to_numpy(),
            "scheduled_at": scheduled_at.to_numpy(),
            "appointment_day": appointment_day.to_numpy(),
            "age": age,
            "neighbourhood": neighbourhood.to_numpy(),
            "scholarship": flags["scholarship"],
            "hypertension": flags["hypertension"],
            "diabetes": flags["diabetes"],
            "alcoholism": flags["alcoholism"],
            "handicap": handicap,
            "sms_received": flags["sms_received"],
            "no_show": (outcome == "Yes").to_numpy().astype(np.int64),
            "lead_days": lead_days.astype(np.int64),
        }
    )
    negative_age = frame["age"] < 0
    negative_lead = ~negative_age & (frame["lead_days"] < 0)
    frame = frame[~(negative_age | negative_lead)].reset_index(drop=True)
    if frame.empty:
        raise DataError(
            f"{name}: no rows left after dropping {int(negative_age.sum())} with Age < 0 and "
            f"{int(negative_lead.sum())} booked after the appointment day."
        )

    frame["weekday"] = frame["appointment_day"].dt.day_name().astype("str")
    frame["booking_hour"] = frame["scheduled_at"].dt.hour.astype(np.int64)
    band = np.searchsorted(np.array([18, 35, 50, 65]), frame["age"].to_numpy(), side="right")
    frame["age_band"] = pd.Series(np.array(AGE_BANDS)[band], dtype="str")
    frame = add_history_features(frame)
    frame["statement"] = render_statements(frame)
    frame = frame[list(FEATURE_COLUMNS)]

    report = CleaningReport(
        rows_read=rows_read,
        rows_kept=len(frame),
        dropped_negative_age=int(negative_age.sum()),
        dropped_negative_lead=int(negative_lead.sum()),
        no_show_rate=float(frame["no_show"].mean()),
        notes=notes,
    )
    return frame, report


def add_history_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with `prior_appointments` / `prior_no_shows`: the same patient's
    appointments (and no-shows among them) on strictly earlier appointment days. Outcomes
    on the row's own day or later never enter, so the features leak nothing."""
    per_day = (
        frame.groupby(["patient_id", "appointment_day"], sort=True)["no_show"]
        .agg(["size", "sum"])
        .reset_index()
    )
    by_patient = per_day.groupby("patient_id", sort=False)
    # Cumulative totals up to and including each day, minus that day's own rows.
    per_day["prior_appointments"] = by_patient["size"].cumsum() - per_day["size"]
    per_day["prior_no_shows"] = by_patient["sum"].cumsum() - per_day["sum"]
    out = frame.drop(columns=["prior_appointments", "prior_no_shows"], errors="ignore")
    out = out.merge(
        per_day[["patient_id", "appointment_day", "prior_appointments", "prior_no_shows"]],
        on=["patient_id", "appointment_day"],
        how="left",
        validate="many_to_one",
    )
    out.index = frame.index
    for column in ("prior_appointments", "prior_no_shows"):
        out[column] = out[column].astype(np.int64)
    return out


def clean_statement_frame(
    raw: pd.DataFrame, name: str, position
) -> tuple[pd.DataFrame, CleaningReport]:
    notes: list[str] = []
    extra = [c for c in raw.columns if c not in (*STATEMENT_COLUMNS, *OPTIONAL_STATEMENT_COLUMNS)]
    if extra:
        notes.append(f"Ignored extra column(s): {', '.join(map(str, extra))}.")
    statement = raw["Statement"].astype(str).str.strip()
    empty = (raw["Statement"].isna() | (statement == "") | (statement == "nan")).to_numpy()
    if empty.any():
        rows = np.flatnonzero(empty)
        where = ", ".join(position(i) for i in rows[:5]) + (" ..." if len(rows) > 5 else "")
        raise DataError(
            f"{name}: column 'Statement' is empty on {len(rows):,} row(s) ({where}). "
            "Every row needs a statement; remove or fill those rows."
        )
    label = raw["NoShow"].astype(str).str.strip()
    yes, no = label.str.lower() == "yes", label.str.lower() == "no"
    bad = ~(yes | no).to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)
        examples = ", ".join(
            f"{_plain(raw['NoShow'].iloc[i])!r} on {position(i)}" for i in rows[:5]
        ) + (" ..." if len(rows) > 5 else "")
        raise DataError(
            f"{name}: column 'NoShow' must be Yes (missed) or No (attended), but {len(rows):,} "
            f"row(s) hold other values: {examples}."
        )
    frame = pd.DataFrame(
        {
            "record_id": np.arange(len(raw), dtype=np.int64),
            "statement": statement.to_numpy(),
            "no_show": yes.to_numpy().astype(np.int64),
        }
    )
    if "record_id" in raw.columns:
        ids = _to_float(raw["record_id"])
        valid = np.isfinite(ids).all() and (ids == np.floor(ids)).all()
        if valid and pd.Series(ids).is_unique:
            frame["record_id"] = ids.astype(np.int64)
        else:
            notes.append("Column record_id is not unique whole numbers; rows numbered 0.. instead.")
    if "split" in raw.columns:
        split = raw["split"].astype(str).str.strip().str.lower()
        unknown = sorted(set(split) - set(SPLIT_NAMES))
        if unknown:
            notes.append(
                f"Ignored the split column: it holds {', '.join(map(repr, unknown[:5]))}; "
                "allowed values are train, validation and test."
            )
        elif not {"train", "test"} <= set(split):
            notes.append("Ignored the split column: it needs at least train and test rows.")
        else:
            frame["split"] = split.to_numpy()
    report = CleaningReport(
        rows_read=len(raw),
        rows_kept=len(frame),
        no_show_rate=float(frame["no_show"].mean()),
        notes=notes,
    )
    return frame, report
