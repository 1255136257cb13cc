"""Load appointment data, check it, clean it, add features and statements, and split it.

Three inputs give one shape of DataFrame (see ARCHITECTURE.md for the columns):
- the original Kaggle CSV (`KaggleV2-May-2016.csv`; Parquet with the same columns works too),
- the seed project's "modified" form: CSV or Parquet with `Statement` (text) and `NoShow`
  ("Yes"/"No"), optionally `split` (train/validation/test) and `record_id`,
- synthetic demo data (`noshow.data.synthetic`), always flagged `is_synthetic`.

    from noshow.data.load import load_data, split_data
    loaded = load_data()                       # NOSHOW_DATA > data/KaggleV2-May-2016.csv > synthetic
    loaded = load_data("path/to/file.csv")     # or "synthetic" to force the demo data
    frame = split_data(loaded.frame, "time")   # adds split = train / validation / test

Decisions worth knowing:
- Bad input raises `DataError` naming the file and the problem. CSV positions are file line
  numbers (the header is line 1); Parquet positions are row numbers (first row = 1).
- Text must be UTF-8 (a byte-order mark is fine). Other encodings are refused rather than
  guessed, because a wrong guess silently garbles neighbourhood names.
- Rows with Age < 0, or booked after their appointment day, are dropped and counted (a row
  with both counts as negative age). Patient history is counted over the kept rows, from
  appointments on strictly earlier days only: same-day appointments never see each other.
- PatientId is stored as a float in the file; the 5 ids with decimals are truncated to
  integers (no two ids collide on the real file; a note says when that happens).
- Parsed results are cached by (path, size, modification time); callers get copies.
- `load_data` never writes anything; `export_statements` writes the prepared data set
  atomically (temporary folder, then rename). Its CSV is for people and spreadsheets: a text
  cell that a spreadsheet would run as a formula (starting with =, +, -, @, tab or CR) gets a
  leading apostrophe, as in every CSV the app writes; the Parquet file and `hf/` keep the
  exact text.
- An empty Neighbourhood cell is allowed (the statement then leaves the place out) and counted
  in the report's notes; every other Kaggle column must be filled.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from noshow.data.statements import TEMPLATE_VERSION, render_statements
from noshow.system.files import replace_folder
from noshow.system.paths import REPO

DEFAULT_DATA_PATH = REPO / "data" / "KaggleV2-May-2016.csv"
DATA_ENV_VAR = "NOSHOW_DATA"
SYNTHETIC_SOURCE = "synthetic"  # pass as `source` to force the demo data
SYNTHETIC_ROWS = 6000
# Largest file load_data reads by default (the real file is 10.7 MB); the app refuses bigger
# uploads with the same figure, before they reach the disk.
MAX_BYTES = 200_000_000
SYNTHETIC_SEED = 0

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
FEATURE_COLUMNS = (
    "record_id",
    "patient_id",
    "gender",
    "scheduled_at",
    "appointment_day",
    "age",
    "neighbourhood",
    "scholarship",
    "hypertension",
    "diabetes",
    "alcoholism",
    "handicap",
    "sms_received",
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
SPLIT_NAMES = ("train", "validation", "test")
SPLIT_METHODS = ("time", "patient", "random")
# Time split: test = the last 8 appointment days of the real file (35,243 rows after
# cleaning); validation = the 3 appointment days before them (2016-05-20, -24, -25; 11,746
# rows, about 16% of the pre-test rows), so validation is as close to test in time as it can be.
TIME_SPLIT_TEST_START = "2016-05-30"
TIME_SPLIT_VALIDATION_START = "2016-05-20"
PATIENT_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # of patients
RANDOM_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # of rows, within each class

_BINARY_COLUMNS = {
    "Scholarship": "scholarship",
    "Hipertension": "hypertension",
    "Diabetes": "diabetes",
    "Alcoholism": "alcoholism",
    "SMS_received": "sms_received",
}
# Near-miss spellings people produce when they "fix" the Kaggle header.
_SPELLING_HINTS = {
    "Hipertension": ("hypertension",),
    "Handcap": ("handicap",),
    "No-show": ("noshow", "no_show"),
    "NoShow": ("no-show", "no_show"),
    "Neighbourhood": ("neighborhood",),
}
_CACHE_SIZE = 4
_cache: OrderedDict[tuple, LoadedData] = OrderedDict()
_cache_lock = threading.Lock()


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


@dataclass
class LoadedData:
    """A cleaned frame and where it came from."""

    frame: pd.DataFrame
    kind: Literal["kaggle", "statements", "synthetic"]
    source: str
    """Path of the file, or 'synthetic (generated, seed 0)'."""
    is_synthetic: bool
    report: CleaningReport
    has_features: bool
    """False for Statement/NoShow files (text and label only)."""


# ----------------------------------------------------------------------------- loading


def load_data(source: str | Path | None = None, *, max_bytes: int = MAX_BYTES) -> LoadedData:
    """Load, validate and clean `source` (see the module docstring); raise DataError."""
    if source is None:
        env = os.environ.get(DATA_ENV_VAR, "").strip()
        if env:
            source = env
            if env != SYNTHETIC_SOURCE and not Path(env).expanduser().exists():
                raise DataError(
                    f"{DATA_ENV_VAR} points to {env}, which does not exist. Fix the path, "
                    f"or unset {DATA_ENV_VAR} to use {DEFAULT_DATA_PATH} or synthetic data."
                )
        elif DEFAULT_DATA_PATH.is_file():
            source = DEFAULT_DATA_PATH
        else:
            source = SYNTHETIC_SOURCE
    if str(source) == SYNTHETIC_SOURCE and not Path(SYNTHETIC_SOURCE).exists():
        return _copy_loaded(_cached(("synthetic", SYNTHETIC_ROWS, SYNTHETIC_SEED), _load_synthetic))

    path = Path(source).expanduser()
    name = str(path)
    if not path.exists():
        raise DataError(f"{name} does not exist. Check the path (current folder: {Path.cwd()}).")
    if path.is_dir():
        raise DataError(
            f"{name} is a folder, not a file. Pass the CSV or Parquet file inside it, "
            "e.g. KaggleV2-May-2016.csv."
        )
    stat = path.stat()
    if stat.st_size == 0:
        raise DataError(
            f"{name} is empty (0 bytes). Use the Kaggle CSV or a Statement/NoShow file."
        )
    if stat.st_size > max_bytes:
        raise DataError(
            f"{name} is {_size_text(stat.st_size)}, over the {_size_text(max_bytes)} limit. "
            "Use a smaller file, or raise max_bytes if you really mean to load it."
        )
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return _copy_loaded(_cached(key, lambda: _load_file(path)))


def _size_text(n_bytes: int) -> str:
    """'12 kB', '250 MB', '3.2 GB': sizes as people read them."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            value = n_bytes / scale
            return f"{value:,.1f} {unit}" if value < 10 and unit == "GB" else f"{value:,.0f} {unit}"
    return f"{n_bytes} bytes"


