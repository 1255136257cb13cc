"""Load appointment data: find the file, read it (CSV or Parquet), recognise its form and
hand it to the cleaning, caching the result.

Three inputs give one shape of DataFrame (the columns are `noshow.data.clean.FEATURE_COLUMNS`):
- the original Kaggle CSV (`KaggleV2-May-2016.csv`; Parquet with the same columns works too),
- the seed project's "modified" form: CSV or Parquet with `Statement` (text) and `NoShow`
  ("Yes"/"No"), optionally `split` (train/validation/test) and `record_id`,
- synthetic demo data (`noshow.data.synthetic`), always flagged `is_synthetic`.

    from noshow.data.load import load_data
    loaded = load_data()                    # NOSHOW_DATA > data/KaggleV2-May-2016.csv > synthetic
    loaded = load_data("path/to/file.csv")  # or "synthetic" to force the demo data

Decisions worth knowing:
- Bad input raises `DataError` naming the file and the problem. CSV positions are file line
  numbers (the header is line 1); Parquet positions are row numbers (first row = 1).
- Text must be UTF-8 (a byte-order mark is fine). Other encodings are refused rather than
  guessed, because a wrong guess silently garbles neighbourhood names.
- Parsed results are cached by (path, size, modification time); callers get copies.
- `load_data` never writes anything (`noshow.data.export` writes the prepared data set).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from noshow.data.clean import (
    KAGGLE_COLUMNS,
    STATEMENT_COLUMNS,
    CleaningReport,
    DataError,
    clean_kaggle_frame,
    clean_statement_frame,
)
from noshow.system.paths import REPO

DEFAULT_DATA_PATH = REPO / "data" / "KaggleV2-May-2016.csv"
DATA_ENV_VAR = "NOSHOW_DATA"
SYNTHETIC_SOURCE = "synthetic"  # pass as `source` to force the demo data
SYNTHETIC_ROWS = 6000
# Largest file load_data reads by default (the real file is 10.7 MB); the app refuses bigger
# uploads with the same figure, before they reach the disk.
MAX_BYTES = 200_000_000
SYNTHETIC_SEED = 0

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
        frame, report = clean_statement_frame(raw, name, position)
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
