"""A label event and the checks every input passes before it becomes one.

The store, the exports and the agreement tables share this vocabulary: a label is 1 (no-show)
or 0 (shows up), named "no_show" / "shows_up" in code and "No-show" / "Shows up" where people
read it; an event is a submitted label or a skip, with the fields of `COLUMNS`.

    from noshow.labels.events import normalize_label, hash_statement, labels_fingerprint
    normalize_label("no_show")                   # 1; anything but no_show/shows_up/1/0 raises
    hash_statement(text)                         # ties a label to the exact text shown
    labels_fingerprint({5642903: 1})             # {"count": 1, "hash": ...} for run configs
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

NO_SHOW, SHOWS_UP = 1, 0
LABEL_NAMES = {NO_SHOW: "no_show", SHOWS_UP: "shows_up"}
# What people read: exports, the agreement and disagreement tables, the Label tab.
LABEL_DISPLAY = {NO_SHOW: "No-show", SHOWS_UP: "Shows up"}
_LABEL_ALIASES: dict[Any, int] = {"no_show": NO_SHOW, "shows_up": SHOWS_UP}
ALLOWED_LABELS_TEXT = "'no_show' or 1 (misses the appointment), 'shows_up' or 0 (attends)"
STATUSES = ("submitted", "skipped")
MAX_ANNOTATOR_CHARS = 100
MAX_NOTE_CHARS = 10_000

# An event's fields, in the order the store keeps them.
COLUMNS = (
    "id",
    "record_id",
    "statement_hash",
    "label",
    "status",
    "annotator",
    "created_at",
    "seconds_spent",
    "note",
    "previous_label",
    "submission_id",
)


class LabelError(ValueError):
    """Bad label input or an unusable label database; the message says how to fix it."""


@dataclass(frozen=True)
class LabelEvent:
    """One stored action: a submitted label or a skip."""

    id: int
    record_id: int
    statement_hash: str
    label: int | None
    """1 = no-show, 0 = shows up, None for a skip."""
    status: str
    """'submitted' or 'skipped'."""
    annotator: str
    created_at: str
    """UTC time in ISO 8601."""
    seconds_spent: float
    note: str
    previous_label: int | None
    """This annotator's current label for the record before this event (None if none)."""
    submission_id: str

    @property
    def label_name(self) -> str | None:
        return LABEL_NAMES.get(self.label) if self.label is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hash_statement(statement: str) -> str:
    """First 16 hex digits of the statement's SHA-256: ties a label to the exact text shown."""
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()[:16]


def normalize_label(label: Any) -> int:
    """Map 'no_show'/1 -> 1 and 'shows_up'/0 -> 0; anything else raises LabelError."""
    if isinstance(label, str):
        key = label.strip().lower().replace("-", "_").replace(" ", "_")
        if key in _LABEL_ALIASES:
            return _LABEL_ALIASES[key]
    # bool is an int subclass; True/False would be ambiguous, so refuse it.
    elif not isinstance(label, bool) and is_whole_number(label) and int(label) in (0, 1):
        return int(label)
    raise LabelError(f"Label {label!r} is not allowed: use {ALLOWED_LABELS_TEXT}.")


def normalize_annotator(annotator: Any) -> str:
    if not isinstance(annotator, str) or not annotator.strip():
        raise LabelError(
            "Annotator name is empty: type your name (or initials) before labelling, so "
            "labels from different clinicians can be told apart."
        )
    name = annotator.strip()
    if len(name) > MAX_ANNOTATOR_CHARS:
        raise LabelError(
            f"Annotator name is {len(name)} characters long; use at most {MAX_ANNOTATOR_CHARS}."
        )
    return name


def is_whole_number(value: Any) -> bool:
    """True for anything `float()` reads as a finite whole number (3, 3.0, "3", np.int64(3))."""
    try:
        as_float = float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isfinite(as_float) and as_float == int(as_float)


def normalize_record_id(record_id: Any) -> int:
    """Accept ints, numpy ints, whole floats and digit strings (what UI widgets send)."""
    if isinstance(record_id, bool) or not is_whole_number(record_id):
        raise LabelError(f"Record id {record_id!r} is not a whole number (an AppointmentID).")
    if isinstance(record_id, str):
        try:
            value = int(record_id.strip())
        except ValueError:
            value = int(float(record_id))
    else:
        value = int(record_id)
    if not 0 <= value < 2**63:  # SQLite stores signed 64-bit integers
        raise LabelError(f"Record id {record_id!r} is out of range for an AppointmentID.")
    return value


def labels_fingerprint(labels: Mapping[Any, Any]) -> dict[str, Any]:
    """{"count", "hash"} of a {record_id: label} mapping, independent of insertion order;
    stored in run configs so a result can be traced to the exact labels it used."""
    items = sorted((normalize_record_id(k), normalize_label(v)) for k, v in labels.items())
    payload = json.dumps(items, separators=(",", ":"))
    return {"count": len(items), "hash": hashlib.sha256(payload.encode("utf-8")).hexdigest()}
