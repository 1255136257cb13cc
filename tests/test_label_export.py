"""Label exports for people and imports back (noshow/labels/export.py): exact round trips,
spreadsheet-safe CSV cells, label names and statement text, atomic files, all-or-nothing
imports, and the Hugging Face data set.

Run: .venv/bin/python -m pytest -q tests/test_label_export.py
"""

from __future__ import annotations

import csv
import json
import traceback
from pathlib import Path

import pandas as pd
import pytest

from noshow.labels.events import COLUMNS, LabelError
from noshow.labels.export import (
    EXPORT_COLUMNS,
    export_csv,
    export_jsonl,
    export_rows,
    import_events,
    push_to_hub,
    to_dataset,
)
from noshow.labels.store import LabelStore

TRICKY_NOTES = [
    "plain",
    "commas, and more, commas",
    'she said "I will come"',
    "two\nlines",
    "windows\r\nline end",
    "ünïcødé — São Paulo, 日本語 😀",
    '=HYPERLINK("http://evil.example","click")',
    "+1 555",
    "-5 days",
    "@SUM(A1)",
    "\tleading tab",
    "'already quoted",
    "''two quotes",
    "",
]


@pytest.fixture
def store(tmp_path: Path):
    with LabelStore(tmp_path / "labels" / "labels.sqlite", valid_record_ids=range(1000)) as s:
        yield s


def _fill_with_tricky_notes(store: LabelStore) -> None:
    for i, note in enumerate(TRICKY_NOTES):
        store.submit(
            i, i % 2, f"annotator {i % 3}", statement=f"s{i}", note=note, seconds_spent=i / 3
        )
    store.skip(0, "annotator 0", statement="s0", note="=cmd|' /C calc'!A0")
    store.submit(0, 1, "-dash name", statement="s0", submission_id="=sid")


TRICKY_STATEMENTS = {i: f"s{i}" for i in range(len(TRICKY_NOTES))}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_round_trips_exactly(store, tmp_path, fmt):
    _fill_with_tricky_notes(store)
    out = tmp_path / f"labels.{fmt}"
    {"csv": export_csv, "jsonl": export_jsonl}[fmt](store, out, statements=TRICKY_STATEMENTS)
    with LabelStore(tmp_path / "fresh.sqlite") as fresh:
        assert import_events(fresh, out) == len(TRICKY_NOTES) + 2
        pd.testing.assert_frame_equal(fresh.events(), store.events())
        assert import_events(fresh, out) == 0  # importing twice adds nothing
        assert len(fresh.events()) == len(TRICKY_NOTES) + 2


