"""Label exports for people and imports back into a store: CSV, JSON lines and a Hugging Face
data set.

    from noshow.labels.export import export_csv, import_events
    export_csv(store, "labels.csv", statements={5642903: text})   # label names + statement text
    import_events(LabelStore("other.sqlite"), "labels.csv")

Rules, each covered by tests/test_labels.py:
- Exports are for people: labels as "No-show" / "Shows up", the annotator, and the
  statement's text when the caller passes the loaded data's statements (the store keeps only
  a hash of what was shown; a text whose hash differs is left out, never guessed).
  `import_events` reads these files, and those with 1/0 labels (the first export format),
  so no label file people kept becomes unreadable.
- Exports are written to a temporary file and moved into place. CSV text cells that a
  spreadsheet would run as a formula (starting with =, +, -, @, tab or CR) get a leading
  apostrophe; so that the escape can be undone exactly, a cell that already starts with an
  apostrophe gets one more. `import_events` strips exactly one leading apostrophe from those
  text columns of a CSV, so export -> import round-trips byte for byte. JSONL keeps raw text.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from noshow.labels.events import (
    COLUMNS,
    LABEL_DISPLAY,
    STATUSES,
    LabelError,
    hash_statement,
    is_whole_number,
    normalize_annotator,
    normalize_label,
    normalize_record_id,
)
from noshow.labels.store import LabelStore
from noshow.system.files import escape_spreadsheet_cell, unescape_spreadsheet_cell, write_atomic

# The export's columns: what a reader needs first, then the audit fields. `statement` is the
# text the annotator read (from the loaded data, checked against statement_hash).
EXPORT_COLUMNS = (
    "id",
    "record_id",
    "annotator",
    "label",
    "status",
    "statement",
    "note",
    "previous_label",
    "seconds_spent",
    "created_at",
    "statement_hash",
    "submission_id",
)
# Columns holding free or client-supplied text: the only ones escaped for spreadsheets.
_TEXT_COLUMNS = (
    "statement",
    "statement_hash",
    "status",
    "annotator",
    "created_at",
    "note",
    "submission_id",
)


def export_rows(
    store: LabelStore, statements: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """Every event of `store` as a dict of EXPORT_COLUMNS: labels as "No-show" / "Shows up"
    (None for a skip), and `statement` the text from `statements` ({record_id: text}, usually
    the loaded data's) when its hash is the one stored with the event, else None."""
    rows = []
    for event in store.events().itertuples(index=False):
        plain = _plain(event._asdict())
        text = (statements or {}).get(plain["record_id"])
        shown = isinstance(text, str) and hash_statement(text) == plain["statement_hash"]
        plain["statement"] = text if shown else None
        for column in ("label", "previous_label"):
            if plain[column] is not None:
                plain[column] = LABEL_DISPLAY[plain[column]]
        rows.append({c: plain[c] for c in EXPORT_COLUMNS})
    return rows


def export_csv(
    store: LabelStore, path: str | Path, statements: Mapping[int, str] | None = None
) -> Path:
    """Write all events of `store` to a CSV (UTF-8 with BOM so spreadsheets read accents
    right); see `export_rows` for the columns. Formula-looking text cells are escaped with a
    leading apostrophe (see module doc)."""
    rows = export_rows(store, statements)

    def write(f: Any) -> None:
        writer = csv.writer(f)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            writer.writerow(_csv_cells(row))

    return _write_atomic(Path(path), write, encoding="utf-8-sig")


def export_jsonl(
    store: LabelStore, path: str | Path, statements: Mapping[int, str] | None = None
) -> Path:
    """Write all events of `store` as JSON lines (columns of `export_rows`), text kept raw."""
    rows = export_rows(store, statements)

    def write(f: Any) -> None:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return _write_atomic(Path(path), write, encoding="utf-8")


def import_events(store: LabelStore, path: str | Path) -> int:
    """Add to `store` the events of a CSV or JSONL written by `export_csv`/`export_jsonl`.

    Events keep their ids and submission ids; an event whose submission id is already
    stored is ignored (importing twice adds nothing), and one whose id is taken by a
    different event is appended with a new id. All or nothing: a bad row adds no events.
    Returns the number of events added.
    """
    path = Path(path)
    rows = _read_export(path)
    events = [_validate_import_row(r, path, n) for n, r in enumerate(rows, start=2)]
    return store.add_events(events)


def to_dataset(store: LabelStore) -> Any:
    """All events of `store` as a `datasets.Dataset` (the columns of `store.events()`)."""
    import datasets

    return datasets.Dataset.from_pandas(store.events(), preserve_index=False)


def push_to_hub(
    store: LabelStore, repo_id: str, token: str | None = None, private: bool = True
) -> Any:
    """Upload the events of `store` as a (private by default) Hugging Face data set."""
    token = token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise LabelError(
            "Pushing labels to the Hugging Face Hub needs a token with write access: pass "
            "token=... or set HF_TOKEN (create one at https://huggingface.co/settings/tokens)."
        )
    if not isinstance(repo_id, str) or "/" not in repo_id.strip("/"):
        raise LabelError(f"repo_id must look like 'user/labels', got {repo_id!r}.")
    dataset = to_dataset(store)
    try:
        return dataset.push_to_hub(repo_id, token=token, private=private)
    except Exception as e:
        # Hub errors can echo request headers: never let the token reach a message or log.
        detail = f"{type(e).__name__}: {e}".replace(token, "***")
        raise LabelError(
            f"Could not push labels to {repo_id}: {detail}. Check the token's write access "
            "and the network; labels stay safe in the local database."
        ) from None


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """pandas/numpy scalars -> JSON-friendly Python values (NA -> None)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            out[key] = None
        elif key in ("id", "record_id", "label", "previous_label"):
            out[key] = int(value)
        elif key == "seconds_spent":
            out[key] = float(value)
        else:
            out[key] = str(value)
    return out


def _csv_cells(row: Mapping[str, Any]) -> list[str]:
    cells = []
    for column in EXPORT_COLUMNS:
        value = row[column]
        if value is None:
            cells.append("")
        elif column in _TEXT_COLUMNS:
            cells.append(escape_spreadsheet_cell(value))
        else:
            cells.append(repr(value) if isinstance(value, float) else str(value))
    return cells


def _write_atomic(path: Path, write: Callable[[Any], None], *, encoding: str) -> Path:
    """`files.write_atomic` for an export (a reader never sees half of it), with the
    failure to create it said as a LabelError."""
    try:
        return write_atomic(path, write, encoding=encoding, newline="")
    except OSError as e:
        raise LabelError(f"Cannot write the export {path}: {e.strerror}.") from e


def _read_export(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise LabelError(
            f"Cannot import {path}: expected a .csv or .jsonl file written by export_csv or "
            "export_jsonl."
        )
    try:
        if suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                missing = set(COLUMNS) - set(reader.fieldnames or ())
                if missing:
                    raise LabelError(
                        f"Cannot import {path}: missing column(s) {sorted(missing)}; expected "
                        f"the columns written by export_csv: {', '.join(COLUMNS)}."
                    )
                rows: list[dict[str, Any]] = []
                for raw in reader:
                    row: dict[str, Any] = {}
                    for column in COLUMNS:
                        cell = raw[column] if raw[column] is not None else ""
                        if column in _TEXT_COLUMNS:
                            row[column] = unescape_spreadsheet_cell(cell)
                        else:
                            row[column] = None if cell == "" else cell
                    rows.append(row)
                return rows
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise LabelError(
                        f"Cannot import {path}: line {n} is not JSON ({e.msg})."
                    ) from e
        return rows
    except OSError as e:
        raise LabelError(f"Cannot read {path}: {e.strerror}.") from e
    except UnicodeDecodeError as e:
        raise LabelError(f"Cannot import {path}: it is not UTF-8 text.") from e


def _validate_import_row(row: Any, path: Path, line: int) -> dict[str, Any]:
    where = f"{path} (row {line})"
    if not isinstance(row, dict) or set(COLUMNS) - set(row):
        raise LabelError(f"Cannot import {where}: expected the fields {', '.join(COLUMNS)}.")
    try:
        event = {
            "id": normalize_record_id(row["id"]),
            "record_id": normalize_record_id(row["record_id"]),
            "statement_hash": str(row["statement_hash"]),
            "label": _import_label(row["label"]),
            "status": str(row["status"]),
            "annotator": normalize_annotator(row["annotator"]),
            "created_at": str(row["created_at"]),
            "seconds_spent": float(row["seconds_spent"]),
            "note": "" if row["note"] is None else str(row["note"]),
            "previous_label": _import_label(row["previous_label"]),
            "submission_id": str(row["submission_id"]),
        }
    except (LabelError, TypeError, ValueError) as e:
        raise LabelError(f"Cannot import {where}: {e}") from e
    if event["status"] not in STATUSES or (event["status"] == "submitted") != (
        event["label"] is not None
    ):
        raise LabelError(
            f"Cannot import {where}: status must be 'submitted' with a label or 'skipped' "
            f"without one, got status {event['status']!r} and label {event['label']!r}."
        )
    if not event["submission_id"].strip() or not math.isfinite(event["seconds_spent"]):
        raise LabelError(f"Cannot import {where}: empty submission_id or bad seconds_spent.")
    return event


def _import_label(value: Any) -> int | None:
    """A label cell of an export: "No-show" / "Shows up", or 1 / 0 (the first export format)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and not is_whole_number(value):
        return normalize_label(value)
    return normalize_label(int(float(value)))
