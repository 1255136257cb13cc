"""Tests for the clinician labels (noshow/labels/: the store, exports and agreement) on real
SQLite files in tmp_path.

Run: .venv/bin/python -m pytest -q tests/test_labels.py
"""

from __future__ import annotations

import csv
import json
import math
import random
import sqlite3
import threading
import traceback
from pathlib import Path

import pandas as pd
import pytest

from noshow.labels.agreement import cohen_kappa_table, describe_kappa, disagreements
from noshow.labels.events import COLUMNS, LabelError, hash_statement, labels_fingerprint
from noshow.labels.export import (
    EXPORT_COLUMNS,
    export_csv,
    export_jsonl,
    export_rows,
    import_events,
    push_to_hub,
    to_dataset,
)
from noshow.labels.store import LabelStore, default_label_db, space_data_dir

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
def db(tmp_path: Path) -> Path:
    return tmp_path / "labels" / "labels.sqlite"


@pytest.fixture
def store(db: Path):
    with LabelStore(db, valid_record_ids=range(1000)) as s:
        yield s


def folder_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- where the file lives


def test_default_label_db_prefers_env_then_home_then_space(tmp_path, monkeypatch):
    space = tmp_path / "space-data"
    space.mkdir()
    monkeypatch.setenv("NOSHOW_LABELS_DB", str(tmp_path / "explicit.sqlite"))
    monkeypatch.setenv("NOSHOW_HOME", str(tmp_path / "home"))
    assert default_label_db(space_root=space) == tmp_path / "explicit.sqlite"
    monkeypatch.delenv("NOSHOW_LABELS_DB")
    assert default_label_db(space_root=space) == tmp_path / "home/labels/labels.sqlite"
    monkeypatch.delenv("NOSHOW_HOME")
    assert default_label_db(space_root=space) == space / "noshow/labels/labels.sqlite"
    repo = Path(__file__).resolve().parents[1]
    no_space = tmp_path / "missing"
    assert default_label_db(space_root=no_space) == repo / ".noshow/labels/labels.sqlite"


def test_space_data_dir_is_none_without_a_writable_folder(tmp_path):
    assert space_data_dir(tmp_path / "missing") is None
    assert space_data_dir(tmp_path) == tmp_path / "noshow"


# ---------------------------------------------------------------- writing and reading


def test_new_store_uses_wal_and_records_schema_version(store, db):
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    finally:
        conn.close()


def test_submit_stores_event_with_all_fields(store):
    event = store.submit(
        7, "no_show", "  Dr Ana ", statement="A statement.", seconds_spent=3.5, note="sure"
    )
    assert event.label == 1 and event.label_name == "no_show"
    assert event.status == "submitted" and event.annotator == "Dr Ana"
    assert (
        event.statement_hash == hash_statement("A statement.") and len(event.statement_hash) == 16
    )
    assert event.created_at.endswith("+00:00")
    stored = store.events().iloc[0].to_dict()
    assert stored["record_id"] == 7 and stored["seconds_spent"] == 3.5
    assert stored["note"] == "sure" and stored["submission_id"] == event.submission_id
    assert pd.isna(stored["previous_label"])


def test_label_aliases_map_to_one_and_zero(store):
    labels = [
        store.submit(i, lab, "ana", statement="s").label
        for i, lab in enumerate(["no_show", "shows_up", 1, 0, "No-show", "shows up"])
    ]
    assert labels == [1, 0, 1, 0, 1, 0]


def test_latest_event_wins_and_correction_records_previous_label(store):
    store.submit(5, "no_show", "ana", statement="s")
    store.submit(5, "no_show", "bob", statement="s")
    correction = store.submit(5, "shows_up", "ana", statement="s")  # Back, then relabel
    assert correction.previous_label == 1
    skip = store.skip(5, "ana", statement="s")
    assert skip.label is None and skip.status == "skipped" and skip.previous_label == 0
    relabel = store.submit(5, 0, "ana", statement="s")
    assert relabel.previous_label is None  # the skip had no label
    current = store.current_labels().set_index("annotator")
    assert current.loc["ana", "label"] == 0 and current.loc["ana", "id"] == relabel.id
    assert current.loc["bob", "label"] == 1
    assert len(store.events()) == 5  # nothing overwritten