def test_csv_export_neutralises_formulas_for_spreadsheets(store, tmp_path):
    _fill_with_tricky_notes(store)
    store.submit(7, 1, "ana", statement="=1+1 statement")
    out = export_csv(store, tmp_path / "labels.csv", statements={7: "=1+1 statement"})
    with open(out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(EXPORT_COLUMNS)
    cells = [cell for row in rows[1:] for cell in row]
    dangerous = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert dangerous == []
    assert '\'=HYPERLINK("http://evil.example","click")' in cells
    assert "'=sid" in cells and "'-dash name" in cells and "'=1+1 statement" in cells
    numbers = {row[EXPORT_COLUMNS.index("seconds_spent")] for row in rows[1:]}
    assert "0.3333333333333333" in numbers  # numbers are never escaped


def test_exports_name_the_labels_and_carry_the_statement_text_and_annotator(store, tmp_path):
    store.submit(1, "no_show", "Dr Ana", statement="A 30-year-old woman ...")
    store.submit(1, "shows_up", "Dr Ana", statement="A 30-year-old woman ...")  # a correction
    store.skip(2, "Dr Bea", statement="A 70-year-old man ...")
    store.submit(3, "shows_up", "Dr Bea", statement="the text shown then")
    # Record 3's statement has changed since it was labelled: its text is not put in.
    statements = {1: "A 30-year-old woman ...", 2: "A 70-year-old man ...", 3: "new text"}
    with open(export_csv(store, tmp_path / "l.csv", statements), encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    jsonl = export_jsonl(store, tmp_path / "l.jsonl", statements).read_text(encoding="utf-8")
    for got in (rows, [json.loads(line) for line in jsonl.splitlines()]):
        table = [
            (r["record_id"], r["annotator"], r["label"], r["previous_label"], r["statement"])
            for r in got
        ]
        blank = "" if got is rows else None
        assert [tuple(str(v) if isinstance(v, int) else v for v in t) for t in table] == [
            ("1", "Dr Ana", "No-show", blank, "A 30-year-old woman ..."),
            ("1", "Dr Ana", "Shows up", "No-show", "A 30-year-old woman ..."),
            ("2", "Dr Bea", blank, blank, "A 70-year-old man ..."),
            ("3", "Dr Bea", "Shows up", blank, blank),
        ]
    assert export_rows(store)[0]["statement"] is None  # no data given: no text, no guess


def test_import_reads_older_exports_with_1_0_labels(store, tmp_path):
    old = tmp_path / "old.csv"
    with open(old, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerow([1, 5, "abc", 1, "submitted", "ana", "2024-01-01", 1.5, "", "", "a"])
        writer.writerow([2, 5, "abc", 0, "submitted", "ana", "2024-01-02", 2.0, "", 1, "b"])
    assert import_events(store, old) == 2
    assert store.events()[["label", "previous_label"]].astype(object).values.tolist() == [
        [1, pd.NA],
        [0, 1],
    ]


def test_jsonl_export_keeps_raw_text(store, tmp_path):
    store.submit(1, 1, "ana", statement="s", note='=HYPERLINK("x")')
    out = export_jsonl(store, tmp_path / "labels.jsonl")
    (line,) = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["note"] == '=HYPERLINK("x")'


def test_export_replaces_file_atomically_and_leaves_no_temp_files(store, tmp_path):
    store.submit(1, 1, "ana", statement="s")
    out = tmp_path / "exports" / "labels.csv"
    out.parent.mkdir()
    out.write_text("old content")
    export_csv(store, out)
    assert "old content" not in out.read_text(encoding="utf-8-sig")
    assert [p.name for p in out.parent.iterdir()] == ["labels.csv"]


def test_import_appends_with_new_id_when_id_taken(tmp_path):
    with LabelStore(tmp_path / "a.sqlite") as a, LabelStore(tmp_path / "b.sqlite") as b:
        a.submit(1, 1, "ana", statement="s")
        b.submit(2, 0, "bob", statement="t")
        export_jsonl(a, tmp_path / "a.jsonl")
        assert import_events(b, tmp_path / "a.jsonl") == 1
        merged = b.events()
        assert merged["id"].tolist() == [1, 2]
        assert merged["annotator"].tolist() == ["bob", "ana"]


def test_import_of_a_bad_file_adds_nothing(store, tmp_path):
    good = {c: None for c in COLUMNS} | {
        "id": 1,
        "record_id": 1,
        "statement_hash": "h",
        "label": 1,
        "status": "submitted",
        "annotator": "ana",
        "created_at": "2024-01-01T00:00:00+00:00",
        "seconds_spent": 1.0,
        "note": "",
        "submission_id": "x",
    }
    bad = dict(good, id=2, submission_id="y", label=7)
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(LabelError, match=r"bad.jsonl \(row 3\).*not allowed"):
        import_events(store, path)
    assert store.events().empty
    with pytest.raises(LabelError, match="expected a .csv or .jsonl"):
        import_events(store, tmp_path / "labels.xlsx")


def test_to_dataset_has_one_row_per_event_and_the_event_columns(store):
    store.submit(1, 1, "ana", statement="s", note="n")
    store.skip(2, "ana", statement="t")
    dataset = to_dataset(store)
    assert dataset.column_names == list(COLUMNS)
    assert dataset.num_rows == 2
    assert dataset["label"] == [1, None] and dataset["status"] == ["submitted", "skipped"]


def test_push_to_hub_without_token_is_refused(store, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(LabelError, match="needs a token with write access"):
        push_to_hub(store, "me/labels")


def test_push_to_hub_failure_never_shows_the_token(store, monkeypatch):
    store.submit(1, 1, "ana", statement="s")
    secret = "hf_not_a_real_token_123456"

    def fail(self, repo_id, token=None, private=True):
        raise RuntimeError(f"401 for request with Authorization: Bearer {token}")

    import datasets

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", fail)
    with pytest.raises(LabelError, match="Could not push labels to me/labels") as info:
        push_to_hub(store, "me/labels", token=secret)
    assert secret not in str(info.value)
    printed = "".join(traceback.format_exception(info.value))  # what a log would show
    assert "401 for request" in printed and secret not in printed