def clear_cache() -> None:
    """Forget every parsed file (the next load reads from disk)."""
    with _cache_lock:
        _cache.clear()


def _cached(key: tuple, load) -> LoadedData:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    loaded = load()  # outside the lock: parsing takes seconds and may fail
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def _copy_loaded(loaded: LoadedData) -> LoadedData:
    return dataclasses.replace(
        loaded, frame=loaded.frame.copy(), report=copy.deepcopy(loaded.report)
    )


def _load_synthetic() -> LoadedData:
    from noshow.data.synthetic import make_synthetic

    raw = make_synthetic(n_rows=SYNTHETIC_ROWS, seed=SYNTHETIC_SEED)
    source = f"synthetic (generated, seed {SYNTHETIC_SEED})"
    frame, report = clean_kaggle_frame(raw, name=source)
    return LoadedData(frame, "synthetic", source, True, report, True)


def _load_file(path: Path) -> LoadedData:
    name = str(path)
    raw, position = _read_table(path)
    columns = [str(c).strip() for c in raw.columns]
    raw.columns = columns
    if all(c in columns for c in KAGGLE_COLUMNS):
        frame, report = clean_kaggle_frame(raw, name=name, position=position)
        return LoadedData(frame, "kaggle", name, False, report, True)
    if all(c in columns for c in STATEMENT_COLUMNS):
        frame, report = _clean_statement_frame(raw, name, position)
        return LoadedData(frame, "statements", name, False, report, False)
    raise DataError(_describe_missing_columns(name, columns))


