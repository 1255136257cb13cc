"""Pure functions behind the Data tab: load + split into the cache, filter, page, look up a
record, render what the models see and describe the cleaning report (the summary plots:
`noshow.app.data_plots`).

Nothing here imports Gradio, so tests call these directly:

    from noshow.app.data_cache import DataCache
    from noshow.app.data_views import load_entry, filter_frame, page_of, record_views
    entry = load_entry(DataCache(), "synthetic", split_method="time")
    rows = filter_frame(entry.frame, split="test", label="No-show", age_min=60)
    table, page, n_pages = page_of(table_view(rows), page=1)

Everything shown names the data by `entry.label` (an upload's own file name), never by the
path the server stored it under.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow.app.data_cache import (
    DEFAULT_SOURCE,
    SYNTHETIC_SOURCE,
    DataCache,
    DataEntry,
    RecordNotFound,
    file_fingerprint,
)
from noshow.system.redact import redact_library_paths

ALL = "All"
LABEL_CHOICES = [ALL, "No-show", "Showed up"]
SPLIT_CHOICES = [ALL, "train", "validation", "test"]
YES_NO_CHOICES = [ALL, "Yes", "No"]
GENDER_CHOICES = [ALL, "F", "M"]
PAGE_SIZE = 50
AGE_MAX = 120  # the filters' upper ends; the real file's oldest patient is 115
LEAD_MAX = 400  # ... and its longest lead time 179 days
STATEMENT_PREVIEW_CHARS = 110
DISPLAY_TOKENIZER = "smollm2-135m-instruct"

TABLE_COLUMNS = [
    ("record_id", "record_id"),
    ("split", "split"),
    ("no_show", "no-show"),
    ("age", "age"),
    ("gender", "gender"),
    ("neighbourhood", "neighbourhood"),
    ("lead_days", "lead days"),
    ("weekday", "weekday"),
    ("sms_received", "SMS"),
    ("scholarship", "scholarship"),
    ("prior_no_shows", "earlier no-shows"),
    ("statement", "statement"),
]
KIND_NAMES = {
    "kaggle": "Kaggle appointments file",
    "statements": "Statement/NoShow file",
    "synthetic": "synthetic demo data",
}
# The column each filter reads (keywords of filter_frame); a filter whose column the loaded
# data lacks (a Statement/NoShow file has no age, gender, ...) is hidden, not silently ignored.
FILTER_COLUMNS = {
    "split": "split",
    "label": "no_show",
    "age_min": "age",
    "age_max": "age",
    "gender": "gender",
    "sms": "sms_received",
    "scholarship": "scholarship",
    "neighbourhood": "neighbourhood",
    "lead_min": "lead_days",
    "lead_max": "lead_days",
}
FILTER_TITLES = {"age": "age", "sms_received": "SMS", "lead_days": "lead days"}
FILTER_DEFAULTS = {
    "split": ALL,
    "label": ALL,
    "age_min": 0,
    "age_max": AGE_MAX,
    "gender": ALL,
    "sms": ALL,
    "scholarship": ALL,
    "neighbourhood": ALL,
    "lead_min": 0,
    "lead_max": LEAD_MAX,
}
# The number filters' labels and ranges, named once: the sliders show them and a refusal
# names the filter and its range.
NUMBER_FILTERS = {
    "age_min": ("Age from", 0, AGE_MAX),
    "age_max": ("Age to", 0, AGE_MAX),
    "lead_min": ("Lead days from", 0, LEAD_MAX),
    "lead_max": ("Lead days to", 0, LEAD_MAX),
}
# The record view's field names, as the table's headers say them.
FIELD_NAMES = {
    "sms_received": "SMS",
    "lead_days": "lead days",
    "prior_no_shows": "earlier no-shows",
    "prior_appointments": "earlier appointments",
    "handicap": "disabilities",
    "scheduled_at": "booked at",
}
YES_NO_COLUMNS = ("sms_received", "scholarship", "hypertension", "diabetes", "alcoholism")
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
LEAD_BUCKETS = [(0, 0, "same day"), (1, 2, "1-2"), (3, 7, "3-7"), (8, 14, "8-14")]
LEAD_BUCKETS += [(15, 30, "15-30"), (31, 60, "31-60"), (61, 10**9, "61+")]


# ----------------------------------------------------------------------------- loading


def _source_identity(source: str | None) -> tuple[str, str]:
    """(cache-key prefix, display label) for a source; files are keyed by content hash."""
    if source is None or source == DEFAULT_SOURCE:
        return DEFAULT_SOURCE, "default (NOSHOW_DATA, data/ or synthetic)"
    if source == SYNTHETIC_SOURCE:
        return SYNTHETIC_SOURCE, "bundled synthetic data"
    path = Path(source)
    if path.is_file():
        try:
            from noshow.data.load import MAX_BYTES

            # Hashing reads the whole file: leave a file over the limit to load_data's message.
            if path.stat().st_size <= MAX_BYTES:
                return f"file:{file_fingerprint(path)}", path.name
        except OSError:
            pass
    return f"path:{source}", path.name or str(source)


def _load(source: str | None) -> Any:
    from noshow.data import load as data

    if source == SYNTHETIC_SOURCE:
        return data.load_data(SYNTHETIC_SOURCE)
    if source == DEFAULT_SOURCE:
        source = None
    return data.load_data(source)


def load_entry(
    cache: DataCache, source: str | None, *, split_method: str = "time", label: str | None = None
) -> DataEntry:
    """Load `source` (a path, "synthetic", or None/"default" for the discovery order), split it
    and keep it in `cache`; a repeat call returns the cached entry.

    Raises `noshow.data.clean.DataError` (message names the file and the problem) for bad input.
    """
    from noshow.data.splits import choose_split

    prefix, shown = _source_identity(source)
    key = f"{prefix}::{split_method}"
    entry = cache.get(key)
    if entry is not None:
        return entry
    loaded = _load(source)
    choice = choose_split(loaded, split_method)  # the same policy as training
    used_method = {
        "given": "from file",
        "random": "random"
        if split_method == "random"
        else f"random ({split_method} split needs columns this file lacks)",
    }.get(choice.method, choice.method)
    split_frame = choice.frame
    entry = DataEntry(
        key=key,
        loaded=loaded,
        frame=split_frame,
        split_method=used_method,
        label=label
        or (shown if source not in (None, DEFAULT_SOURCE) else Path(loaded.source).name),
    )
    return cache.put(entry)


def report_markdown(entry: DataEntry) -> str:
    """The cleaning report and split sizes as Markdown."""
    loaded = entry.loaded
    r = loaded.report
    # entry.label, not loaded.source: an upload's source is the server's temporary path.
    lines = [
        f"**Source:** `{entry.label.replace('`', '')}` ({KIND_NAMES.get(loaded.kind, loaded.kind)})",
        f"**Rows:** {r.rows_kept:,} kept of {r.rows_read:,} read"
        + (
            f" (dropped {r.dropped_negative_age} with negative age, "
            f"{r.dropped_negative_lead} booked after the appointment)"
            if (r.dropped_negative_age or r.dropped_negative_lead)
            else ""
        ),
        f"**No-show rate:** {r.no_show_rate:.1%}",
    ]
    counts = entry.frame["split"].value_counts()
    rates = entry.frame.groupby("split")["no_show"].mean()
    parts = [
        f"{s} {int(counts[s]):,} ({rates[s]:.1%} no-show)" for s in SPLIT_CHOICES[1:] if s in counts
    ]
    lines.append(f"**Split ({entry.split_method}):** " + ", ".join(parts))
    if not loaded.has_features:
        lines.append(
            "_This file has statements only (no tabular columns): the feature filters and "
            "plots are not available._"
        )
    text = "\n\n".join(lines)
    if r.notes:
        text += "\n\n" + "\n".join(f"- {note}" for note in r.notes)
    return text


def neighbourhood_choices(frame: pd.DataFrame) -> list[str]:
    if "neighbourhood" not in frame.columns:
        return [ALL]
    return [ALL, *sorted(frame["neighbourhood"].dropna().astype(str).unique())]


# ----------------------------------------------------------------------------- filtering


def unavailable_filters(frame: pd.DataFrame) -> list[str]:
    """Names of the filters (filter_frame's keywords) whose column `frame` lacks."""
    return [name for name, col in FILTER_COLUMNS.items() if col not in frame.columns]


def _titles(names: list[str]) -> str:
    titles = list(dict.fromkeys(FILTER_TITLES.get(FILTER_COLUMNS[n], n) for n in names))
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def unavailable_filters_note(frame: pd.DataFrame, data_label: str) -> str:
    """Why some filters are hidden ("" when every filter applies)."""
    names = unavailable_filters(frame)
    if not names:
        return ""
    return (
        f"The {_titles(names)} filters are hidden: {data_label} has statements only, "
        "without those columns. Load the Kaggle file to filter by them."
    )


def filter_is_set(name: str, value: Any) -> bool:
    """Whether a filter's value narrows the rows (not All, not a slider's open end)."""
    default = FILTER_DEFAULTS[name]
    if isinstance(default, str):
        return bool(value) and value != default
    v = _number(value)
    return v is not None and (v > default if name.endswith("_min") else v < default)


def ignored_filters_text(frame: pd.DataFrame, values: dict[str, Any]) -> str:
    """' · not applied: ...' for set filters on columns `frame` lacks (API callers can still
    send them), so a filter is never ignored without saying so."""
    names = [n for n in unavailable_filters(frame) if filter_is_set(n, values.get(n))]
    if not names:
        return ""
    return f" · not applied: the {_titles(names)} filter (this data has no such column)"


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(v) else v


def filter_problem(values: dict[str, Any]) -> str | None:
    """Why the number filters in `values` cannot be applied (the first filter out of its
    range, named with the range), or None; an empty box means no bound."""
    for name, (label, lo, hi) in NUMBER_FILTERS.items():
        value = _number(values.get(name))
        if value is not None and not lo <= value <= hi:
            return f"{label} must be between {lo} and {hi} (or empty for no limit); got {value:g}."
    return None


def filter_frame(
    frame: pd.DataFrame,
    *,
    split: str = ALL,
    label: str = ALL,
    age_min: float | None = None,
    age_max: float | None = None,
    gender: str = ALL,
    sms: str = ALL,
    scholarship: str = ALL,
    neighbourhood: str = ALL,
    lead_min: float | None = None,
    lead_max: float | None = None,
) -> pd.DataFrame:
    """Rows matching every given filter; "All"/None means no filter. Filters on columns the
    frame lacks (Statement/NoShow files) are ignored."""
    mask = pd.Series(True, index=frame.index)

    def has(col: str) -> bool:
        return col in frame.columns

    if split and split != ALL and has("split"):
        mask &= frame["split"] == split
    if label and label != ALL:
        mask &= frame["no_show"] == (1 if label == "No-show" else 0)
    for col, lo, hi in (("age", age_min, age_max), ("lead_days", lead_min, lead_max)):
        lo, hi = _number(lo), _number(hi)
        if has(col) and lo is not None:
            mask &= frame[col] >= lo
        if has(col) and hi is not None:
            mask &= frame[col] <= hi
    if gender and gender != ALL and has("gender"):
        mask &= frame["gender"] == gender
    for col, choice in (("sms_received", sms), ("scholarship", scholarship)):
        if choice and choice != ALL and has(col):
            mask &= frame[col] == (1 if choice == "Yes" else 0)
    if neighbourhood and neighbourhood != ALL and has("neighbourhood"):
        mask &= frame["neighbourhood"].astype(str) == neighbourhood
    return frame[mask]


def table_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the table shows, with readable values and shortened statements."""
    cols = [(c, name) for c, name in TABLE_COLUMNS if c in frame.columns]
    view = frame[[c for c, _ in cols]].copy()
    view.columns = [name for _, name in cols]
    view["no-show"] = np.where(frame["no_show"].to_numpy() == 1, "Yes", "No")
    for col in ("SMS", "scholarship"):
        if col in view.columns:
            view[col] = np.where(view[col].to_numpy() == 1, "Yes", "No")
    if "statement" in view.columns:
        text = view["statement"].astype(str)
        long = text.str.len() > STATEMENT_PREVIEW_CHARS
        view["statement"] = text.where(~long, text.str.slice(0, STATEMENT_PREVIEW_CHARS) + "…")
    return view


def page_of(
    frame: pd.DataFrame, page: Any = 1, page_size: int = PAGE_SIZE
) -> tuple[pd.DataFrame, int, int]:
    """(rows of page `page`, the page actually shown, number of pages); pages count from 1
    and out-of-range pages are clamped."""
    n_pages = max(1, -(-len(frame) // page_size))
    p = int(min(max(_number(page) or 1, 1), n_pages))  # not a number (or 0): page 1
    start = (p - 1) * page_size
    return frame.iloc[start : start + page_size], p, n_pages


def page_caption(total: int, page: int, n_pages: int, page_size: int = PAGE_SIZE) -> str:
    if total == 0:
        return "No rows match these filters."
    first = (page - 1) * page_size + 1
    last = min(page * page_size, total)
    return f"Rows {first:,}-{last:,} of {total:,} matching · page {page} of {n_pages}"


# ----------------------------------------------------------------------------- one record


@dataclass
class RecordView:
    """One record as the models see it."""

    record_id: int
    statement: str
    generative_prompt: str
    classifier_input: str
    details: str  # Markdown: label, split and the tabular fields


def find_record(frame: pd.DataFrame, record_id: Any, *, table: str = "the table") -> pd.Series:
    """The row with `record_id`, else RecordNotFound; `table` is where the ids are listed."""
    rid = _number(record_id)
    if rid is None:
        raise RecordNotFound(f"Enter a record id (the first column of {table}).")
    hits = frame.index[frame["record_id"].to_numpy() == int(rid)]
    if len(hits) == 0:
        raise RecordNotFound(
            f"Record {int(rid)} is not in the loaded data ({len(frame):,} rows). "
            f"Pick a row from {table}."
        )
    return frame.loc[hits[0]]


@functools.lru_cache(maxsize=2)
def load_display_tokenizer(name: str = DISPLAY_TOKENIZER) -> Any:
    """The tokenizer whose chat template renders the generative prompt (cached)."""
    from noshow.modeling.models import load_tokenizer

    return load_tokenizer(name)


def record_views(row: pd.Series, tokenizer: Any | None = None) -> RecordView:
    """Statement, generative prompt (chat template) and classifier input for one row.

    Without a `tokenizer`, the bundled model's tokenizer is used; if it cannot be loaded,
    the prompt box says why instead of failing the whole view.
    """
    from noshow.data.statements import render_classifier_input, render_generative_prompt

    statement = str(row["statement"])
    try:
        tok = tokenizer if tokenizer is not None else load_display_tokenizer()
        prompt = render_generative_prompt(statement, tok)
    except Exception as e:  # noqa: BLE001 - the other two views are still useful
        prompt = f"(cannot render the chat prompt: {redact_library_paths(str(e))})"
    # The same words as the table: "no-show: Yes", flags as Yes/No, not 1/0.
    fields: list[tuple[str, Any]] = [("no-show", "Yes" if int(row["no_show"]) == 1 else "No")]
    if "split" in row.index:
        fields.append(("split", row["split"]))
    for col in (
        "patient_id",
        "appointment_day",
        "scheduled_at",
        "age",
        "gender",
        "neighbourhood",
        "lead_days",
        "weekday",
        "sms_received",
        "scholarship",
        "hypertension",
        "diabetes",
        "alcoholism",
        "handicap",
        "prior_appointments",
        "prior_no_shows",
    ):
        if col in row.index:
            value = row[col]
            if isinstance(value, pd.Timestamp):
                value = value.strftime("%Y-%m-%d %H:%M") if col == "scheduled_at" else value.date()
            elif col in YES_NO_COLUMNS and not pd.isna(value):
                value = "Yes" if int(value) == 1 else "No"
            fields.append((FIELD_NAMES.get(col, col.replace("_", " ")), value))
    details = " · ".join(f"**{k}:** {v}" for k, v in fields)
    return RecordView(
        record_id=int(row["record_id"]),
        statement=statement,
        generative_prompt=prompt,
        classifier_input=render_classifier_input(statement),
        details=details,
    )
