"""Label store faults, as tables: concurrent writers (threads, and two processes), a writer
killed with kill -9, a restart, double submits, and damaged database files. A label that was
acknowledged is never lost, a submission id is stored once, and a damaged file is reported
with its path and left exactly as it was (never deleted or recreated).

    .venv/bin/python -m pytest -q tests/robustness/test_robust_labels.py
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from robust_helpers import REPO, tree

from noshow.labels.events import LabelError
from noshow.labels.store import LabelStore

WRITER = textwrap.dedent(
    """
    import sys
    from noshow.labels.store import LabelStore
    path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with LabelStore(path) as store:
        for i in range(n):
            store.submit(i, i % 2, who, statement=f"statement {i}", submission_id=f"{who}-{i}")
            print(f"{who}-{i}", flush=True)  # acknowledged to the "browser"
            # Both processes also double-submit one shared press.
            store.submit(999, 1, "shared", statement="x", submission_id="one-press")
    """
)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_threads_writing_at_once_store_every_label_and_each_press_once(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:

        def annotator(k: int) -> None:
            for i in range(40):
                store.submit(i, i % 2, f"Dr {k}", statement="s", submission_id=f"{k}-{i}")
                store.submit(7, 0, "shared", statement="s", submission_id="one-press")

        threads = [threading.Thread(target=annotator, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = store.events()
    assert len(events) == 8 * 40 + 1
    assert events["submission_id"].is_unique
    assert (events[events["annotator"] != "shared"].groupby("annotator").size() == 40).all()


def test_two_processes_writing_at_once_store_every_label_and_each_press_once(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()  # created once, as the app does at start-up
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), who, "150"],
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("ana", "bruno")
    ]
    outputs = [w.communicate(timeout=180) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], [err[-2000:] for _, err in outputs]
    with LabelStore(path) as store:
        events = store.events()
    assert len(events) == 2 * 150 + 1
    assert set(events["submission_id"]) == {
        f"{w}-{i}" for w in ("ana", "bruno") for i in range(150)
    } | {"one-press"}


def test_a_writer_killed_mid_stream_loses_no_acknowledged_label(tmp_path):
    path = tmp_path / "labels.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "ana", "100000"],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    acknowledged = [writer.stdout.readline().strip() for _ in range(60)]
    os.kill(writer.pid, signal.SIGKILL)  # no cleanup, mid-transaction or not
    writer.wait(30)
    writer.stdout.close()
    with LabelStore(path) as store:  # opens (and checks) the file the killed writer left
        stored = set(store.events()["submission_id"])
    assert set(acknowledged) <= stored
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_restart_keeps_every_event_and_the_log_grows_on(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        store.submit(1, "no_show", "Dr A", statement="s1")
        store.submit(1, "shows_up", "Dr A", statement="s1", note="corrected")
        before = store.events()
    with LabelStore(path) as store:  # the app restarted
        assert store.events().equals(before)
        assert store.current_labels()["label"].tolist() == [0]
        store.submit(2, 1, "Dr A", statement="s2")
    with LabelStore(path) as first, LabelStore(path) as second:  # two app processes
        first.submit(3, 1, "Dr B", statement="s3")
        second.submit(4, 0, "Dr C", statement="s4")
        assert len(first.events()) == len(second.events()) == 5


def test_double_submit_of_one_press_is_stored_once(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as store:
        first = store.submit(5, 1, "Dr A", statement="s", submission_id="press-1")
        again = store.submit(5, 1, "Dr A", statement="s", submission_id="press-1")
        other_record = store.submit(6, 0, "Dr A", statement="t", submission_id="press-1")
        assert first is not None and again is None and other_record is None
        assert len(store.events()) == 1


def _valid_store_bytes(folder: Path) -> bytes:
    path = folder / "valid.sqlite"
    with LabelStore(path) as store:
        for i in range(300):
            store.submit(i, i % 2, "Dr A", statement="s" * 200, note="n" * 200)
    data = path.read_bytes()
    path.unlink()
    return data


def _damaged_page(folder: Path) -> bytes:
    data = bytearray(_valid_store_bytes(folder))
    data[4096 : 4096 * 3] = b"\xff" * (4096 * 2)  # two pages of the table overwritten
    return bytes(data)


def _foreign_database(folder: Path) -> bytes:
    path = folder / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE patients (name TEXT)")
    data = path.read_bytes()
    path.unlink()
    return data


DAMAGED = {
    "0 bytes": (lambda folder: b"", "the file is empty (0 bytes)"),
    "not SQLite": (lambda folder: b"record_id,label\n1,no_show\n" * 50, "not a SQLite database"),
    "random bytes": (lambda folder: os.urandom(8192), "not a SQLite database"),
    "cut in half": (
        lambda folder: (data := _valid_store_bytes(folder))[: len(data) // 2],
        "the file is truncated",
    ),
    "damaged pages": (_damaged_page, "cannot be read"),
    "another program's database": (_foreign_database, "not a noshow label store"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_database_is_refused_and_kept_byte_for_byte(name, tmp_path):
    make, message = DAMAGED[name]
    folder = tmp_path / "labels"
    folder.mkdir()
    path = folder / "labels.sqlite"
    path.write_bytes(make(tmp_path))
    before = tree(folder)
    with pytest.raises(LabelError) as err:
        LabelStore(path)
    text = str(err.value)
    assert message in text and str(path) in text
    assert "NOT modified" in text  # says the file was kept, and how to recover
    assert tree(folder) == before  # not deleted, not recreated, no side files left


def test_app_with_a_damaged_database_starts_with_labelling_off_and_keeps_the_file(
    tmp_path, monkeypatch, capsys
):
    spec = importlib.util.spec_from_file_location("noshow_app_main", REPO / "app.py")
    app_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_module)
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"\x00garbage" * 500)
    before = path.read_bytes()
    monkeypatch.setenv("NOSHOW_LABELS_DB", str(path))
    assert app_module.open_label_store() is None
    err = capsys.readouterr().err
    assert "labelling is off" in err and str(path) in err and "NOT modified" in err
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.sqlite"]