def _read_table(path: Path) -> tuple[pd.DataFrame, Any]:
    """Read CSV or Parquet into a frame (CSV cells as strings) and return how to describe a
    row position in messages."""
    name = str(path)
    data = path.read_bytes()
    if data[:4] == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        try:
            raw = pd.read_parquet(io.BytesIO(data))
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{name} is not a readable Parquet file ({e}).") from e
        if raw.empty:
            raise DataError(f"{name} has columns but no rows.")
        return raw.reset_index(drop=True), lambda i: f"row {i + 1}"

    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(
            f"{name} is UTF-16 text (Excel's 'Unicode Text'). Save it as 'CSV UTF-8' instead."
        )
    if data[:4] == b"PK\x03\x04":
        raise DataError(
            f"{name} is a ZIP or Excel (.xlsx) file, not CSV. Unzip it, or in Excel use "
            "Save As > 'CSV UTF-8'."
        )
    if b"\x00" in data[:65536]:
        raise DataError(
            f"{name} looks like a binary file, not CSV text. Pass the Kaggle CSV or a "
            "Statement/NoShow CSV/Parquet file."
        )
    try:
        text = data.decode("utf-8-sig")  # only to check; the C parser reads bytes faster
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{name} is not UTF-8 text: byte 0x{data[e.start]:02x} on line {line} cannot be "
            "decoded (the file is probably Latin-1/Windows-1252). Re-save it as UTF-8, e.g. "
            "Excel: Save As > 'CSV UTF-8', or `iconv -f latin1 -t utf-8 in.csv > out.csv`."
        ) from e
    if not text.strip():
        raise DataError(
            f"{name} holds only blank lines. Use the Kaggle CSV or a Statement/NoShow file."
        )
    try:
        # Types are inferred (fast); a column with a bad cell comes back as text and the
        # checks in clean_kaggle_frame point at the cell. No NA parsing: "NA" is text here.
        raw = pd.read_csv(
            io.BytesIO(data), encoding="utf-8-sig", keep_default_na=False, na_filter=False
        )
    except pd.errors.ParserError as e:
        raise DataError(
            f"{name} is not valid CSV: {str(e).strip()}. Check the quoting and separators."
        ) from e
    if len(raw.columns) == 1 and raw.columns[0].count(";") >= 1:
        raise DataError(
            f"{name} uses ';' as separator; save it with ',' separators (standard CSV)."
        )
    if raw.empty:
        found = ", ".join(str(c) for c in raw.columns[:20])
        raise DataError(f"{name} has a header ({found}) but no data rows.")
    return raw, lambda i: f"line {i + 2}"