def test_double_submit_with_same_submission_id_stores_once(store):
    first = store.submit(3, 1, "ana", statement="s", submission_id="click-1")
    second = store.submit(3, 1, "ana", statement="s", submission_id="click-1")
    assert first is not None and second is None
    assert store.events()["submission_id"].tolist() == ["click-1"]


def test_twenty_annotators_submitting_at_once_store_exactly_1000_events(db):
    store = LabelStore(db, valid_record_ids=range(50), busy_timeout_s=30)
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def annotate(i: int) -> None:
        try:
            barrier.wait()
            for record in range(50):
                sid = f"a{i}-r{record}"
                store.submit(record, record % 2, f"annotator {i}", statement="s", submission_id=sid)
                # Every click twice: the double click must not add an event.
                store.submit(record, record % 2, f"annotator {i}", statement="s", submission_id=sid)
        except BaseException as e:  # surfaced below; a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = store.events()
    assert len(events) == 1000
    assert events["submission_id"].is_unique and events["id"].is_unique
    pairs = set(zip(events["annotator"], events["record_id"], strict=True))
    assert pairs == {(f"annotator {i}", r) for i in range(20) for r in range(50)}
    store.close()


def test_store_survives_restart(db):
    first = LabelStore(db)
    first.submit(1, 1, "ana", statement="s", note="n")
    first.submit(1, 0, "ana", statement="s")
    first.skip(2, "bob", statement="t")
    events, current = first.events(), first.current_labels()
    first.close()
    second = LabelStore(db)
    pd.testing.assert_frame_equal(second.events(), events)
    pd.testing.assert_frame_equal(second.current_labels(), current)
    second.close()


def test_events_table_refuses_update_and_delete(store, db):
    store.submit(1, 1, "ana", statement="s")
    conn = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE label_events SET label = 0")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM label_events")
    finally:
        conn.close()
    assert store.events()["label"].tolist() == [1]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["", "   ", None])
def test_empty_annotator_is_refused_and_nothing_stored(store, name):
    with pytest.raises(LabelError, match="Annotator name is empty"):
        store.submit(1, 1, name, statement="s")
    assert store.events().empty


def test_unknown_record_id_is_refused_and_nothing_stored(store):
    with pytest.raises(LabelError, match="Record id 5000 is not in the loaded data set"):
        store.submit(5000, 1, "ana", statement="s")
    with pytest.raises(LabelError, match="not a whole number"):
        store.skip("abc", "ana", statement="s")
    assert store.events().empty


def test_valid_record_ids_callable_is_asked_at_each_submit(db):
    loaded = {1, 2}
    store = LabelStore(db, valid_record_ids=lambda: loaded)
    store.submit(1, 1, "ana", statement="s")
    loaded.clear()
    loaded.add(3)  # the app loaded another data set
    with pytest.raises(LabelError, match="Record id 1 is not in the loaded data set"):
        store.submit(1, 1, "ana", statement="s")
    store.submit(1, 1, "ana", statement="s", valid_record_ids=[1])  # per-call override
    assert len(store.events()) == 2
    store.close()


@pytest.mark.parametrize("label", ["yes", 2, -1, None, True, 0.5, "maybe"])
def test_label_outside_allowed_set_is_refused_and_says_what_is_allowed(store, label):
    with pytest.raises(LabelError, match="is not allowed: use 'no_show' or 1") as info:
        store.submit(1, label, "ana", statement="s")
    assert "'shows_up' or 0" in str(info.value)
    assert store.events().empty


# ---------------------------------------------------------------- broken databases


def test_locked_database_gives_clear_error_and_keeps_events(db):
    store = LabelStore(db, busy_timeout_s=0.2)
    store.submit(1, 1, "ana", statement="s")
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LabelError, match="busy/locked by another process") as info:
            store.submit(2, 1, "ana", statement="s")
        assert str(db.resolve()) in str(info.value)
        assert store.events()["record_id"].tolist() == [1]  # reads still work under WAL
        LabelStore(db, busy_timeout_s=0.2).close()  # and so does opening the store
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.submit(2, 1, "ana", statement="s")  # works once the lock is released
    assert store.events()["record_id"].tolist() == [1, 2]
    store.close()


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(8192))


def _filled_store(path: Path) -> None:
    with LabelStore(path) as s:
        for i in range(40):  # long notes: several pages without many slow commits
            s.submit(i, i % 2, "ana", statement="s", note="x" * 2000)


