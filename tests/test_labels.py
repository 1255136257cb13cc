"""The clinician label store (noshow/labels/store.py, with the checks of
noshow/labels/events.py) on real SQLite files in tmp_path: where the file lives, writing and
reading, bad input, broken databases, progress, consensus and the labels' fingerprint.
Exports are tested in test_label_export.py, agreement in test_label_agreement.py.

Run: .venv/bin/python -m pytest -q tests/test_labels.py
"""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest

from noshow.labels.events import LabelError, hash_statement, labels_fingerprint
from noshow.labels.store import LabelStore, default_label_db, space_data_dir


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


def test_presses_on_one_showing_keep_every_new_answer_and_drop_a_repeated_key(store):
    # Keyboard speed: 1, 2, 2, 1, s while record 3 was shown once (showing "a"), then 2 on a
    # later showing ("b", after Back).
    presses = [(1, "p1"), (0, "p2"), (0, "p3"), (1, "p4"), (None, "p5")]
    stored = []
    for label, press in presses:
        if label is None:
            event = store.skip(3, "ana", statement="s", submission_id=press, showing_id="a")
        else:
            event = store.submit(
                3, label, "ana", statement="s", submission_id=press, showing_id="a"
            )
        stored.append(event is not None)
    assert stored == [True, True, False, True, True]
    assert store.submit(3, 0, "ana", statement="s", showing_id="b") is not None
    assert store.submit(3, 0, "bob", statement="s", showing_id="a") is not None  # not ana's
    events = store.events("ana")
    assert events["label"].fillna(-1).tolist() == [1, 0, 1, -1, 0]
    assert events["previous_label"].tolist()[1:3] == [1, 0]
    assert events["submission_id"].tolist()[:2] == ["a/p1", "a/p2"]
    assert int(store.current_labels("ana")["label"].iloc[0]) == 0
    retry = store.submit(3, 1, "ana", statement="s", submission_id="p1", showing_id="a")
    assert retry is None  # the same press sent twice (a network retry) is stored once
    with pytest.raises(LabelError, match="showing_id"):
        store.submit(3, 1, "ana", statement="s", showing_id="x/y")


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