def _normalise_name(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _describe_missing_columns(name: str, found: Sequence[str]) -> str:
    kaggle_hits = sum(c in found for c in KAGGLE_COLUMNS)
    statement_hits = sum(c in found for c in STATEMENT_COLUMNS)
    expected = (
        KAGGLE_COLUMNS
        if kaggle_hits >= 2 or kaggle_hits > statement_hits * 7
        else STATEMENT_COLUMNS
    )
    form = "Kaggle" if expected is KAGGLE_COLUMNS else "Statement/NoShow"
    missing = [c for c in expected if c not in found]
    by_norm = {_normalise_name(c): c for c in found}
    hints = []
    for col in missing:
        for candidate in (col, *_SPELLING_HINTS.get(col, ())):
            near = by_norm.get(_normalise_name(candidate))
            if near is not None:
                hints.append(f"found '{near}' where '{col}' is expected")
                break
    shown = ", ".join(found[:20]) + (" ..." if len(found) > 20 else "")
    return (
        f"{name} is missing column(s) {', '.join(missing)} for the {form} form"
        + (f" ({'; '.join(hints)}; names are exact, as in the original file)" if hints else "")
        + f". Columns found: {shown or 'none'}. Accepted forms: (1) the original Kaggle file "
        f"with columns {', '.join(KAGGLE_COLUMNS)}; (2) a statement file with columns "
        "Statement (text) and NoShow (Yes/No), optionally split (train/validation/test) and "
        "record_id."
    )


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


def _clean_statement_frame(
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


# ----------------------------------------------------------------------------- splitting


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


# ----------------------------------------------------------------------------- export

EXPORT_FORMATS = ("parquet", "csv")
_EXPORT_MARKER = "summary.json"


def export_statements(
    loaded: LoadedData,
    split: Literal["time", "patient", "random"],
    out_dir: str | Path,
    *,
    formats: Sequence[str] = EXPORT_FORMATS,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the seed's "modified" data set (record_id, Statement, NoShow Yes/No, split) as
    statements.parquet / statements.csv plus a `datasets.DatasetDict` in `hf/` (one split
    per part) and `summary.json`, all into `out_dir` at once: files go to a temporary folder
    that replaces `out_dir` only when complete. Returns the summary dict.

    An existing `out_dir` is replaced only if it is empty or was written by this function,
    so a mistyped path never wipes unrelated files."""
    import datasets

    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise DataError(
            f"Unknown export format(s) {', '.join(unknown) or '(none given)'}: choose from "
            f"{', '.join(EXPORT_FORMATS)}."
        )
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    frame = split_data(loaded.frame, split, seed=seed)
    table = pd.DataFrame(
        {
            "record_id": frame["record_id"].to_numpy(dtype=np.int64),
            "Statement": frame["statement"].astype(str).to_numpy(),
            "NoShow": np.where(frame["no_show"].to_numpy() == 1, "Yes", "No"),
            "split": frame["split"].astype(str).to_numpy(),
        }
    )
    parts = {name: table[table["split"] == name] for name in SPLIT_NAMES}
    files = [f"statements.{f}" for f in formats] + ["hf/", _EXPORT_MARKER]
    summary: dict[str, Any] = {
        "written_by": "noshow.data.load.export_statements",
        "source": loaded.source,
        "kind": loaded.kind,
        "is_synthetic": loaded.is_synthetic,
        "split_method": split if "split" not in loaded.frame.columns else "file",
        "seed": seed,
        "template_version": TEMPLATE_VERSION if loaded.has_features else None,
        "rows": {name: len(part) for name, part in parts.items()},
        "no_show_rate": {
            name: (float((part["NoShow"] == "Yes").mean()) if len(part) else None)
            for name, part in parts.items()
        },
        "cleaning": loaded.report.to_dict(),
        "files": files,
        "out_dir": str(out_dir),
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    progress_was_off = datasets.are_progress_bars_disabled()
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
        if "parquet" in formats:
            table.to_parquet(tmp / "statements.parquet", index=False)
        if "csv" in formats:
            _csv_safe(table).to_csv(tmp / "statements.csv", index=False)
        dataset = datasets.DatasetDict(
            {
                name: datasets.Dataset.from_pandas(
                    part.drop(columns="split").reset_index(drop=True), preserve_index=False
                )
                for name, part in parts.items()
            }
        )
        datasets.disable_progress_bars()  # one bar per split is noise in a CLI summary
        dataset.save_to_disk(str(tmp / "hf"))
        (tmp / _EXPORT_MARKER).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if not progress_was_off:
            datasets.enable_progress_bars()
    return summary


def _csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as spreadsheet formulas (leading apostrophe)."""
    from noshow.system.files import escape_spreadsheet_cell

    out = table.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype(str).map(escape_spreadsheet_cell)
    return out


def _check_replaceable(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is a file; choose a folder path for --out.")
    if any(out_dir.iterdir()) and not (out_dir / _EXPORT_MARKER).is_file():
        raise DataError(
            f"{out_dir} already holds files that prepare_data did not write; refusing to "
            "replace them. Choose another --out folder or empty this one."
        )


def format_export_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of an `export_statements` summary, for the CLI."""
    rows, rates = summary["rows"], summary["no_show_rate"]
    total = sum(rows.values())
    lines = []
    if summary["is_synthetic"]:
        lines.append("NOTE: SYNTHETIC demo data, not real patients.")
    lines.append(
        f"Prepared {total:,} statements from {summary['source']} -> {summary['out_dir']} "
        f"(split: {summary['split_method']}, template: {summary['template_version'] or 'n/a'})"
    )
    lines.append(f"{'split':<12}{'rows':>10}{'no-show rate':>15}")
    for name in SPLIT_NAMES:
        rate = "-" if rates[name] is None else f"{rates[name]:.1%}"
        lines.append(f"{name:<12}{rows[name]:>10,}{rate:>15}")
    cleaning = summary["cleaning"]
    overall = cleaning["no_show_rate"]
    lines.append(f"{'all':<12}{total:>10,}{overall:>15.1%}")
    lines.append(
        f"Rows read {cleaning['rows_read']:,}; dropped {cleaning['dropped_negative_age']:,} "
        f"with Age < 0 and {cleaning['dropped_negative_lead']:,} booked after the "
        f"appointment day; kept {cleaning['rows_kept']:,}."
    )
    lines.extend(f"Note: {note}" for note in cleaning["notes"])
    lines.append(f"Files: {', '.join(summary['files'])}")
    return "\n".join(lines)