def _truncated_store(path: Path) -> None:
    _filled_store(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scribbled_pages(path: Path) -> None:
    """Same size and a valid header, so only SQLite's own checks can notice."""
    _filled_store(path)
    data = bytearray(path.read_bytes())
    data[4096:] = random.Random(2).randbytes(len(data) - 4096)
    path.write_bytes(bytes(data))


def _header_then_garbage(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + random.Random(1).randbytes(8192))


def _empty_file(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [_random_bytes, _truncated_store, _scribbled_pages, _header_then_garbage, _empty_file],
)
def test_corrupt_file_is_refused_and_left_byte_for_byte_unchanged(tmp_path, damage):
    path = tmp_path / "labels.sqlite"
    damage(path)
    before, listing = path.read_bytes(), folder_listing(tmp_path)
    with pytest.raises(LabelError, match="NOT modified or recreated") as info:
        LabelStore(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert folder_listing(tmp_path) == listing  # nothing created beside or in its place


def test_foreign_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE patients (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(LabelError, match="not a noshow label store"):
        LabelStore(path)
    assert path.read_bytes() == before


def test_newer_schema_version_is_refused(db):
    LabelStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(LabelError, match="schema version 99.*Upgrade noshow"):
        LabelStore(db)


# ---------------------------------------------------------------- export / import


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
    assert folder_listing(out.parent) == ["labels.csv"]


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


# ---------------------------------------------------------------- status, progress, consensus


def test_status_for_and_progress_count_mine_and_everyone(store):
    store.submit(1, 1, "ana", statement="s")
    store.skip(2, "ana", statement="s")
    store.submit(3, 0, "bob", statement="s")
    store.submit(9, 0, "bob", statement="s")  # outside the queue: not counted
    assert store.status_for("ana", [1, 2, 3]) == {1: "submitted", 2: "skipped", 3: "pending"}
    assert store.progress("ana", [1, 2, 3, 4]) == {
        "mine_submitted": 1,
        "mine_skipped": 1,
        "mine_done": 2,
        "mine_pending": 2,
        "total": 4,
        "everyone_done": 2,
        "annotators": 2,
    }


def test_consensus_majority_with_ties_going_to_latest(store):
    store.submit(1, 1, "ana", statement="s")
    store.submit(1, 1, "bob", statement="s")
    store.submit(1, 0, "cy", statement="s")  # 2 vs 1 -> no-show
    store.submit(2, 1, "ana", statement="s")
    store.submit(2, 0, "bob", statement="s")  # tie -> latest (bob: shows up)
    store.submit(3, 0, "ana", statement="s")
    store.submit(3, 1, "ana", statement="s")  # ana's correction replaces her old label
    store.skip(4, "ana", statement="s")  # skips give no label
    assert store.consensus_labels() == {1: 1, 2: 0, 3: 1}
    assert store.consensus_labels("latest") == {1: 0, 2: 0, 3: 1}
    with pytest.raises(LabelError, match="Unknown consensus policy"):
        store.consensus_labels("vote")


def test_consensus_and_fingerprint_are_stable_across_insertion_order(tmp_path):
    submissions = [(r, a, (r + len(a)) % 2) for r in range(30) for a in ("ana", "bo", "cyd")]
    results = []
    for seed in (0, 1):
        order = submissions[:]
        random.Random(seed).shuffle(order)
        with LabelStore(tmp_path / f"{seed}.sqlite") as s:
            for r, a, lab in order:
                s.submit(r, lab, a, statement="s")
            results.append(s.consensus_labels())
    assert results[0] == results[1]
    shuffled = dict(reversed(list(results[0].items())))
    assert labels_fingerprint(results[0]) == labels_fingerprint(shuffled)
    fingerprint = labels_fingerprint(results[0])
    assert fingerprint["count"] == 30 and len(fingerprint["hash"]) == 64
    flipped = results[0] | {0: 1 - results[0][0]}
    assert labels_fingerprint(flipped)["hash"] != fingerprint["hash"]


# ---------------------------------------------------------------- agreement


def _annotate(store: LabelStore, annotator: str, labels: list[int], start: int = 0) -> None:
    for offset, label in enumerate(labels):
        store.submit(start + offset, label, annotator, statement="s")


def test_cohen_kappa_for_pairs_and_against_data_set(store):
    # Records 0..9.  A = 1111000000, B = 1110000001, data set D = 1100000000.
    # A vs B: agree on 8 of 10 -> po = 0.8; each says 1 four times -> pe = .4*.4 + .6*.6 = .52;
    #         kappa = (.8 - .52) / (1 - .52) = .28 / .48 = 7/12.
    # A vs D: agree on 8 -> po = .8; pe = .4*.2 + .6*.8 = .56; kappa = .24 / .44 = 6/11.
    # B vs D: agree on 8 (differ on 2 and 9) -> same marginals as A vs D -> 6/11.
    # C labels only records 0 and 1 as no-show: every overlap has one class -> kappa NaN.
    _annotate(store, "A", [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    _annotate(store, "B", [1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    _annotate(store, "C", [1, 1])
    store.submit(500, 1, "E", statement="s")  # overlaps nobody
    data = dict(enumerate([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    table = cohen_kappa_table(store, data).set_index(["kind", "rater_a", "rater_b"])
    assert set(table.loc["pair"].index) == {("A", "B"), ("A", "C"), ("B", "C")}
    assert table.loc[("pair", "A", "B"), "kappa"] == pytest.approx(7 / 12)
    assert table.loc[("pair", "A", "B"), "n"] == 10
    assert table.loc[("vs_dataset", "A", "data set"), "kappa"] == pytest.approx(6 / 11)
    assert table.loc[("vs_dataset", "A", "data set"), "note"] == (
        "moderate agreement; 8 of 10 records agree (under 20 records: a rough figure)"
    )
    assert table.loc[("vs_dataset", "B", "data set"), "kappa"] == pytest.approx(6 / 11)
    single = table.loc[("pair", "A", "C")]
    assert single["n"] == 2 and math.isnan(single["kappa"]) and "one class" in single["note"]
    no_overlap = table.loc[("vs_dataset", "E", "data set")]
    assert no_overlap["n"] == 0 and math.isnan(no_overlap["kappa"])
    assert no_overlap["note"] == "none of these labels is on a record of the loaded data set"
    assert "vs_dataset" not in set(cohen_kappa_table(store, None)["kind"])


def test_kappa_of_a_one_label_annotator_is_zero_and_the_note_says_why(store):
    # D answers No-show for every record; the data set has both labels there. Expected and
    # observed agreement are then equal, so kappa is 0 however many records agree.
    _annotate(store, "D", [1, 1, 1, 1])
    table = cohen_kappa_table(store, dict(enumerate([1, 1, 1, 0])))
    row = table.set_index("rater_a").loc["D"]
    assert row["kappa"] == 0.0 and row["n"] == 4
    assert row["note"] == (
        "D gave every shared record the same label (No-show), so kappa is 0 by definition; "
        "3 of 4 records agree (under 20 records: a rough figure)"
    )


@pytest.mark.parametrize(
    ("kappa", "words"),
    [(-0.1, "less agreement than chance"), (0.0, "slight"), (0.2, "slight"), (0.21, "fair")]
    + [(0.5, "moderate"), (0.7, "substantial"), (0.81, "almost perfect"), (1.0, "almost")],
)
def test_describe_kappa_uses_landis_and_koch_words(kappa, words):
    assert describe_kappa(kappa).startswith(words)


def test_disagreements_lists_records_to_adjudicate(store):
    _annotate(store, "A", [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    _annotate(store, "B", [1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    store.submit(3, 1, "A", statement="s", note="looks like a no-show")  # same label, a note
    data = dict(enumerate([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    table = disagreements(store, data).set_index("record_id")
    assert table.index.tolist() == [2, 3, 9]
    assert table.loc[2, "reason"] == "differs from data set"
    assert table.loc[3, "reason"] == "annotators disagree; differs from data set"
    assert table.loc[9, "labels"] == "A: Shows up; B: No-show"
    assert (table.loc[9, "no_show_votes"], table.loc[9, "shows_up_votes"]) == (1, 1)
    assert table.loc[3, "notes"] == "A: looks like a no-show"
    assert table.loc[2, "dataset_label"] == "Shows up"
    among_annotators = disagreements(store, None)
    assert among_annotators["record_id"].tolist() == [3, 9]
